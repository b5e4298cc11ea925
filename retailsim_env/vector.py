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

from retailsim_env.config import EnvConfig, RewardWeights
from retailsim_env.core import BatchedRetailSim
from retailsim_env.env import open_sim


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

    def reset_copies(self, copies: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        for i, c in enumerate(copies):
            if seeds is not None and seeds[i] is not None:
                self.rngs[c] = seeding.np_random(int(seeds[i]))[0]
        start = None if self.start_week is None else np.full(len(copies), self.start_week)
        self.returns[copies], self.lengths[copies] = 0.0, 0
        return self.sim.reset(np.asarray(copies), [self.rngs[c] for c in copies], start)

    def step_all(self, actions: np.ndarray):
        obs, reward, truncated, info = self.sim.step(np.asarray(actions, dtype=np.float64))
        self.returns += reward
        self.lengths += 1
        done = np.flatnonzero(truncated)
        final_obs = obs[done].copy()
        episode = {"r": self.returns[done].copy(), "l": self.lengths[done].copy()}
        if len(done):
            obs[done] = self.reset_copies(done)
        return obs, reward, truncated, info, done, final_obs, episode


class RetailSimVectorEnv(VectorEnv):
    """``num_envs`` copies of ``RetailSimEnv`` (same keyword arguments, same spaces per copy) stepped as one batch."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 8, scenario=None, stores=None, n_stores: int = 1, products=10,
                 episode_length: int | None = None, demand: str = "learned",
                 reward_weights: RewardWeights | dict | None = None, config: EnvConfig | dict | None = None,
                 start_week: int | None = None, device: str = "auto", render_mode: str | None = None,
                 propensities: str = "weekly") -> None:  # fmt: skip
        self.batch = _Batch(num_envs, start_week, scenario=scenario, stores=stores, n_stores=n_stores, products=products,
                            episode_length=episode_length, demand=demand, reward_weights=reward_weights,
                            config=config, device=device, propensities=propensities)  # fmt: skip
        self.num_envs, self.render_mode = num_envs, render_mode
        sim = self.batch.sim
        self.single_action_space = spaces.Box(-1.0, 1.0, (sim.action_size,), np.float32)
        self.single_observation_space = spaces.Box(-1e3, 1e3, (sim.observation_size,), np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
        if seeds is None:
            seeds = [None] * self.num_envs
        obs = self.batch.reset_copies(np.arange(self.num_envs), seeds)
        return obs, {}

    def step(self, actions: np.ndarray):
        obs, reward, truncated, info, done, final_obs, _ = self.batch.step_all(actions)
        infos: dict[str, Any] = {}
        for key, value in info.items():
            infos[key], infos[f"_{key}"] = value, np.ones(self.num_envs, dtype=bool)
        if len(done):
            mask = np.zeros(self.num_envs, dtype=bool)
            mask[done] = True
            full = np.zeros_like(obs)
            full[done] = final_obs
            infos.update(final_obs=full, _final_obs=mask)
        return obs, reward, np.zeros(self.num_envs, dtype=bool), truncated, infos

    def close_extras(self, **kwargs) -> None:
        """Nothing to release: the copies live in this process."""


class RetailSimVecEnv(VecEnv):
    """The batch as a Stable-Baselines3 ``VecEnv`` (episode returns in ``info["episode"]``, as ``VecMonitor``
    would add them; wrap it in ``VecMonitor`` for ``rollout/ep_rew_mean``)."""

    def __init__(self, num_envs: int = 8, start_week: int | None = None, **kwargs) -> None:
        """``kwargs``: ``RetailSimEnv``'s keyword arguments but ``render_mode``."""
        self.batch = _Batch(num_envs, start_week, **kwargs)
        sim = self.batch.sim
        self.render_mode = None
        super().__init__(num_envs, spaces.Box(-1e3, 1e3, (sim.observation_size,), np.float32),
                         spaces.Box(-1.0, 1.0, (sim.action_size,), np.float32))  # fmt: skip
        self._actions = None

    def reset(self) -> np.ndarray:
        obs = self.batch.reset_copies(np.arange(self.num_envs), self._seeds)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, truncated, info, done, final_obs, episode = self.batch.step_all(self._actions)
        infos = [{key: value[i].item() for key, value in info.items()} for i in range(self.num_envs)]
        for j, i in enumerate(done):
            infos[i]["terminal_observation"] = final_obs[j]
            infos[i]["TimeLimit.truncated"] = True
            infos[i]["episode"] = {"r": float(episode["r"][j]), "l": int(episode["l"][j])}
        return obs, reward.astype(np.float32), truncated.copy(), infos

    def close(self) -> None:
        """Nothing to release: the copies live in this process."""

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._indices(indices))
        return [getattr(self.batch, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.batch, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.batch, method_name)(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)
