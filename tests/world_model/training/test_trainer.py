"""The training loop: determinism, checkpoints, best/early stopping, LR schedule, weight decay groups,
mixed precision, TensorBoard tags."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.world_model.training.toy_task import ToyModel, ToyTask
from world_model.errors import RetailSimError
from world_model.training import TrainConfig, load_checkpoint, train
from world_model.training.checkpoint import save_checkpoint
from world_model.training.trainer import WarmupCosine, autocast_dtype, build_optimizer, parameter_groups

QUIET = {"progress": False, "log_every": 0}


def final_parameters(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out_dir / "last.pt")["model"]


def test_same_seed_same_parameters_other_seed_differs(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(ToyTask(dropout=0.2), TrainConfig(epochs=2, lr=1e-2, seed=seed, **QUIET), tmp_path / name)
        runs[name] = final_parameters(tmp_path / name)
    for key, value in runs["a"].items():
        assert torch.equal(value, runs["b"][key]), key
    assert any(not torch.equal(value, runs["c"][key]) for key, value in runs["a"].items())


def test_checkpoint_files_and_contents(tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, lr=1e-2, patience=0, **QUIET)
    summary = train(ToyTask(), config, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.pt", "epoch-000.pt", "epoch-001.pt", "epoch-002.pt", "last.pt", "tensorboard", "train_state.json"]
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 3 * 8 == summary["steps"]
    assert last["config"] == config.to_dict()
    assert last["model_config"] == {"hidden": 16, "dropout": 0.0}
    rebuilt = ToyModel(**last["model_config"])
    rebuilt.load_state_dict(last["model"])  # loadable without the task, no "module." prefix
    assert len(last["rng"]) == 1 and set(last["rng"][0]) >= {"python", "numpy", "torch"}
    for key, value in load_checkpoint(tmp_path / "epoch-002.pt")["model"].items():
        assert torch.equal(value, last["model"][key])
    assert [h["epoch"] for h in summary["history"]] == [0, 1, 2]
    assert {"train_loss", "loss", "accuracy"} <= set(summary["history"][0])
    assert summary["epochs_run"] == 3 and not summary["stopped_early"] and isinstance(summary["samples_per_s"], float)


def test_best_checkpoint_is_the_best_epoch_and_early_stopping_waits_patience(tmp_path: Path) -> None:
    scores = [0.5, 0.7, 0.6, 0.65, 0.69, 0.9]  # best at epoch 1, then 3 epochs without improvement
    summary = train(ToyTask(scripted_scores=scores), TrainConfig(epochs=6, patience=3, **QUIET), tmp_path)
    assert summary["stopped_early"] and summary["epochs_run"] == 5
    assert summary["best_epoch"] == 1 and summary["best_value"] == 0.7
    assert not (tmp_path / "epoch-005.pt").exists()
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1
    for key, value in load_checkpoint(tmp_path / "epoch-001.pt")["model"].items():
        assert torch.equal(value, best["model"][key])
    assert load_checkpoint(tmp_path / "last.pt")["epochs_without_improvement"] == 3


def test_min_mode_and_nan_never_improves(tmp_path: Path) -> None:
    task = ToyTask(scripted_scores=[math.nan, 0.5, 0.3, 0.4])
    task.monitor_mode = "min"
    summary = train(task, TrainConfig(epochs=4, patience=0, max_steps_per_epoch=1, **QUIET), tmp_path)
    assert summary["best_epoch"] == 2 and summary["best_value"] == 0.3 and not summary["stopped_early"]
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


def test_warmup_cosine_values() -> None:
    schedule = WarmupCosine(total_steps=100, warmup_fraction=0.1, min_lr_ratio=0.2)
    assert schedule.warmup_steps == 10
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)  # warmup end: the peak
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(55) == pytest.approx(0.2 + 0.8 * 0.5)  # half way through the cosine
    assert schedule(100) == pytest.approx(0.2) and schedule(150) == pytest.approx(0.2)
    assert all(schedule(s) > schedule(s + 1) for s in range(10, 99))
    assert WarmupCosine(10, 0.0, 0.1)(0) == pytest.approx(1.0)  # no warmup: start at the peak


def test_learning_rate_ends_at_min_ratio(tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, lr=0.02, min_lr_ratio=0.25, warmup_fraction=0.25, **QUIET)
    train(ToyTask(), config, tmp_path)
    last = load_checkpoint(tmp_path / "last.pt")
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == pytest.approx([0.02 * 0.25] * 2)
    assert last["scheduler"]["last_epoch"] == 16


def test_no_weight_decay_on_biases_norms_and_marked_parameters() -> None:
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 3), nn.LayerNorm(3))
    marked = nn.Parameter(torch.ones(3, 3))
    marked._no_weight_decay = True
    model.register_parameter("marked", marked)
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[1].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[1].bias), id(model[2].weight), id(model[2].bias), id(marked)}

    # behaviour: with zero gradients AdamW's only change is the decay, so exempt parameters do not move
    optimizer = build_optimizer(model, TrainConfig(lr=0.5, weight_decay=0.1))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        if name in ("0.weight", "1.weight"):
            torch.testing.assert_close(p, before[name] * (1 - 0.5 * 0.1))
        else:
            assert torch.equal(p, before[name]), name


def test_autocast_dtypes() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is torch.float16 and autocast_dtype("off", cuda) is None
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tmp_path: Path, amp: str) -> None:
    summary = train(ToyTask(), TrainConfig(epochs=1, lr=1e-2, amp=amp, max_steps_per_epoch=3, **QUIET), tmp_path)
    assert summary["steps"] == 3 and math.isfinite(summary["history"][0]["train_loss"])
    scaler_state = load_checkpoint(tmp_path / "last.pt")["scaler"]
    assert bool(scaler_state) == (amp == "fp16")  # the GradScaler only exists for fp16


def test_tensorboard_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(epochs=2, lr=0.01, warmup_fraction=0.25, progress=False, log_every=1)
    train(ToyTask(), config, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"train/loss", "train/batch_accuracy", "train/lr", "train/grad_norm", "train/samples_per_s",
                    "val/loss", "val/accuracy", "epoch/seconds"}  # fmt: skip
    lr = [e.value for e in events.Scalars("train/lr")]
    assert len(lr) == 16 and lr[0] == pytest.approx(0.01 / 4) and lr[3] == pytest.approx(0.01)
    assert [e.step for e in events.Scalars("val/accuracy")] == [8, 16]


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    train(ToyTask(), TrainConfig(epochs=1, max_steps_per_epoch=1, **QUIET), tmp_path)
    with pytest.raises(RetailSimError, match="resume"):
        train(ToyTask(), TrainConfig(epochs=1, max_steps_per_epoch=1, **QUIET), tmp_path)


def test_a_new_run_needs_an_empty_directory_and_a_diverged_one_stops(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "transactions_200601.csv").write_text("the user's")  # its best.pt would land beside them
    with pytest.raises(RetailSimError, match="not empty and no training run to resume"):
        train(ToyTask(), TrainConfig(epochs=1, max_steps_per_epoch=1, **QUIET), tmp_path / "raw")
    stopped = tmp_path / "stopped"  # a run stopped in its first epoch: only its curves, nothing to resume
    (stopped / "tensorboard").mkdir(parents=True)
    (stopped / "tensorboard" / "events.out.tfevents.1").write_text("a killed epoch's scalars")
    train(ToyTask(), TrainConfig(epochs=1, max_steps_per_epoch=1, **QUIET), stopped)
    assert (stopped / "last.pt").exists() and not (stopped / "tensorboard" / "events.out.tfevents.1").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RetailSimError, match="exists and is not a directory"):
        train(ToyTask(), TrainConfig(epochs=1, max_steps_per_epoch=1, **QUIET), tmp_path / "file")
    with pytest.raises(RetailSimError, match=r"^epoch 0: the training loss is nan \(the run diverged"):
        train(ToyTask(), TrainConfig(epochs=2, lr=math.inf, **QUIET), tmp_path / "diverged")
    assert not (tmp_path / "diverged" / "last.pt").exists()  # no epoch of NaN weights saved
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["transactions_200601.csv"]


def test_atomic_write_keeps_the_previous_file_and_no_tmp(tmp_path: Path) -> None:
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"value": torch.tensor(1)})
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"value": torch.tensor(2), "bad": Unpicklable()})
    assert torch.load(path)["value"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(RetailSimError, match=f"^{missing}: missing checkpoint$"):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RetailSimError, match=f"^{garbage}: not a training checkpoint"):
        load_checkpoint(garbage)
    text = tmp_path / "notes.txt"
    text.write_text("some notes")  # torch.load raised KeyError on text
    with pytest.raises(RetailSimError, match=f"^{text}: not a training checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)  # a bare state_dict
    with pytest.raises(RetailSimError, match=f"^{plain}: not a training checkpoint"):
        load_checkpoint(plain)
