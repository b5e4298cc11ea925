"""The world models' tasks through the real trainer and CLI on the tiny prepared market: exact resume,
two gloo processes under torchrun, and ``retailsim evaluate`` with models and baselines side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from retailsim.cli import main
from tests.world_model.training.test_resume import assert_same_state
from world_model.errors import RetailSimError
from world_model.evaluation.targets import EvaluationTargets
from world_model.models.basket import BasketModelConfig
from world_model.models.predictors import load_world_model
from world_model.pipeline.loader import PreparedData
from world_model.training import TrainConfig, load_checkpoint, train
from world_model.training.checkpoint import CHECKPOINT_KEYS, FORMAT
from world_model.training.tasks import BasketTask, BasketTaskConfig, StoreVisitTask, TargetBatches, ranking_scores, trip_classes

REPO = Path(__file__).resolve().parents[3]
CONFIG = TrainConfig(epochs=2, lr=3e-3, patience=0, progress=False, log_every=0, max_steps_per_epoch=3)


class Killed(RuntimeError):
    pass


def _basket_task(data: PreparedData, objective: str = "next_basket", kill_epoch: int | None = None) -> BasketTask:
    config = BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data), d_model=32,
                                     n_heads=4, ffn=64, max_sequence_items=16, objective=objective)  # fmt: skip

    class Task(BasketTask):
        def train_loader(self, epoch, rank, world_size):
            if epoch == kill_epoch:
                raise Killed(epoch)
            return super().train_loader(epoch, rank, world_size)

    return Task(data, config, BasketTaskConfig(batch_size=16, max_validation=64), epochs=CONFIG.epochs)


def test_target_batches_are_disjoint_shards_of_one_epoch() -> None:
    rows = np.arange(103)
    shards = [TargetBatches(rows, 10, seed=3, epoch=1, rank=r, world_size=2, make_batch=lambda b, _: b) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5  # whole global batches only, the same count on every rank
    seen = np.concatenate([b for shard in shards for b in shard])
    assert len(set(seen.tolist())) == len(seen) == 100
    again = TargetBatches(rows, 10, seed=3, epoch=1, rank=0, world_size=2, make_batch=lambda b, _: b)
    assert all((a == b).all() for a, b in zip(shards[0], again))
    other_epoch = TargetBatches(rows, 10, seed=3, epoch=2, rank=0, world_size=2, make_batch=lambda b, _: b)
    assert not all((a == b).all() for a, b in zip(shards[0], other_epoch))


@pytest.mark.parametrize("objective", ["next_basket", "masked"])
def test_basket_training_resumes_exactly(prepared: PreparedData, tmp_path: Path, objective: str) -> None:
    whole = train(_basket_task(prepared, objective), CONFIG, tmp_path / "whole")
    with pytest.raises(Killed):
        train(_basket_task(prepared, objective, kill_epoch=1), CONFIG, tmp_path / "split")
    resumed = train(_basket_task(prepared, objective), CONFIG, tmp_path / "split", resume=True)
    assert resumed["history"] == whole["history"]
    left, right = (load_checkpoint(tmp_path / run / "last.pt") for run in ("whole", "split"))
    assert_same_state(left["model"], right["model"])
    assert_same_state(left["optimizer"], right["optimizer"])


def test_store_visit_training_learns_and_checkpoints(prepared: PreparedData, tmp_path: Path) -> None:
    summary = train(StoreVisitTask(prepared), TrainConfig(epochs=2, lr=3e-3, patience=0, progress=False), tmp_path / "sv")
    assert summary["epochs_run"] == 2 and 0.0 < summary["best_value"] <= 1.0
    checkpoint = load_checkpoint(tmp_path / "sv" / "best.pt")
    assert checkpoint["model_config"]["kind"] == "store_visit"


def test_two_gloo_processes_train_the_world_model(prepared: PreparedData, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "retailsim.cli", "train", "world-model", str(prepared.workdir), "--out", str(out), "--epochs", "1",
               "--batch-size", "8", "--max-steps-per-epoch", "2", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["model_config"]["kind"] == "basket" and checkpoint["step"] == 2
    assert checkpoint["model_config"]["config"]["context_position"] == "decoder"  # the default layout


def test_evaluate_puts_models_and_baselines_side_by_side(prepared: PreparedData, tmp_path: Path) -> None:
    workdir = str(prepared.workdir)
    common = ["--epochs", "1", "--max-steps-per-epoch", "2", "--quiet"]
    assert main(["train", "store-visit", workdir, "--out", str(tmp_path / "sv"), *common]) == 0
    assert main(["train", "world-model", workdir, "--out", str(tmp_path / "wm"), "--batch-size", "16",
                 "--context-position", "encoder", *common]) == 0  # fmt: skip
    assert load_checkpoint(tmp_path / "wm" / "last.pt")["model_config"]["config"]["context_position"] == "encoder"
    out = tmp_path / "metrics.json"
    assert main(["evaluate", workdir, "--world-model", str(tmp_path / "wm"), "--store-visit", str(tmp_path / "sv"),
                 "--split", "validation", "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    for method in ("g_topfreq", "p_topfreq", "tifu_knn", "world_model", "world_model_true_context"):
        for metric in ("recall@10", "ndcg@10", "precision@20", "hit_rate@20"):
            assert 0.0 <= metrics[f"next_basket/{method}/{metric}"] <= 1.0
    for method in ("primary_store", "last_store", "markov_store", "store_visit_model"):
        assert 0.0 <= metrics[f"store_visit/{method}/top1"] <= metrics[f"store_visit/{method}/top3"] <= 1.0
    assert 0.0 <= metrics["trip_heads/world_model/BASKET_SIZE/accuracy"] <= 1.0
    assert metrics["targets/count"] > 0


def test_a_split_without_targets_is_refused_not_written_as_null_metrics(prepared: PreparedData, tmp_path: Path,
                                                                        monkeypatch, capsys) -> None:  # fmt: skip
    from world_model.evaluation.targets import EvaluationTargets

    empty = EvaluationTargets.from_prepared(prepared, "test", limit=0)  # as a split past the data's last week
    monkeypatch.setattr(EvaluationTargets, "from_prepared", classmethod(lambda cls, *args, **kwargs: empty))
    assert main(["evaluate", str(prepared.workdir), "--split", "test", "--out", str(tmp_path / "m.json")]) == 2
    assert "--split test: " in capsys.readouterr().err and not (tmp_path / "m.json").exists()


def test_a_wrong_checkpoint_is_one_clear_error(prepared: PreparedData, tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": 1}, bogus)
    code = main(["evaluate", str(prepared.workdir), "--world-model", str(bogus), "--out", str(tmp_path / "m.json")])
    assert code == 2
    assert str(bogus) in capsys.readouterr().err
    # a basket checkpoint of another vocabulary, and one whose config this version does not know
    config = BasketModelConfig.small(n_products=prepared.n_products + 5).to_dict()
    for name, spec in (("other_vocabulary.pt", config), ("unknown_key.pt", {**config, "n_products": prepared.n_products, "wings": 2})):
        torch.save({**dict.fromkeys(CHECKPOINT_KEYS, 0), "format": FORMAT, "model_config": {"kind": "basket", "config": spec},
                    "model": {}}, tmp_path / name)  # fmt: skip
        with pytest.raises(RetailSimError, match=f"{name}: does not fit this work directory's vocabularies or this version"):
            load_world_model(tmp_path / name, prepared)


@pytest.mark.parametrize("task", [StoreVisitTask, BasketTask])
def test_a_task_without_validation_targets_fails_before_training(prepared: PreparedData, monkeypatch, task) -> None:
    """A --split that leaves no validation targets would make every epoch's monitor meaningless."""
    real = EvaluationTargets.from_prepared.__func__

    def without_validation(cls, data, split, limit=None, **kwargs):
        return real(cls, data, split, limit=0 if split == "validation" else limit, **kwargs)

    monkeypatch.setattr(EvaluationTargets, "from_prepared", classmethod(without_validation))
    with pytest.raises(RetailSimError, match="the validation split has no targets"):
        task(prepared)


def test_ranking_scores_with_fewer_products_than_k() -> None:
    """A vocabulary of 5 real products ranked at k = 10: all of them, the metrics over those 5 ranks."""
    logits = torch.tensor([[float("-inf")] * 3 + [5.0, 4.0, 3.0, 2.0, 1.0]])
    scores = ranking_scores(logits, torch.tensor([[3, 5, 0]]), k=10)  # ranks 1 and 3
    assert scores["recall@10"].item() == 1.0
    ideal = 1.0 + 1.0 / np.log2(3)
    assert scores["ndcg@10"].item() == pytest.approx((1.0 + 1.0 / np.log2(4)) / ideal)
