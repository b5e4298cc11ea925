import datetime
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from retailsim_env import DictActionWrapper, InvalidActionError, RetailSimEnv


def historical_action(env: RetailSimEnv, order_fraction: float = 0.5) -> np.ndarray:
    """Reference prices, no promotion, orders of one forecast week."""
    sim = env.sim
    m, k = sim.shape
    return sim.encode(sim.market.reference_price[None], np.zeros((1, m, k)), np.full((1, m, k), order_fraction))[0]


@pytest.fixture(scope="module")
def env(default_scenario) -> RetailSimEnv:
    return RetailSimEnv(scenario=default_scenario, products=6, episode_length=6)


@pytest.mark.parametrize("demand", ["learned", "oracle"])
def test_gymnasium_and_sb3_checkers_pass(default_scenario, demand) -> None:
    kwargs = dict(scenario=default_scenario, products=4, episode_length=4, demand=demand)
    check_env(gym.make("RetailSim-v0", render_mode="ansi", **kwargs).unwrapped)  # made: the checker also renders
    sb3_check_env(RetailSimEnv(**kwargs))


def test_registered_and_makeable_without_import() -> None:
    assert "RetailSim-v0" in gym.registry
    code = ("import gymnasium as gym; e = gym.make('retailsim_env:RetailSim-v0', products=3, episode_length=2); "
            "o, _ = e.reset(seed=0); print(o.shape, e.action_space.shape)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"({3 * 6 + 3},) ({3 * 3},)"


def test_decoding_maps_the_box_onto_bounds_depths_and_orders(env) -> None:
    sim = env.sim
    env.reset(seed=0)
    m, k = sim.shape
    low = sim.decode(-np.ones((1, sim.action_size)))
    high = sim.decode(np.ones((1, sim.action_size)))
    assert np.allclose(low.price[0], np.round(sim.market.price_min, 2)) and np.allclose(high.price[0], np.round(sim.market.price_max, 2))
    assert (low.depth == 0).all() and np.allclose(high.depth, sim.config.max_promo_depth)
    barely = sim.decode(np.tile([0.0, 1e-3, 0.0], m * k)[None])
    assert (barely.depth >= sim.config.min_promo_depth).all()  # any promotion is at least the minimum depth
    assert (low.order_fraction == 0).all() and (high.order_fraction == 1).all()
    price = sim.market.reference_price[None]
    depth = np.full((1, m, k), 0.2)
    again = sim.decode(sim.encode(price, depth, np.full((1, m, k), 0.25)))
    assert np.allclose(again.price, np.round(price, 2), atol=0.011) and np.allclose(again.depth, 0.2)


def test_bad_actions_raise_and_out_of_range_ones_are_clipped_and_counted(env) -> None:
    env.reset(seed=0)
    bad = np.zeros(env.action_space.shape, np.float32)
    bad[0] = np.nan
    with pytest.raises(InvalidActionError, match="NaN"):
        env.step(bad)
    size = env.action_space.shape[0]
    for shape in ((3,), (1, size)):  # the message names the single env's own shape, not the batch's
        with pytest.raises(InvalidActionError, match=re.escape(f"action: expected shape {(size,)}, got {shape}")):
            env.step(np.zeros(shape, np.float32))
    wide = np.zeros(env.action_space.shape, np.float32)
    wide[:4] = 5.0
    _, _, _, _, info = env.step(wide)
    assert info["clipped_actions"] == 4
    with pytest.raises(ValueError, match="start_week must be a data week index >= 1, got 0"):
        env.reset(seed=0, options={"start_week": 0})
    for week in (1.5, "3", True):  # int() floored and parsed these silently
        with pytest.raises(ValueError, match=f"start_week must be a whole data week index >= 1, got {week!r}"):
            env.reset(seed=0, options={"start_week": week})


def test_step_before_reset_asks_for_a_reset(default_scenario) -> None:
    env = RetailSimEnv(scenario=default_scenario, products=3, episode_length=2, propensities="fixed")
    with pytest.raises(RuntimeError, match=r"call reset\(\) first"):
        env.step(np.zeros(env.action_space.shape, np.float32))


def test_a_minimum_promotion_depth_within_the_estimators_threshold_is_refused(default_scenario) -> None:
    """The learned market's lifts were estimated on price drops deeper than the response's promotion
    threshold (5%): a shallower minimum would pay a whole lift for a token discount."""
    threshold = default_scenario.response.config.promo_threshold
    with pytest.raises(ValueError, match="min_promo_depth 0.05 must exceed the scenario's promotion threshold"):
        RetailSimEnv(scenario=default_scenario, products=3, propensities="fixed", config={"min_promo_depth": threshold})
    RetailSimEnv(scenario=default_scenario, products=3, demand="oracle", config={"min_promo_depth": 0.0})  # the truth's own


def test_one_product_code_as_a_string_manages_that_product(default_scenario) -> None:
    code = default_scenario.catalog["PROD_CODE"].iloc[0]
    env = RetailSimEnv(scenario=default_scenario, products=code, episode_length=2, propensities="fixed")
    assert env.market.product_codes == [code] and env.action_space.shape == (3,)


def test_same_seed_same_trajectory_and_episodes_truncate(default_scenario) -> None:
    def rollout(seed: int) -> list:
        env = RetailSimEnv(scenario=default_scenario, products=4, episode_length=5)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(5):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out.append((obs, reward, info["units"]))
            assert not terminated and truncated == (t == 4)
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(a[1:], b[1:]))
    assert any(x[1] != y[1] for x, y in zip(a[1:], c[1:]))


def test_historical_pricing_earns_about_one_and_stock_caps_sales(env) -> None:
    env.reset(seed=1)
    action = historical_action(env)
    rewards = [env.step(action)[4]["reward_profit"] for _ in range(5)]
    assert 0.6 < np.mean(rewards) < 1.4  # the profit scale is the expected week at reference prices
    env.reset(seed=1)
    starve = historical_action(env, order_fraction=0.0)
    infos = [env.step(starve)[4] for _ in range(6)]
    assert infos[-1]["stockouts"] > 0 and infos[-1]["units"] < infos[-1]["demand"]
    assert env.market.stock.min() >= 0


def test_higher_prices_lower_the_forecast_and_promotions_raise_it(env) -> None:
    env.reset(seed=2)
    sim = env.sim
    m, k = sim.shape
    forecasts = {}
    for name, position, promo in (("low", -1.0, -1.0), ("high", 1.0, -1.0), ("promo", 1.0, 1.0)):
        env.reset(seed=2, options={"start_week": 10})
        action = np.tile([position, promo, 0.0], m * k).astype(np.float32)
        env.step(action)
        forecasts[name] = env.market.forecast[0].copy()
    assert (forecasts["high"] < forecasts["low"]).all() and (forecasts["promo"] > forecasts["high"]).all()


def test_observation_holds_the_documented_fields(default_scenario) -> None:
    """Per product (price ratio - 1, depth / max depth, stock, last units, forecast, on order: the last four
    in weeks of reference demand), then sin / cos of the week's Monday's day of year and the progress."""
    env = RetailSimEnv(scenario=default_scenario, products=3, episode_length=4, propensities="fixed")
    obs, _ = env.reset(seed=0, options={"start_week": 5})
    market, config = env.market, env.config
    reference, scale = market.reference_units[0], np.maximum(market.reference_units[0], 1.0)
    fields = obs[:-3].reshape(3, 6)
    forecast = market.backend.forecast(np.array([5]), market.reference_price[None], np.zeros((1, 1, 3)))[0, 0]
    stock, on_order = np.round(reference * config.initial_stock_weeks), np.round(reference)
    assert np.allclose(fields, np.stack([np.zeros(3), np.zeros(3), stock / scale, np.zeros(3), forecast / scale,
                                         on_order / scale], axis=1), atol=1e-6)  # fmt: skip
    monday = datetime.date.fromisoformat(default_scenario.meta["calendar"]["first_monday"]) + datetime.timedelta(weeks=4)
    angle = 2 * np.pi * (monday.timetuple().tm_yday - 1) / 365.25
    assert np.allclose(obs[-3:], [np.sin(angle), np.cos(angle), 0.0], atol=1e-6)

    ordered = np.round(0.5 * config.max_order_multiple * forecast)  # order field 0: half the largest order
    obs, _, _, _, info = env.step(np.tile([1.0, 1.0, 0.0], 3).astype(np.float32))
    fields = obs[:-3].reshape(3, 6)
    sold = stock + on_order - market.stock[0, 0]  # the pipeline's week arrived before the sales
    assert np.allclose(fields[:, 0], np.round(market.price_max, 2) / market.reference_price[0] - 1.0, atol=1e-6)
    assert np.allclose(fields[:, 1], 1.0) and sold.sum() == info["units"]
    assert np.allclose(fields[:, 2:4] * scale[:, None], np.stack([market.stock[0, 0], sold], axis=1), rtol=1e-6)
    assert np.allclose(fields[:, 5] * scale, ordered, rtol=1e-6) and obs[-1] == pytest.approx(0.25)


def test_reward_terms_are_the_documented_components(default_scenario, monkeypatch) -> None:
    """Diversity: the spread of the price positions; boundary: edge proximity plus one per discounted price
    below cost; alignment: the mean over products of min(available, demand) / max(available, demand)."""
    env = RetailSimEnv(scenario=default_scenario, products=4, episode_length=3, propensities="fixed")
    env.reset(seed=0, options={"start_week": 6})
    market = env.market
    drawn = []
    sample = market.backend.sample
    monkeypatch.setattr(market.backend, "sample", lambda *args: drawn.append(sample(*args)) or drawn[-1])
    available = market.stock[0, 0] + market.pipeline[0, 0, 0]  # the week's arrivals come before the sales
    positions = np.array([-1.0, -0.5, 0.5, 1.0])  # two prices in the outer 5% of the range, one at each edge
    _, _, _, _, info = env.step(np.stack([positions, -np.ones(4), np.zeros(4)], axis=1).ravel().astype(np.float32))
    assert info["reward_diversity_bonus"] == pytest.approx(np.std(positions))
    below_cost = (np.round(market.price_min, 2) < market.unit_cost - 1e-9)[0]  # the lowest price may sell at a loss
    assert info["reward_boundary_penalty"] == pytest.approx(2.0 + below_cost)
    demand = drawn[0][0][0, 0]
    alignment = np.where(np.maximum(available, demand) > 0, np.minimum(available, demand) / np.maximum(available, demand), 1.0)
    assert info["reward_inventory_alignment"] == pytest.approx(alignment.mean())
    assert info["units"] == np.minimum(available, demand).sum() and info["demand"] == demand.sum()


def test_reward_is_the_documented_weighted_sum(default_scenario) -> None:
    weights = {"profit": 1.0, "boundary": 0.5, "diversity": 0.25, "alignment": 0.125}
    env = RetailSimEnv(scenario=default_scenario, products=4, episode_length=3, reward_weights=weights)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.ones(env.action_space.shape, np.float32))  # every price at the edge
    assert info["edge_share"] == 1.0 and info["reward_boundary_penalty"] >= 0.5
    expected = (info["reward_profit"] - 0.5 * info["reward_boundary_penalty"] + 0.25 * info["reward_diversity_bonus"]
                + 0.125 * info["reward_inventory_alignment"])  # fmt: skip
    assert reward == pytest.approx(expected)
    assert info["profit"] == pytest.approx(info["reward_profit"] * env.market.profit_scale)


def test_oracle_and_learned_demand_run_the_same_market(default_scenario) -> None:
    units = {}
    for demand in ("learned", "oracle"):
        env = RetailSimEnv(scenario=default_scenario, products=4, episode_length=3, demand=demand)
        env.reset(seed=0)
        units[demand] = env.market.reference_units.sum()
        _, _, _, _, info = env.step(historical_action(env))
        assert info["demand"] > 0 and info["visits"] > 0
    assert 0.2 < units["learned"] / units["oracle"] < 5


def test_oracle_needs_ground_truth(tiny_workdir, tmp_path) -> None:
    from retailsim_env.scenario import build_scenario
    from tests.retailsim_env.conftest import tiny_models

    basket, store = tiny_models(tiny_workdir, tmp_path)
    scenario = build_scenario(tiny_workdir.workdir, basket, store, tmp_path / "s")
    with pytest.raises(ValueError, match="oracle"):
        RetailSimEnv(scenario=scenario, products=3, demand="oracle")


def test_without_a_render_mode_no_week_is_kept(default_scenario) -> None:
    env = RetailSimEnv(scenario=default_scenario, products=3, episode_length=3)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None and env.dashboard.weeks == []


def test_render_modes_and_double_close(default_scenario) -> None:
    env = RetailSimEnv(scenario=default_scenario, products=3, episode_length=3, render_mode="ansi")
    _, info = env.reset(seed=0)
    assert env.render().startswith(f"week {info['week']}  step 0/3")  # the episode's first week
    env.step(env.action_space.sample())
    text = env.render()
    assert text.startswith(f"week {info['week']}  step 1/3")  # the week just simulated
    assert all(code in text for code in env.market.product_codes)
    image_env = RetailSimEnv(scenario=default_scenario, products=3, episode_length=3, render_mode="rgb_array")
    image_env.reset(seed=0)
    image_env.step(image_env.action_space.sample())
    frame = image_env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0
    for e in (env, image_env):
        e.close()
        e.close()
    import matplotlib.pyplot as plt  # imported by the render above

    open_figures = len(plt.get_fignums())
    image_env.render()  # a render after close draws again; the next close frees that figure too
    assert len(plt.get_fignums()) == open_figures + 1
    image_env.close()
    assert len(plt.get_fignums()) == open_figures
    with pytest.raises(ValueError, match="render_mode"):
        RetailSimEnv(scenario=default_scenario, render_mode="human")


def test_dict_action_wrapper_sets_absolute_prices(default_scenario) -> None:
    env = DictActionWrapper(RetailSimEnv(scenario=default_scenario, products=3, episode_length=3))
    env.reset(seed=0)
    market = env.unwrapped.market
    price = ((market.price_min + market.price_max) / 2).round(2).ravel()  # bounds [M, K]: the flat layout
    env.step({"price": price, "promo": np.array([0.0, 0.1, 0.0]), "order": np.full(3, 0.5)})
    assert np.allclose(market.price[0, 0], price, atol=0.011)
    assert np.allclose(market.depth[0, 0], [0.0, 0.1, 0.0])
    assert isinstance(env.action_space, gym.spaces.Dict)
    low = env.unwrapped.config.min_promo_depth  # the docstring: a depth below the minimum is raised to it
    assert env.action_space["promo"].contains(np.full(3, low / 2, np.float32))
    env.step({"price": price, "promo": np.array([0.0, low / 2, low]), "order": np.full(3, 0.5)})
    assert np.allclose(market.depth[0, 0], [0.0, low, low])
    _, _, _, _, info = env.step({"price": market.price_max.ravel(), "promo": np.zeros(3), "order": np.ones(3)})
    assert info["clipped_actions"] == 0  # the bounds themselves are inside, float64 or not
    _, _, _, _, info = env.step({"price": 3 * market.price_max.ravel(), "promo": np.array([0.9, 0.0, 0.0]),
                                 "order": np.array([5.0, 0.5, -1.0])})  # fmt: skip
    assert info["clipped_actions"] == 3 + 1 + 2 and np.allclose(market.price[0, 0], market.price_max[0], atol=0.011)
    with pytest.raises(InvalidActionError, match=r"action: missing \['promo', 'order'\]"):
        env.step({"price": price})
    with pytest.raises(InvalidActionError, match=r"action\['price'\]: expected shape \(3,\), got \(2,\)"):
        env.step({"price": price[:2], "promo": np.zeros(3), "order": np.zeros(3)})


def test_a_set_of_stores_is_one_action_per_store_and_product(default_scenario) -> None:
    env = RetailSimEnv(scenario=default_scenario, n_stores=2, products=4, episode_length=3)
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (2 * 4 * 3,) and obs.shape == (2 * 4 * 6 + 3,)
    assert len(set(env.market.store_codes)) == 2
    action = np.zeros(env.action_space.shape, np.float32)
    action[0] = 1.0  # the first store's first product at its maximum price, nothing else
    env.step(action)
    assert env.market.price[0, 0, 0] > env.market.price[0, 1, 0]


def test_fixed_propensities_skip_the_per_week_forward_and_keep_the_level(default_scenario) -> None:
    demand = {}
    for mode in ("weekly", "fixed"):
        env = RetailSimEnv(scenario=default_scenario, products=5, episode_length=12, propensities=mode)
        env.reset(seed=0, options={"start_week": 30})
        action = historical_action(env)
        demand[mode] = np.mean([env.step(action)[4]["demand"] for _ in range(12)])
        ran_forward = env.market.backend.last_trips is not None
        assert ran_forward == (mode == "weekly")
    assert 0.7 < demand["fixed"] / demand["weekly"] < 1.3
    with pytest.raises(ValueError, match="propensities"):
        RetailSimEnv(scenario=default_scenario, propensities="sometimes")
