import numpy as np
import pytest

from agents.policies import BASELINES, CostPlus, HistoricalPricing, MyopicGreedy, SSInventory
from retailsim_env import RetailSimVectorEnv


@pytest.fixture(scope="module")
def venv() -> RetailSimVectorEnv:
    return RetailSimVectorEnv(2, products=5, episode_length=6, propensities="fixed")


def test_historical_pricing_keeps_reference_prices_and_orders_up_to_the_forecast(venv) -> None:
    obs, _ = venv.reset(seed=0)
    sim = venv.batch.sim
    decoded = sim.decode(HistoricalPricing().act(sim, obs))
    assert np.allclose(decoded.price, np.round(sim.market.reference_price, 2), atol=0.011) and (decoded.depth == 0).all()
    ordered = sim.market.order_units(decoded.order_fraction)
    target = (sim.config.lead_time + 1) * sim.market.forecast - sim.market.stock - sim.market.pipeline.sum(1)
    assert np.allclose(ordered, np.round(np.clip(target, 0, None)), atol=1.0)


def test_cost_plus_prices_are_marked_up_costs_within_bounds(venv) -> None:
    obs, _ = venv.reset(seed=0)
    sim = venv.batch.sim
    decoded = sim.decode(CostPlus(markup=0.3).act(sim, obs))
    market = sim.market
    expected = np.clip(market.unit_cost * 1.3, market.price_min, market.price_max)
    assert np.allclose(decoded.price, np.round(expected, 2), atol=0.011)


def test_myopic_greedy_beats_historical_on_this_weeks_expected_gross_profit(venv) -> None:
    obs, _ = venv.reset(seed=0)
    sim, market = venv.batch.sim, venv.batch.sim.market

    def expected_profit(action) -> np.ndarray:
        d = sim.decode(action)
        return market.expected_units(d.price, d.depth) * (d.price * (1 - d.depth) - market.unit_cost)

    greedy, historical = expected_profit(MyopicGreedy().act(sim, obs)), expected_profit(HistoricalPricing().act(sim, obs))
    assert (greedy >= historical - 1e-6).all() and greedy.sum() > historical.sum()


def test_s_S_orders_only_below_the_reorder_point(venv) -> None:
    obs, _ = venv.reset(seed=0)
    sim, market = venv.batch.sim, venv.batch.sim.market
    market.stock[0] = 1000.0  # far above the reorder point: no order
    market.stock[1] = 0.0
    units = market.order_units(sim.decode(SSInventory().act(sim, obs)).order_fraction)
    assert (units[0] == 0).all() and (units[1] > 0).all()


def test_every_baseline_returns_actions_in_the_box(venv) -> None:
    obs, _ = venv.reset(seed=0)
    sim = venv.batch.sim
    for policy in BASELINES.values():
        action = policy.act(sim, obs)
        assert action.shape == (2, sim.action_size) and np.abs(action).max() <= 1.0, policy.name


def test_myopic_greedy_scores_only_the_depths_the_action_decodes_to(monkeypatch) -> None:
    venv = RetailSimVectorEnv(2, products=5, episode_length=6, propensities="fixed", config={"min_promo_depth": 0.3})
    obs, _ = venv.reset(seed=0)
    sim, market = venv.batch.sim, venv.batch.sim.market
    scored, expected_units = set(), market.expected_units

    def recording(price, depth):
        scored.update(np.unique(depth).tolist())
        return expected_units(price, depth)

    monkeypatch.setattr(market, "expected_units", recording)
    chosen = sim.decode(MyopicGreedy().act(sim, obs)).depth
    assert scored == {0.0, 0.3, 0.4}  # the grid's 0.1 and 0.2 decode to the 0.3 minimum
    assert set(np.unique(chosen.round(6)).tolist()) <= scored
