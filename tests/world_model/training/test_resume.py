"""``train(..., resume=True)``: a run killed mid-epoch and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.world_model.training.toy_task import Killed, ToyModel, ToyTask
from world_model.errors import RetailSimError
from world_model.training import TrainConfig, load_checkpoint, train
from world_model.training.checkpoint import save_checkpoint

CONFIG = TrainConfig(epochs=3, lr=1e-2, warmup_fraction=0.2, patience=0, progress=False, log_every=0)


def assert_same_state(left: dict, right: dict) -> None:
    """Bit-identical nested state (tensors, numbers, lists, dicts)."""
    if isinstance(left, torch.Tensor):
        assert torch.equal(left, right)
    elif isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same_state(left[key], right[key])
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            assert_same_state(a, b)
    else:
        assert left == right


def test_resume_after_a_kill_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    # dropout makes every step draw from torch's RNG: the RNG state must be restored too
    whole_task = ToyTask(dropout=0.3)
    whole = train(whole_task, CONFIG, tmp_path / "whole")

    with pytest.raises(Killed):
        train(ToyTask(dropout=0.3, fail_at=(1, 3)), CONFIG, tmp_path / "split")  # dies 3 steps into epoch 1
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 0
    resumed_task = ToyTask(dropout=0.3)
    resumed = train(resumed_task, CONFIG, tmp_path / "split", resume=True)

    # the first step after resuming, and every later one, sees the same parameters and the same loss
    assert resumed_task.steps_seen == whole_task.steps_seen[8:]
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "optimizer", "scheduler", "step", "history", "best_value", "best_epoch", "rng"):
        assert_same_state(a[key], b[key])
    assert resumed["history"] == whole["history"] and resumed["steps"] == whole["steps"] == 24
    assert resumed["epochs_run"] == 3


def test_early_stopping_counter_survives_a_resume(tmp_path: Path) -> None:
    scores = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9]  # best at epoch 1; patience 2 runs out after epoch 3
    config = TrainConfig(epochs=6, patience=2, max_steps_per_epoch=2, progress=False, log_every=0)
    with pytest.raises(Killed):
        train(ToyTask(scripted_scores=scores, fail_at=(3, 0)), config, tmp_path)
    summary = train(ToyTask(scripted_scores=scores), config, tmp_path, resume=True)
    assert summary["stopped_early"] and summary["epochs_run"] == 4 and summary["best_epoch"] == 1
    assert not (tmp_path / "epoch-004.pt").exists()

    again = train(ToyTask(scripted_scores=scores), config, tmp_path, resume=True)  # a stopped run stays stopped
    assert again["epochs_run"] == 4 and again["steps"] == summary["steps"]


def test_resume_without_last_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RetailSimError, match=f"^{tmp_path / 'last.pt'}: missing"):
        train(ToyTask(), CONFIG, tmp_path, resume=True)


def test_resume_with_a_changed_config_warns(tmp_path: Path, caplog) -> None:
    """A one-line warning through the "retailsim" logger (the CLI prints it as ``retailsim: warning: ...``)."""
    config = TrainConfig(epochs=1, max_steps_per_epoch=1, progress=False, log_every=0)
    train(ToyTask(), config, tmp_path)
    with caplog.at_level("WARNING", logger="retailsim"):
        train(ToyTask(), TrainConfig(epochs=2, lr=0.5, max_steps_per_epoch=1, progress=False), tmp_path, resume=True)
    (record,) = [r for r in caplog.records if "resumed with changed" in r.getMessage()]
    assert record.name.startswith("retailsim") and "changed epochs, lr" in record.getMessage()


ONE_STEP = TrainConfig(epochs=1, max_steps_per_epoch=1, progress=False, log_every=0)
TWO_STEPS = TrainConfig(epochs=2, max_steps_per_epoch=1, progress=False, log_every=0)


def test_resume_as_another_model_is_refused_naming_what_changed(tmp_path: Path) -> None:
    """The weights would be trained on under another config (the basket model's two context layouts have
    the same parameters, so nothing else would notice): refused, the run left as it was."""
    train(ToyTask(dropout=0.0), ONE_STEP, tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(RetailSimError, match=r"last.pt: trained as another model \(dropout 0.0 -> 0.3\); resume with"):
        train(ToyTask(dropout=0.3), TWO_STEPS, tmp_path, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == before


class _ToyWithTaskOptions(ToyTask):
    def __init__(self, smoothing: float) -> None:
        super().__init__()
        self.smoothing = smoothing

    def model_config(self) -> dict:
        return {**super().model_config(), "task": {"smoothing": self.smoothing}}

    def build_model(self) -> torch.nn.Module:
        return ToyModel(**super().model_config())


def test_resume_with_changed_task_options_or_processes_warns(tmp_path: Path, caplog) -> None:
    train(_ToyWithTaskOptions(0.1), ONE_STEP, tmp_path)
    last = load_checkpoint(tmp_path / "last.pt")
    save_checkpoint(tmp_path / "last.pt", {**last, "rng": last["rng"] * 2})  # as if trained on 2 processes
    with caplog.at_level("WARNING", logger="retailsim"):
        train(_ToyWithTaskOptions(0.2), TWO_STEPS, tmp_path, resume=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any("resumed with changed epochs, smoothing;" in m for m in messages)
    assert any("trained on 2 process(es), resumed on 1" in m for m in messages)


def test_resume_with_float16_after_a_run_without_its_scaler_starts_a_new_scaler(tmp_path: Path) -> None:
    train(ToyTask(), ONE_STEP, tmp_path)  # amp "auto": off on a CPU, so no scaler state saved
    summary = train(ToyTask(), TrainConfig(epochs=2, max_steps_per_epoch=1, amp="fp16", progress=False, log_every=0),
                    tmp_path, resume=True)  # fmt: skip
    assert summary["epochs_run"] == 2 and load_checkpoint(tmp_path / "last.pt")["scaler"]


def test_resume_puts_the_best_epochs_weights_back_in_best_pt(tmp_path: Path) -> None:
    """An epoch's file is copied to best.pt and then to last.pt: a kill between the two, and a rerun of the
    epoch that does not improve (on a GPU it need not repeat bit for bit), would leave best.pt holding
    weights the progress does not call best. Resuming copies the best epoch's file there again."""
    scores = [0.5, 0.1, 0.2]  # best at epoch 0
    config = TrainConfig(epochs=2, patience=0, max_steps_per_epoch=1, progress=False, log_every=0)
    train(ToyTask(scripted_scores=scores), config, tmp_path)
    (tmp_path / "best.pt").write_bytes((tmp_path / "epoch-001.pt").read_bytes())  # as that kill would leave it
    train(ToyTask(scripted_scores=scores), dataclasses.replace(config, epochs=3), tmp_path, resume=True)
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "epoch-000.pt").read_bytes()

