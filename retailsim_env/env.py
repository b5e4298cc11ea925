"""``RetailSim-v0``: one category manager, one store (or a few), K products, weekly steps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from retailsim_env.config import EnvConfig, RewardWeights
from retailsim_env.core import OBSERVATION_CLIP, BatchedRetailSim, check_action_shape
from retailsim_env.market import RetailMarket
from retailsim_env.render import Dashboard
from retailsim_env.scenario import Scenario


def make_config(config: EnvConfig | dict | None, episode_length: int | None,
                reward_weights: RewardWeights | dict | None) -> EnvConfig:  # fmt: skip
    """An ``EnvConfig`` from a config or dict of its fields, with the two common overrides applied; anything
    else (a string, a number) is refused naming the argument, not left to fail on a missing attribute."""
    if config is not None and not isinstance(config, (EnvConfig, dict)):
        raise ValueError(f"config: an EnvConfig or a dict of its fields, got {config!r}")
    if reward_weights is not None and not isinstance(reward_weights, (RewardWeights, dict)):
        raise ValueError(f"reward_weights: a RewardWeights or a dict of its fields, got {reward_weights!r}")
    if isinstance(config, dict):
        config = EnvConfig(**config)
    config = config or EnvConfig()
    if episode_length is not None:
        config = replace(config, episode_length=episode_length)
    if reward_weights is not None:
        weights = reward_weights if isinstance(reward_weights, RewardWeights) else RewardWeights(**reward_weights)
        config = replace(config, reward=weights)
    return config


def open_sim(scenario: str | Scenario | None = None, stores: str | list[str] | None = None, n_stores: int = 1,
             products: int | str | list[str] = 10, episode_length: int | None = None, demand: str = "learned",
             reward_weights: RewardWeights | dict | None = None, config: EnvConfig | dict | None = None,
             device: str = "auto", propensities: str = "weekly") -> BatchedRetailSim:  # fmt: skip
    """The batched market for the environments' common keyword arguments (``RetailSimEnv``'s, less the
    episode start and rendering); its ``config`` is the resolved ``EnvConfig``."""
    scenario = scenario if isinstance(scenario, Scenario) else Scenario(scenario)
    store_rows = scenario.store_rows(stores, count=n_stores)
    product_rows = scenario.product_rows(products)
    return BatchedRetailSim(scenario, store_rows, product_rows, make_config(config, episode_length, reward_weights),
                            demand=demand, device=device, propensities=propensities)  # fmt: skip


class RetailSimEnv(gym.Env[np.ndarray, np.ndarray]):
    """
    ## Description

    A category manager sets the weekly shelf prices, promotions and orders of K managed products in one
    store (or a set of stores) of a scenario (``retailsim_env.scenario``); simulated shoppers decide
    whether, where and what to buy. Demand comes from the scenario's trained world models (the
    store-visit predictor draws trips, the basket model gives each visitor's purchase probabilities in one
    batched forward, the explicit price/promotion response scales them; see ``retailsim_env.demand``),
    or, with ``demand="oracle"`` on a generated scenario, from the generator's true demand. Repeated
    promotions wear out (the lift of a product promoted in k of the last 8 weeks is raised to
    exp(-0.5 k)). Sales are capped by stock; orders arrive after a lead time (``retailsim_env.market``).

    ## Action Space

    ``Box(-1, 1, (M * K * 3,), float32)``: for each managed store m and product k (store-major, then
    product, then field) three numbers a:

    | field | decoding |
    |-------|----------|
    | price | shelf price = price_min + (a + 1) / 2 x (price_max - price_min), rounded to cents |
    | promo | a <= 0: no promotion; a > 0: depth = min_promo_depth + a x (max_promo_depth - min_promo_depth); paid = price x (1 - depth) |
    | order | units = round((a + 1) / 2 x max_order_multiple x forecast of next week's demand) |

    price_min / price_max are the 20th / 95th percentiles of the product's observed prices, widened to at
    least +-10% around its reference price (the median over stores) and around the managed store's own
    reference price (its latest regular price there), so historical pricing is an action. Values outside [-1, 1] are clipped and counted in
    ``info["clipped_actions"]``; NaN or inf raise ``InvalidActionError``. ``DictActionWrapper`` offers
    the same action as a Dict of absolute prices, depths and order fractions.

    ## Observation Space

    ``Box(-1000, 1000, (M * K * 6 + 3,), float32)``: per store and product, ``PRODUCT_FEATURES`` =
    price / reference price - 1, depth / max_promo_depth, stock, last week's units sold, the model's
    forecast of next week's demand at the current prices, units on order (the last four divided by the
    product's expected weekly units at reference prices in the data's middle week, in the learned market
    without its season: the index averages 1 over the training weeks, so the scale stays put when
    ``seasons`` is turned on or off, but for the history level's small move); then ``GLOBAL_FEATURES`` = sin and cos of the
    week of year and the episode's progress t / episode_length.

    ## Rewards

    ``profit / profit_scale - 0.1 x boundary_penalty + 0.05 x diversity_bonus + 0.05 x inventory_alignment``
    (weights: ``reward_weights``), where profit = revenue - cost of goods - holding cost - stock-out cost
    of the managed products, ``profit_scale`` their expected weekly gross profit at reference prices (a
    historical-pricing week earns a little under 1: 0.73 in the shipped scenario, the rest lost to
    stock-outs and holding), boundary_penalty = the sum over managed prices of their edge
    proximity (0 inside, rising to 1 at a bound over the outer 5% of the range) plus the number of
    discounted prices below unit cost (so each price at a bound or below cost costs 10% of a typical
    week's profit: optimizing into the bounds, where the response is extrapolated, does not pay), diversity_bonus = mean over stores of the standard deviation of the products' price positions
    in [-1, 1], inventory_alignment = mean of min(stock, demand) / max(stock, demand). Raw profit is
    always in ``info["profit"]``, every component in ``info["reward_*"]``.

    ## Starting State

    A calendar week drawn uniformly from the scenario's data weeks (or ``start_week``); prices at the
    store's reference prices without promotions; ``initial_stock_weeks`` of expected demand in stock and
    one week per lead week on order.

    ## Episode End

    Truncation after ``episode_length`` weeks (default 52); the episode never terminates.

    ## Info

    ``week``, ``revenue``, ``profit``, ``units``, ``demand``, ``stockout_units`` (demand neither sold nor
    substituted), ``stockouts`` (products whose stock fell short), ``price_violations``, ``edge_share``
    (prices within 5% of a bound), ``promo_share`` (products on promotion), ``clipped_actions``,
    ``visits`` (trips to the managed stores), ``holding_cost``, ``stockout_cost``
    and ``reward_profit``, ``reward_boundary_penalty``, ``reward_diversity_bonus``, ``reward_inventory_alignment``.

    ## Arguments

    ```python
    gym.make("RetailSim-v0", scenario=None, stores=None, n_stores=1, products=10, episode_length=52,
             demand="learned", propensities="weekly", reward_weights=None, config=None, start_week=None,
             device="auto", render_mode=None)
    ```

    - ``scenario``: a scenario directory or ``Scenario`` (default: the small scenario shipped with the package);
    - ``stores``: a store code or list of codes (default: the ``n_stores`` stores with the most revenue);
    - ``products``: the number of managed products (the top by training revenue), a code or a list of codes;
    - ``demand``: "learned" (the trained models) or "oracle" (the generator's truth; generated scenarios);
    - ``propensities`` (learned demand): "weekly" runs the basket model on every week's trips (its decoder
      only, over histories encoded when the env is built, for a model in the default decoder layout);
      "fixed" runs it once per shopper and store when the env is built (10-15x the single env's
      steps/s on a CPU with the shipped scenario; no calendar or recency effects from the model);
    - ``reward_weights``: ``RewardWeights`` or a dict of its fields; ``config``: ``EnvConfig`` or a dict;
    - ``device``: where the models run ("auto": CUDA when available); ``render_mode``: "ansi" or "rgb_array".

    The same seed gives the same trajectory for the same actions.

    ## Version History

    - v0: first release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, scenario: str | Scenario | None = None, stores: str | list[str] | None = None,
                 n_stores: int = 1, products: int | str | list[str] = 10, episode_length: int | None = None,
                 demand: str = "learned", reward_weights: RewardWeights | dict | None = None,
                 config: EnvConfig | dict | None = None, start_week: int | None = None, device: str = "auto",
                 render_mode: str | None = None, propensities: str = "weekly") -> None:  # fmt: skip
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.sim = open_sim(scenario, stores, n_stores, products, episode_length, demand, reward_weights, config, device,
                            propensities)  # fmt: skip
        self.config = self.sim.config
        self.sim.market.allocate(1)
        self.start_week, self.render_mode = start_week, render_mode
        self.action_space = spaces.Box(-1.0, 1.0, (self.sim.action_size,), np.float32)
        self.observation_space = spaces.Box(-OBSERVATION_CLIP, OBSERVATION_CLIP, (self.sim.observation_size,), np.float32)
        self.dashboard = Dashboard(self.sim)

    @property
    def market(self) -> RetailMarket:
        return self.sim.market

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        start = (options or {}).get("start_week", self.start_week)
        obs = self.sim.reset(np.array([0]), [self.np_random], None if start is None else np.array([start]))
        self.dashboard.clear()
        return obs[0], {"week": int(self.market.week[0]), "profit_scale": self.market.profit_scale}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, truncated, info = self.sim.step(check_action_shape(action, (self.sim.action_size,))[None])
        single = {key: value[0].item() for key, value in info.items()}
        if self.render_mode is not None:  # nothing to draw otherwise: no record a step
            self.dashboard.record(single)
        return obs[0], float(reward[0]), False, bool(truncated[0]), single

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self.dashboard.text()
        if self.render_mode == "rgb_array":
            return self.dashboard.image()
        return None

    def close(self) -> None:
        self.dashboard.close()  # idempotent, and frees a figure a render after an earlier close drew
