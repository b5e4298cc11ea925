"""The market step's bookkeeping, on a stub demand so every figure is known."""

import numpy as np
import pytest

from retailsim_env.config import EnvConfig, RewardWeights
from retailsim_env.market import RetailMarket


class FixedDemand:
    def __init__(self, demand: np.ndarray) -> None:
        self.demand = demand

    def reset(self, copies, n_copies, rngs) -> None:
        pass

    def forecast(self, weeks, price, depth, lift_scale=1.0):
        return np.broadcast_to(self.demand, price.shape).astype(float)

    def sample(self, weeks, price, depth, rngs, lift_scale=1.0):
        return np.broadcast_to(self.demand, price.shape).astype(float), np.zeros(price.shape[:2])


@pytest.fixture
def market(default_scenario) -> RetailMarket:
    def build(config: EnvConfig, demand: list[float]) -> RetailMarket:
        rows = default_scenario.product_rows(3)
        market = RetailMarket(default_scenario, default_scenario.store_rows(None), rows, config)
        market.backend = FixedDemand(np.array([demand]))
        market.reference_units = np.array([demand], dtype=float)
        market.allocate(1)
        market.reset(np.array([0]), [np.random.default_rng(0)], np.array([5]))
        return market

    return build


def test_sales_are_capped_by_stock_and_orders_arrive_after_the_lead_time(market) -> None:
    m = market(EnvConfig(lead_time=2, initial_stock_weeks=1.0, holding_rate=0.1, stockout_rate=0.5), [10.0, 4.0, 0.0])
    m.stock[:] = [[[5.0, 8.0, 3.0]]]
    m.pipeline[:] = 0.0
    price, depth = m.reference_price[None].copy(), np.array([[[0.0, 0.25, 0.0]]])
    result = m.step(price, depth, np.array([[[7.0, 0.0, 0.0]]]))
    assert np.array_equal(result.sold[0, 0], [5.0, 4.0, 0.0]) and np.array_equal(result.lost[0, 0], [5.0, 0.0, 0.0])
    effective = price[0, 0] * (1 - depth[0, 0])
    assert np.allclose(result.revenue[0, 0], result.sold[0, 0] * effective)
    assert np.allclose(result.holding_cost[0, 0], np.array([0.0, 4.0, 3.0]) * m.unit_cost * 0.1)
    assert np.allclose(result.stockout_cost[0, 0], result.lost[0, 0] * effective * 0.5)
    assert np.allclose(result.profit, result.revenue - result.cost_of_goods - result.holding_cost - result.stockout_cost)
    m.step(price, depth, np.zeros((1, 1, 3)))  # the order of week 1 is still on its way
    assert m.last_sold[0, 0, 0] == 0.0
    m.step(price, depth, np.zeros((1, 1, 3)))  # it arrives before week 3's sales
    assert m.last_sold[0, 0, 0] == 7.0 and m.stock[0, 0, 0] == 0.0


def test_substitution_moves_lost_units_to_siblings_with_stock(market) -> None:
    m = market(EnvConfig(lead_time=0, substitution=1.0), [10.0, 0.0, 0.0])
    m.siblings = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)  # products 0 and 1 share a sub-commodity
    m.stock[:] = [[[4.0, 20.0, 20.0]]]
    result = m.step(m.reference_price[None], np.zeros((1, 1, 3)), np.zeros((1, 1, 3)))
    assert np.array_equal(result.sold[0, 0], [4.0, 6.0, 0.0])
    assert np.array_equal(result.lost[0, 0], [0.0, 0.0, 0.0])  # the 6 short of product 0 were all bought as product 1
    assert result.stockout_cost.sum() == 0.0
    without = market(EnvConfig(lead_time=0, substitution=0.0), [10.0, 0.0, 0.0])
    without.stock[:] = [[[4.0, 20.0, 20.0]]]
    assert np.array_equal(without.step(without.reference_price[None], np.zeros((1, 1, 3)), np.zeros((1, 1, 3))).sold[0, 0], [4.0, 0.0, 0.0])


def test_substitution_capped_by_spare_stock_shares_what_is_taken_among_the_sources(market) -> None:
    m = market(EnvConfig(lead_time=0, substitution=0.5), [10.0, 12.0, 0.0])
    m.siblings = np.ones((3, 3)) - np.eye(3)  # one sub-commodity
    m.stock[:] = [[[4.0, 6.0, 5.0]]]  # 6 and 6 short; 0.5 x (3 + 3) = 6 sent to product 2, which has 5 to spare
    result = m.step(m.reference_price[None], np.zeros((1, 1, 3)), np.zeros((1, 1, 3)))
    assert np.array_equal(result.sold[0, 0], [4.0, 6.0, 5.0])
    assert np.allclose(result.lost[0, 0], [6.0 - 2.5, 6.0 - 2.5, 0.0])  # each source gets back 5/6 of its 3 sent
    assert np.isclose(result.sold.sum() + result.lost.sum(), result.demand.sum())


def test_invalid_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="max_promo_depth=1.5"):
        EnvConfig(max_promo_depth=1.5)
    for field in ("initial_stock_weeks", "holding_rate", "stockout_rate"):  # stock that earns, goodwill that pays
        with pytest.raises(ValueError, match=f"invalid {field}=-1"):
            EnvConfig(**{field: -1})
    for field, value in (("episode_length", 2.7), ("lead_time", 1.5), ("promo_memory", True)):
        with pytest.raises(ValueError, match=f"{field}={value} must be a whole number"):
            EnvConfig(**{field: value})
    assert EnvConfig(episode_length=np.int64(3)).episode_length == 3
    with pytest.raises(ValueError, match="max_promo_depth=0.95"):  # the paid price near 0: millions of units
        EnvConfig(max_promo_depth=0.95)
    for field in ("stockout_rate", "holding_rate", "promo_fatigue", "max_order_multiple"):  # inf x 0 = NaN rewards
        with pytest.raises(ValueError, match=f"{field}=inf must be a finite number"):
            EnvConfig(**{field: float("inf")})
    with pytest.raises(ValueError, match="holding_rate='0.02' must be a finite number"):  # JSON's strings
        EnvConfig(holding_rate="0.02")
    with pytest.raises(ValueError, match="reward must be RewardWeights"):  # would fail at the first step
        EnvConfig(reward=3)
    for weight in ("boundary", "profit"):
        with pytest.raises(ValueError, match=f"RewardWeights: {weight}=None must be a finite number"):
            RewardWeights(**{weight: None})
    assert RewardWeights(diversity=np.float32(0.1)).diversity == np.float32(0.1)
    assert EnvConfig(reward={"profit": 2.0}).reward == RewardWeights(profit=2.0)  # a dict of its fields, as JSON gives
    assert EnvConfig(holding_rate=np.array(0.02)).holding_rate == 0.02  # a 0-d array is a number too


def test_every_stores_reference_price_is_an_action_with_room_on_either_side(default_scenario) -> None:
    """The catalog's bounds sit around the product's median reference over stores; a store's own can lie
    outside them (2 of the busiest store's top 10 in the shipped scenario): the market widens its bounds
    to at least +-10% around it, so historical pricing is a price the actions set, not a clipped one."""
    rows = default_scenario.product_rows(10)
    market = RetailMarket(default_scenario, default_scenario.store_rows(None), rows, EnvConfig())
    catalog = default_scenario.catalog_by_row.loc[rows]
    reference = market.reference_price
    assert (reference > catalog["price_max"].to_numpy()).any()  # the case this is about
    assert np.array_equal(reference, default_scenario.reference_prices[np.ix_(market.store_rows, rows)])
    assert (market.price_min <= np.round(0.9 * reference, 2)).all() and (market.price_max >= np.round(1.1 * reference, 2)).all()
    assert (market.price_min <= catalog["price_min"].to_numpy()).all() and (market.price_max >= catalog["price_max"].to_numpy()).all()


def test_a_step_whose_draw_fails_leaves_the_market_as_it_was(market) -> None:
    m = market(EnvConfig(lead_time=1), [10.0, 4.0, 0.0])
    before = {name: getattr(m, name).copy() for name in ("stock", "pipeline", "price", "depth", "week", "t")}

    def failing(*args, **kwargs):
        raise ValueError("draw failed")

    m.backend.sample = failing
    with pytest.raises(ValueError, match="draw failed"):
        m.step(np.full((1, 1, 3), 2.0), np.zeros((1, 1, 3)), np.full((1, 1, 3), 50.0))
    assert all(np.array_equal(getattr(m, name), value) for name, value in before.items())


@pytest.mark.parametrize("demand", ["learned", "oracle"])
def test_repeated_promotions_wear_out(default_scenario, demand) -> None:
    config = EnvConfig(promo_fatigue=0.5, promo_memory=8)
    market = RetailMarket(default_scenario, default_scenario.store_rows(None), default_scenario.product_rows(3), config,
                          demand=demand)  # fmt: skip
    market.allocate(1)
    market.reset(np.array([0]), [np.random.default_rng(0)], np.array([10]))
    price, promoted, plain = market.reference_price[None], np.full((1, 1, 3), 0.2), np.zeros((1, 1, 3))
    fresh_lift = market.expected_units(price, promoted) / market.expected_units(price * 0.8, plain)
    for _ in range(4):
        market.step(price, promoted, np.zeros((1, 1, 3)))
    market.week[:] = 10  # the same week, so only the promotion history differs
    worn_lift = market.expected_units(price, promoted) / market.expected_units(price * 0.8, plain)
    assert (fresh_lift > 1.05).all() and np.allclose(worn_lift, fresh_lift ** np.exp(-0.5 * 4), rtol=1e-6)
