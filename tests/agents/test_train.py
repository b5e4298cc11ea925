import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


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
