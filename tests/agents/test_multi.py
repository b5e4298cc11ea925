import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.multi import MultiAgentTrainConfig, evaluate_multi, train_multi

ENV = {"propensities": "fixed", "products": 3, "episode_length": 4}


@pytest.mark.parametrize("mode,sharing", [("functions", "independent"), ("competition", "independent"), ("functions", "shared")])
def test_multi_agent_training_writes_every_agents_curve_and_evaluates(mode, sharing, tmp_path) -> None:
    config = MultiAgentTrainConfig(mode=mode, env_kwargs=ENV, timesteps=64, num_envs=2, n_steps=8, minibatch_size=8,
                                   n_epochs=1, sharing=sharing, report_episodes=2, progress=False)  # fmt: skip
    summary = train_multi(config, tmp_path)
    agents = ["pricing", "promo", "inventory"] if mode == "functions" else None
    assert summary["episodes"] == 8 and (agents is None or list(summary["agents"]) == agents)
    assert all(r["first_return"] is not None and isinstance(r["improved"], bool) for r in summary["agents"].values())
    accumulator = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.out.tfevents.*"))))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {f"charts/episodic_return/{a}" for a in summary["agents"]} <= tags and "charts/SPS" in tags
    report = evaluate_multi(tmp_path, episodes=2)
    assert set(report["modes"]) == {"learned", "oracle"}
    assert set(report["modes"]["learned"]) == set(summary["agents"])
    assert json.dumps(report)


def test_bad_mode_and_sharing_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        MultiAgentTrainConfig(mode="auction")
    with pytest.raises(ValueError, match="sharing"):
        MultiAgentTrainConfig(sharing="some")
