"""PettingZoo markets: store functions as agents, or stores competing for the same shoppers.

``parallel_env(mode="functions")``: agents ``pricing``, ``promo`` and ``inventory`` run one store's K
managed products together. Each acts on its own field of ``RetailSimEnv``'s action (a ``Box(-1, 1, (K,))``
decoded the same way), sees the observation features it needs (below) and earns the profit term plus its
own shaping: pricing - boundary x penalty + diversity x bonus; promo - boundary x violations; inventory +
alignment x alignment (``RewardWeights``). The promo agent's penalty counts only its price violations
(discounted prices below unit cost): a price near a bound is the pricing agent's doing, and charged to
the promo agent too it cost that agent 2.3 of an evaluation return of 43 (learned market, 60,000 steps)
for prices it does not set.

``parallel_env(mode="competition", n_stores=N)``: agents ``store_<CODE>`` each set their store's prices
and promotions (``Box(-1, 1, (2K,))``: K prices then K promotion fields); orders follow an order-up-to
rule (stock + on order up to (lead time + 1) weeks of forecast). Shoppers' store choice reacts to every
store's price level (``retailsim_env.demand``), so the stores compete for the same shoppers. A store's
observation: its own per-product features, the other stores' mean price ratio, the week; its reward: its
own profit over its own profit scale minus its boundary penalty plus its diversity bonus.

``env(...)`` is the AEC version through PettingZoo's standard conversion.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from retailsim_env.config import EnvConfig, RewardWeights
from retailsim_env.core import (GLOBAL_FEATURES, OBSERVATION_CLIP, PRODUCT_FEATURES, BatchedRetailSim,
                                check_action_shape)
from retailsim_env.env import open_sim
from retailsim_env.render import Dashboard
from retailsim_env.scenario import Scenario

MODES = ("functions", "competition")
FUNCTION_FEATURES = {
    "pricing": ("price_ratio", "promo_depth", "last_units", "forecast"),
    "promo": ("price_ratio", "promo_depth", "last_units", "forecast"),
    "inventory": ("promo_depth", "stock", "last_units", "forecast", "on_order"),
}
STORE_FEATURES = ("price_ratio", "promo_depth", "stock", "last_units", "forecast")
FUNCTION_REWARD_TERMS = {
    "pricing": ("profit", "boundary_penalty", "diversity_bonus"),
    "promo": ("profit", "violation_penalty"),
    "inventory": ("profit", "inventory_alignment"),
}
STORE_REWARD_TERMS = ("profit", "boundary_penalty", "diversity_bonus")


class MultiAgentView:
    """How the agents of a mode split a ``BatchedRetailSim``'s observations, actions and rewards, batched
    over its B copies (the ParallelEnv is B = 1; ``agents.multi`` trains on B copies at once)."""

    def __init__(self, sim: BatchedRetailSim, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.sim, self.mode = sim, mode
        market = sim.market
        codes = market.store_codes
        if mode == "functions" and len(codes) != 1:
            raise ValueError("mode 'functions' runs one store; pass one store code")
        if mode == "competition" and len(codes) < 2:  # distinct: Scenario.store_rows refuses a repeated code
            raise ValueError(f"stores / n_stores: mode 'competition' needs 2 or more distinct stores, got {codes}")
        self.agents = (list(FUNCTION_FEATURES) if mode == "functions"
                       else [f"store_{code}" for code in market.store_codes])  # fmt: skip

    def observation_size(self, agent: str) -> int:
        k = self.sim.shape[1]
        if self.mode == "functions":
            return k * len(FUNCTION_FEATURES[agent]) + len(GLOBAL_FEATURES)
        return k * len(STORE_FEATURES) + 1 + len(GLOBAL_FEATURES)

    def action_size(self, agent: str) -> int:
        k = self.sim.shape[1]
        return k if self.mode == "functions" else 2 * k

    def observations(self) -> dict[str, np.ndarray]:
        """agent -> [B, observation_size] float32."""
        m, k = self.sim.shape
        flat = self.sim.observe()
        n = len(flat)
        per_product = flat[:, : m * k * len(PRODUCT_FEATURES)].reshape(n, m, k, len(PRODUCT_FEATURES))
        glob = flat[:, m * k * len(PRODUCT_FEATURES) :]
        column = {name: i for i, name in enumerate(PRODUCT_FEATURES)}

        def features(store: int, names: tuple[str, ...]) -> np.ndarray:  # [B, F*K], feature-major
            return per_product[:, store][:, :, [column[name] for name in names]].transpose(0, 2, 1).reshape(n, -1)

        if self.mode == "functions":
            out = {agent: np.concatenate([features(0, names), glob], 1) for agent, names in FUNCTION_FEATURES.items()}
        else:
            ratio = per_product[..., column["price_ratio"]].mean(2)  # [B, M]
            out = {}
            for s, agent in enumerate(self.agents):
                others = np.delete(ratio, s, axis=1).mean(1, keepdims=True)
                out[agent] = np.concatenate([features(s, STORE_FEATURES), others, glob], 1)
        return {agent: value.astype(np.float32) for agent, value in out.items()}

    def flat_action(self, actions: dict[str, np.ndarray]) -> np.ndarray:
        """The flat [B, M*K*3] action of the agents' actions (agent -> [B, action_size])."""
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions: missing for agents {missing}")
        unknown = [a for a in actions if a not in self.agents]
        if unknown:
            raise ValueError(f"actions: {unknown} are not agents of this env ({self.agents})")
        sim = self.sim
        m, k = sim.shape
        n = sim.market.n_copies
        fields = np.zeros((n, m, k, 3))
        actions = {agent: check_action_shape(actions[agent], (n, self.action_size(agent)), f"actions[{agent!r}]")
                   for agent in self.agents}  # fmt: skip
        if self.mode == "functions":
            for i, agent in enumerate(FUNCTION_FEATURES):
                fields[:, 0, :, i] = actions[agent]
        else:
            fields[..., 2] = 2.0 * sim.order_up_to() - 1.0
            for s, agent in enumerate(self.agents):
                a = actions[agent].reshape(n, 2, k)
                fields[:, s, :, 0], fields[:, s, :, 1] = a[:, 0], a[:, 1]
        return fields.reshape(n, -1)

    def reward_terms(self, agent: str) -> tuple[str, ...]:
        """The reward components ``agent``'s reward is made of (module docstring)."""
        return FUNCTION_REWARD_TERMS[agent] if self.mode == "functions" else STORE_REWARD_TERMS

    def contributions(self, agent: str, info: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each of ``agent``'s reward components [B] as it enters its reward: the raw ``reward_<term>`` of
        its info (``price_violations`` for the promo agent's ``violation_penalty``) times the term's weight,
        penalties negative; their sum is the reward."""
        signed = self.sim.config.reward.signed()
        signed["violation_penalty"] = signed["boundary_penalty"]
        return {term: signed[term] * info["price_violations" if term == "violation_penalty" else f"reward_{term}"]
                for term in self.reward_terms(agent)}  # fmt: skip

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], dict]:
        """One week of every copy: (rewards agent -> [B], per-agent info arrays, the store's info arrays).
        An agent's info holds the store's raw reward components as ``reward_<term>`` (in the functions mode
        all of them, the full boundary penalty included); ``contributions`` says which of them, weighted,
        make up that agent's reward (the promo agent's penalty is its ``price_violations``)."""
        week = self.sim.advance(self.flat_action(actions))
        if self.mode == "functions":
            infos = {agent: week.info for agent in self.agents}
        else:
            result, violations = week.result, self.sim.violations(week.decoded)
            infos = {agent: {"profit": result.profit[:, s].sum(1), "revenue": result.revenue[:, s].sum(1),
                             "units": result.sold[:, s].sum(1), "visits": result.visits[:, s],
                             "price_violations": violations[:, s].sum(1),
                             **{f"reward_{term}": value[:, s] for term, value in week.store_terms.items()}}
                     for s, agent in enumerate(self.agents)}  # fmt: skip
        rewards = {agent: sum(self.contributions(agent, infos[agent]).values()) for agent in self.agents}
        return rewards, infos, week.info


def store_count(mode: str, n_stores: int | None) -> int:
    """The stores a mode's market holds for the multi-agent ``n_stores`` argument: functions one (so only
    None or 1), competition ``n_stores``, default 2."""
    if mode == "functions" and n_stores not in (None, 1):
        raise ValueError(f"n_stores: mode 'functions' runs one store, got n_stores={n_stores!r}")
    return 1 if mode == "functions" else 2 if n_stores is None else n_stores


class RetailSimParallelEnv(ParallelEnv):
    """The multi-agent market (module docstring). Keyword arguments as ``RetailSimEnv`` plus ``mode`` and
    ``n_stores`` (competition: the ``n_stores`` stores, default 2, with the most revenue unless ``stores``
    names them; functions: one store, so only None or 1)."""

    metadata = {"render_modes": ["ansi"], "name": "retailsim_v0", "is_parallelizable": True}

    def __init__(self, mode: str = "functions", scenario: str | Scenario | None = None,
                 stores: str | list[str] | None = None, n_stores: int | None = None, products: int | str | list[str] = 10,
                 episode_length: int | None = None, demand: str = "learned",
                 reward_weights: RewardWeights | dict | None = None, config: EnvConfig | dict | None = None,
                 start_week: int | None = None, device: str = "auto", render_mode: str | None = None,
                 propensities: str = "weekly") -> None:  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.mode, self.render_mode, self.start_week = mode, render_mode, start_week
        self.sim = open_sim(scenario, stores, store_count(mode, n_stores), products, episode_length, demand,
                            reward_weights, config, device, propensities)  # fmt: skip
        self.config = self.sim.config
        self.sim.market.allocate(1)
        self.view = MultiAgentView(self.sim, mode)
        self.possible_agents = list(self.view.agents)
        self.agents: list[str] = []
        # Built once (the same object on every call, as PettingZoo expects), held by the env itself: an
        # lru_cache on the methods would hold every env, its models and caches, for the process's life.
        self.observation_spaces = {agent: spaces.Box(-OBSERVATION_CLIP, OBSERVATION_CLIP, (self.view.observation_size(agent),),
                                                     np.float32) for agent in self.possible_agents}  # fmt: skip
        self.action_spaces = {agent: spaces.Box(-1.0, 1.0, (self.view.action_size(agent),), np.float32)
                              for agent in self.possible_agents}  # fmt: skip
        self.rng = seeding.np_random(None)[0]
        self.dashboard = Dashboard(self.sim)

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[agent]

    def _observations(self) -> dict[str, np.ndarray]:
        return {agent: value[0] for agent, value in self.view.observations().items()}

    def reset(self, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:  # fmt: skip
        if seed is not None:
            self.rng = seeding.np_random(seed)[0]
        start = (options or {}).get("start_week", self.start_week)
        self.sim.reset(np.array([0]), [self.rng], None if start is None else np.array([start]))
        self.agents = list(self.possible_agents)
        self.dashboard.clear()
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool],
                                                            dict[str, bool], dict[str, dict[str, Any]]]:  # fmt: skip
        if not self.agents:
            raise RuntimeError("step with no live agents: the episode ended (or never began); call reset() first")
        batched = {agent: check_action_shape(action, self.action_spaces[agent].shape, f"actions[{agent!r}]")[None]
                   if agent in self.action_spaces else action for agent, action in actions.items()}  # fmt: skip
        rewards, agent_infos, info = self.view.step(batched)
        self.dashboard.record({key: value[0].item() for key, value in info.items()})
        done = bool(self.sim.market.t[0] >= self.config.episode_length)
        observations = self._observations()
        rewards = {agent: float(value[0]) for agent, value in rewards.items()}
        infos = {agent: {key: value[0].item() for key, value in agent_info.items()} for agent, agent_info in agent_infos.items()}
        terminations = {agent: False for agent in self.agents}
        truncations = {agent: done for agent in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.dashboard.text()
        return None

    def close(self) -> None:
        self.dashboard.close()


def parallel_env(mode: str = "functions", **kwargs) -> RetailSimParallelEnv:
    """The native ParallelEnv (keyword arguments: ``RetailSimParallelEnv``)."""
    return RetailSimParallelEnv(mode=mode, **kwargs)


def env(mode: str = "functions", **kwargs) -> AECEnv:
    """The AEC version of ``parallel_env`` (PettingZoo's ``parallel_to_aec``)."""
    return parallel_to_aec(parallel_env(mode=mode, **kwargs))
