"""Batched copies of ``RetailSim-v0``: one market step and one model forward per step for all copies.

``RetailSimVectorEnv`` follows Gymnasium's vector API (as ``CartPoleVectorEnv`` sits beside ``CartPoleEnv``);
``RetailSimVecEnv`` is the same batch as a Stable-Baselines3 ``VecEnv``, so PPO trains on it without
subprocesses. Both reset a finished copy in the same step (Gymnasium's ``AutoresetMode.SAME_STEP``; SB3's
convention): the returned observation is the new episode's, the finished one's is in the info
(``final_obs`` / ``terminal_observation``). ``reset(seed=s)`` seeds copy i with s + i, so copy i replays
``RetailSimEnv`` reset with seed s + i under the same actions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from retailsim_env.config import EnvConfig, RewardWeights
from retailsim_env.core import OBSERVATION_CLIP, BatchedRetailSim
from retailsim_env.env import open_sim
from retailsim_env.scenario import Scenario


class _Batch:
    """The shared part: B copies, their generators, same-step autoreset (``sim_kwargs``: ``open_sim``'s)."""

    def __init__(self, num_envs: int, start_week: int | None = None, **sim_kwargs) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.sim: BatchedRetailSim = open_sim(**sim_kwargs)
        self.config: EnvConfig = self.sim.config
        self.sim.market.allocate(num_envs)
        self.start_week = start_week
        self.rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def reset_copies(self, copies: np.ndarray, seeds: list[int | None] | None = None,
                     start_weeks: list[int | None] | None = None) -> np.ndarray:  # fmt: skip
        """Observations of new episodes in ``copies``; per copy an optional seed and start week (default
        the constructor's ``start_week``; None draws one), as ``RetailSimEnv.reset`` takes them."""
        for i, c in enumerate(copies):
            if seeds is not None and seeds[i] is not None:
                self.rngs[c] = seeding.np_random(int(seeds[i]))[0]
        if start_weeks is None:
            start_weeks = [self.start_week] * len(copies)
        self.returns[copies], self.lengths[copies] = 0.0, 0
        return self.sim.reset(np.asarray(copies), [self.rngs[c] for c in copies], start_weeks)

    def reset_info(self, copies: np.ndarray) -> dict[str, np.ndarray]:
        """``RetailSimEnv.reset``'s info of each of ``copies``, batched: arrays [len(copies)]."""
        market = self.sim.market
        return {"week": market.week[copies].copy(), "profit_scale": np.full(len(copies), market.profit_scale)}

    def step_all(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray],
                                                     np.ndarray, np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
        """One week of every copy, the finished ones reset: (observations [B, O], rewards [B], truncated [B],
        the step's info arrays [B], the finished copies, their final observations, their episodes' return
        ``r`` and length ``l``)."""
        obs, reward, truncated, info = self.sim.step(np.asarray(actions, dtype=np.float64))
        self.returns += reward
        self.lengths += 1
        done = np.flatnonzero(truncated)
        final_obs = obs[done].copy()
        episode = {"r": self.returns[done].copy(), "l": self.lengths[done].copy()}
        if len(done):
            obs[done] = self.reset_copies(done)
        return obs, reward, truncated, info, done, final_obs, episode


def _masked(values: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Gymnasium's vector info layout: each key's array [B] beside ``_key``, the copies that have it (zeros
    elsewhere; every step's info has every copy, so that case takes the arrays as they are)."""
    out = {}
    every = bool(mask.all())
    for key, value in values.items():
        out[key], out[f"_{key}"] = value if every else np.where(mask, value, np.zeros_like(value)), mask.copy()
    return out


class RetailSimVectorEnv(VectorEnv):
    """``num_envs`` copies of ``RetailSimEnv`` (same keyword arguments, same spaces per copy) stepped as one batch.

    ``reset(seed=, options=)`` takes what ``SyncVectorEnv`` does: an int s (copy i gets s + i) or one seed per
    copy, and options for every copy (``{"start_week": W}`` as ``RetailSimEnv`` takes it); its info is
    ``RetailSimEnv.reset``'s per copy (``week``, ``profit_scale``). ``step``'s info, in Gymnasium's layout
    (arrays [num_envs], each key beside a ``_key`` mask): every copy's step info (the keys ``RetailSimEnv``
    documents; the finished copies' too, as there is no step without one), and, when copies finished this
    step (same-step autoreset, as ``SyncVectorEnv`` in ``AutoresetMode.SAME_STEP``), ``final_obs``
    [num_envs, O] (zero rows for the others; float, not ``SyncVectorEnv``'s object array) and
    ``final_info``, the finished copies' step info (a dict of masked arrays), with ``_final_obs`` /
    ``_final_info`` masking them. Unlike ``SyncVectorEnv`` the new episodes' reset info is not merged into
    the step info (its ``week`` would overwrite the week just played); their start week is
    ``batch.sim.market.week``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 8, scenario: str | Scenario | None = None, stores: str | list[str] | None = None,
                 n_stores: int = 1, products: int | str | list[str] = 10,
                 episode_length: int | None = None, demand: str = "learned",
                 reward_weights: RewardWeights | dict | None = None, config: EnvConfig | dict | None = None,
                 start_week: int | None = None, device: str = "auto", render_mode: str | None = None,
                 propensities: str = "weekly") -> None:  # fmt: skip
        if render_mode is not None:
            raise ValueError(f"render_mode: the vector env does not render (got {render_mode!r}); render a "
                             "RetailSimEnv, which replays copy i when seeded seed + i")
        self.batch = _Batch(num_envs, start_week, scenario=scenario, stores=stores, n_stores=n_stores, products=products,
                            episode_length=episode_length, demand=demand, reward_weights=reward_weights,
                            config=config, device=device, propensities=propensities)  # fmt: skip
        self.num_envs, self.render_mode = num_envs, render_mode
        sim = self.batch.sim
        self.single_action_space = spaces.Box(-1.0, 1.0, (sim.action_size,), np.float32)
        self.single_observation_space = spaces.Box(-OBSERVATION_CLIP, OBSERVATION_CLIP, (sim.observation_size,), np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
        if isinstance(seed, int):
            seed = [seed + i for i in range(self.num_envs)]
        elif seed is not None and len(seed) != self.num_envs:
            raise ValueError(f"seed: {len(seed)} seeds for {self.num_envs} copies, expected one per copy")
        copies = np.arange(self.num_envs)
        start = (options or {}).get("start_week", self.batch.start_week)
        obs = self.batch.reset_copies(copies, seed, [start] * self.num_envs)
        return obs, _masked(self.batch.reset_info(copies), np.ones(self.num_envs, dtype=bool))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, truncated, info, done, final_obs, _ = self.batch.step_all(actions)
        infos: dict[str, Any] = _masked(info, np.ones(self.num_envs, dtype=bool))
        if len(done):
            full = np.zeros_like(obs)
            full[done] = final_obs
            infos.update(final_obs=full, _final_obs=truncated.copy(), final_info=_masked(info, truncated),
                         _final_info=truncated.copy())  # fmt: skip
        return obs, reward, np.zeros(self.num_envs, dtype=bool), truncated, infos

    def close_extras(self, **kwargs) -> None:
        """Nothing to release: the copies live in this process."""


class RetailSimVecEnv(VecEnv):
    """The batch as a Stable-Baselines3 ``VecEnv`` (episode returns in ``info["episode"]``, as ``VecMonitor``
    would add them; wrap it in ``VecMonitor`` for ``rollout/ep_rew_mean``). ``seed`` and ``set_options``
    (``{"start_week": W}``, per copy or for all) apply to the next ``reset``, as in ``DummyVecEnv``;
    ``reset_infos`` holds each copy's latest reset info.

    The copies share one batch object, not one env each: ``get_attr`` returns its attribute once per
    index, ``env_method`` calls its method once (a side effect happens once, not per copy) and repeats the
    result per index, and ``set_attr`` sets it for all copies, so it refuses indices that are not all."""

    def __init__(self, num_envs: int = 8, start_week: int | None = None, **kwargs) -> None:
        """``kwargs``: ``RetailSimEnv``'s keyword arguments but ``render_mode``."""
        self.batch = _Batch(num_envs, start_week, **kwargs)
        sim = self.batch.sim
        self.render_mode = None
        super().__init__(num_envs, spaces.Box(-OBSERVATION_CLIP, OBSERVATION_CLIP, (sim.observation_size,), np.float32),
                         spaces.Box(-1.0, 1.0, (sim.action_size,), np.float32))  # fmt: skip
        self._actions = None

    def reset(self) -> np.ndarray:
        copies = np.arange(self.num_envs)
        starts = [options.get("start_week", self.batch.start_week) for options in self._options]
        obs = self.batch.reset_copies(copies, self._seeds, starts)
        self._set_reset_infos(copies)
        self._reset_seeds()
        self._reset_options()
        return obs

    def _set_reset_infos(self, copies: np.ndarray) -> None:
        info = self.batch.reset_info(copies)
        for j, i in enumerate(copies):
            self.reset_infos[i] = {key: value[j].item() for key, value in info.items()}

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, truncated, info, done, final_obs, episode = self.batch.step_all(self._actions)
        infos = [{key: value[i].item() for key, value in info.items()} for i in range(self.num_envs)]
        for j, i in enumerate(done):
            infos[i]["terminal_observation"] = final_obs[j]
            infos[i]["TimeLimit.truncated"] = True
            infos[i]["episode"] = {"r": float(episode["r"][j]), "l": int(episode["l"][j])}
        self._set_reset_infos(done)
        return obs, reward.astype(np.float32), truncated.copy(), infos

    def close(self) -> None:
        """Nothing to release: the copies live in this process."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._indices(indices))
        return [getattr(self.batch, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(f"indices: {indices!r}: the copies share one batch, so set_attr sets an attribute "
                             "for all of them (indices=None)")  # fmt: skip
        setattr(self.batch, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        result = getattr(self.batch, method_name)(*method_args, **method_kwargs)  # once: the copies share the batch
        return [result] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)
