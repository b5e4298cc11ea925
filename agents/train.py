"""``retailsim agents train``: Stable-Baselines3 PPO on the batched RetailSim vector environment.

The run directory holds ``model.zip``, ``vecnormalize.pkl`` (the observation and reward statistics:
evaluation must normalize observations the same way), ``config.json``, ``summary.json``,
``checkpoints/`` (model and statistics every ``checkpoint_every`` steps) and ``tensorboard/`` with fixed
tags (CleanRL's convention): ``charts/episodic_return`` (shaped), ``charts/episodic_profit``,
``charts/profit``, ``charts/revenue``, ``charts/price_violations``, ``charts/edge_share``,
``charts/promo_share`` (weekly means over the rollout), ``reward/<component>``, ``charts/SPS``, and SB3's
own ``rollout/`` and ``train/`` tags.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from tqdm.auto import tqdm

from retailsim_env import RetailSimVecEnv

from agents.envargs import build_env
from agents.runs import CONFIG_FILE

WEEKLY_TAGS = {"profit": "charts/profit", "revenue": "charts/revenue", "price_violations": "charts/price_violations",
               "edge_share": "charts/edge_share", "promo_share": "charts/promo_share"}  # fmt: skip
REWARD_TAGS = ("reward_profit", "reward_boundary_penalty", "reward_diversity_bonus", "reward_inventory_alignment")
MODEL_FILE, STATS_FILE, SUMMARY_FILE = "model.zip", "vecnormalize.pkl", "summary.json"


@dataclass
class PPOTrainConfig:
    """One PPO run. Every field but ``net_arch`` is a ``retailsim agents train`` option (``progress``:
    ``--quiet``; ``env_kwargs``: ``--env-kwargs``, merged into the default)."""

    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"propensities": "fixed"})
    """Keyword arguments of RetailSim-v0. The default trains on fixed propensities, the fast path on a
    CPU (about 40x the weekly path's steps/s in the vector env); pass {"propensities": "weekly"} for the model every week."""
    timesteps: int = 200_000
    """Environment steps in total (over all copies)."""
    num_envs: int = 8
    """Copies stepped as one batch."""
    n_steps: int = 256
    """Steps per copy per rollout (a rollout is num_envs x n_steps transitions)."""
    batch_size: int = 256
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    net_arch: tuple[int, ...] = (128, 128)
    seed: int = 0
    checkpoint_every: int = 0
    """Save model and statistics every this many steps (0: only at the end), rounded down to whole vector
    steps of ``num_envs`` (at least one): 100 with 8 copies saves every 96."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: only at the end), got {self.checkpoint_every}")
        if self.batch_size < 2 or self.num_envs * self.n_steps < 2:  # a minibatch of one has no advantage spread
            raise ValueError(f"batch_size and num_envs x n_steps must be 2 or more, got {self.batch_size} and "
                             f"{self.num_envs} x {self.n_steps}")


class RetailSimMetrics(BaseCallback):
    """Weekly means of the env's info over each rollout, episodic profit and steps/s to TensorBoard."""

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[str, float] = {}
        self._count = 0
        self._episode_profit: np.ndarray | None = None
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        if self._episode_profit is None:
            self._episode_profit = np.zeros(len(infos))
        for i, info in enumerate(infos):
            for key in (*WEEKLY_TAGS, *REWARD_TAGS):
                if key in info:
                    self._sums[key] = self._sums.get(key, 0.0) + float(info[key])
            self._episode_profit[i] += info.get("profit", 0.0)
            if "episode" in info:
                self.logger.record_mean("charts/episodic_return", info["episode"]["r"])
                self.logger.record_mean("charts/episodic_profit", self._episode_profit[i])
                self._episode_profit[i] = 0.0
        self._count += len(infos)
        return True

    def _on_rollout_end(self) -> None:
        for key, total in self._sums.items():
            tag = WEEKLY_TAGS.get(key, f"reward/{key.removeprefix('reward_')}")
            self.logger.record(tag, total / max(self._count, 1))
        self.logger.record("charts/SPS", self.num_timesteps / max(time.perf_counter() - self._start, 1e-9))
        self._sums, self._count = {}, 0


class ProgressBar(BaseCallback):
    """A tqdm bar over the run's timesteps (SB3's own needs the optional ``rich``)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total, self.bar = total, None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, unit="step", desc="PPO")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def make_training_env(config: PPOTrainConfig) -> VecNormalize:
    return VecNormalize(VecMonitor(RetailSimVecEnv(config.num_envs, **config.env_kwargs)), gamma=config.gamma)


def train_ppo(config: PPOTrainConfig, out: Path | str) -> dict:
    """Train, write the run directory (module docstring) and return the summary; bad ``env_kwargs`` raise
    ``EnvKwargsError`` before anything is written."""
    venv = build_env(lambda: make_training_env(config), config.env_kwargs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1) + "\n")
    venv.seed(config.seed)
    model = PPO("MlpPolicy", venv, n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs,
                learning_rate=config.learning_rate, gamma=config.gamma, gae_lambda=config.gae_lambda,
                clip_range=config.clip_range, ent_coef=config.ent_coef, seed=config.seed, device="cpu",
                policy_kwargs={"net_arch": list(config.net_arch)}, tensorboard_log=str(out / "tensorboard"))  # fmt: skip
    callbacks: list[BaseCallback] = [RetailSimMetrics()]
    if config.checkpoint_every:
        every = max(config.checkpoint_every // config.num_envs, 1)
        callbacks.append(CheckpointCallback(every, str(out / "checkpoints"), name_prefix="ppo", save_vecnormalize=True))
    if config.progress:
        callbacks.append(ProgressBar(config.timesteps))
    start = time.perf_counter()
    model.learn(total_timesteps=config.timesteps, callback=CallbackList(callbacks), tb_log_name="ppo")
    seconds = time.perf_counter() - start
    model.save(out / MODEL_FILE)
    venv.save(out / STATS_FILE)
    returns = [episode["r"] for episode in model.ep_info_buffer]
    summary = {"timesteps": int(model.num_timesteps), "seconds": seconds, "steps_per_s": model.num_timesteps / seconds,
               "last_mean_episodic_return": float(np.mean(returns)) if returns else None,
               "model": str(out / MODEL_FILE), "vecnormalize": str(out / STATS_FILE),
               "tensorboard": str(out / "tensorboard")}  # fmt: skip
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    venv.close()
    return summary
