"""A tiny PPO run on the shipped scenario, shared by the evaluation and CLI tests."""

from pathlib import Path

import pytest

from agents.train import PPOTrainConfig, train_ppo

TINY_ENV = {"propensities": "fixed", "products": 3, "episode_length": 8}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ppo-run")
    train_ppo(PPOTrainConfig(env_kwargs=TINY_ENV, timesteps=64, num_envs=2, n_steps=16, batch_size=16, n_epochs=1,
                             checkpoint_every=32, progress=False), out)  # fmt: skip
    return out
