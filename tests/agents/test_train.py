import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.envargs import EnvKwargsError
from agents.train import PPOTrainConfig, train_ppo
from tests.agents.conftest import TINY_ENV


def test_ppo_run_writes_model_statistics_checkpoints_and_curves(tiny_run) -> None:
    for name in ("model.zip", "vecnormalize.pkl", "config.json", "summary.json"):
        assert (tiny_run / name).exists(), name
    assert list((tiny_run / "checkpoints").glob("ppo_*_steps.zip")) and list((tiny_run / "checkpoints").glob("*vecnormalize*"))
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["timesteps"] >= 64
    events = next((tiny_run / "tensorboard").rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"charts/episodic_return", "charts/episodic_profit", "charts/profit", "charts/revenue",
            "charts/price_violations", "charts/edge_share", "charts/SPS", "reward/profit",
            "reward/boundary_penalty", "rollout/ep_rew_mean"} <= tags  # fmt: skip


def test_negative_checkpoint_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        PPOTrainConfig(checkpoint_every=-5)


@pytest.mark.parametrize("env_kwargs,message", [({"produts": 3}, "unknown 'produts'"), ({"demand": "foo"}, "demand"),
                                                ({"start_week": 0}, "start_week must be")])  # fmt: skip
def test_bad_env_kwargs_are_rejected_before_the_run_directory_is_written(env_kwargs, message, tmp_path) -> None:
    with pytest.raises(EnvKwargsError, match=f"^env_kwargs: .*{message}"):
        train_ppo(PPOTrainConfig(env_kwargs={**TINY_ENV, **env_kwargs}, timesteps=8, num_envs=2, progress=False), tmp_path / "run")
    assert not (tmp_path / "run").exists()
