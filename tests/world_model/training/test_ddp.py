"""Two CPU processes under torchrun (gloo) train the toy task to the same parameters as one process that
sees the same global batches: DDP averages the ranks' gradients of their mean losses, which is the gradient
of the mean loss over the whole global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.world_model.training.toy_task import ToyTask
from world_model.errors import RetailSimError
from world_model.training import TrainConfig, load_checkpoint, train

REPO = Path(__file__).resolve().parents[3]
CONFIG = {"epochs": 2, "lr": 0.02, "patience": 0, "progress": False, "log_every": 4}

# each rank trains on half of every global batch of 8 and writes its summary and the world size it saw
# (to files: the ranks' stdout lines can interleave)
RANK_SCRIPT = """
import json, pathlib, sys
from tests.world_model.training.toy_task import ToyTask
from world_model.training import TrainConfig, distributed_context, train

class Task(ToyTask):
    def train_loader(self, epoch, rank, world_size):
        self.seen = (rank, world_size, distributed_context().world_size)
        return super().train_loader(epoch, rank, world_size)

task = Task(batch_size=4)
summary = train(task, TrainConfig(**json.loads(sys.argv[2])), sys.argv[1])
report = {"seen": task.seen, "steps": summary["steps"], "history": summary["history"]}
pathlib.Path(sys.argv[3], f"rank-{task.seen[0]}.json").write_text(json.dumps(report))
"""


def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    out, reports_dir = tmp_path / "ddp", tmp_path / "reports"
    reports_dir.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--no-python", sys.executable, "-c", RANK_SCRIPT, str(out), json.dumps(CONFIG), str(reports_dir)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    reports = [json.loads(p.read_text()) for p in sorted(reports_dir.iterdir())]
    assert sorted(r["seen"][0] for r in reports) == [0, 1]
    assert all(r["seen"][1:] == [2, 2] for r in reports)
    assert reports[0]["history"] == reports[1]["history"] and reports[0]["steps"] == 16  # 8 global batches an epoch

    # rank 0 alone wrote: one set of checkpoints, one TensorBoard event file, nothing half-written
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pt", "epoch-000.pt", "epoch-001.pt", "last.pt", "tensorboard", "train_state.json"]
    assert len(list((out / "tensorboard").iterdir())) == 1

    single = tmp_path / "single"
    train(ToyTask(batch_size=8), TrainConfig(**CONFIG), single)
    ddp_params, single_params = load_checkpoint(out / "last.pt")["model"], load_checkpoint(single / "last.pt")["model"]
    assert ddp_params.keys() == single_params.keys()
    for key in ddp_params:
        torch.testing.assert_close(ddp_params[key], single_params[key], rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)  # TrainConfig.seed
    initial = ToyTask().build_model().state_dict()  # what the trainer builds after seeding
    assert not torch.equal(ddp_params["fc1.weight"], initial["fc1.weight"])  # it did train


def test_one_named_gpu_for_every_process_is_refused(monkeypatch) -> None:
    """Under torchrun ``cuda:1`` would put every rank on GPU 1 (NCCL then fails on a duplicate GPU):
    refused; plain ``cuda`` gives each process the GPU of its LOCAL_RANK."""
    import world_model.training.distributed as distributed

    monkeypatch.setattr(distributed, "resolve_device", lambda device: torch.device(device))  # as on a 2-GPU machine
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed._context_from_environment("cuda").device == torch.device("cuda", 1)
    with pytest.raises(RetailSimError, match=r"^device: 'cuda:1' under torchrun: every process would use that one GPU"):
        distributed._context_from_environment("cuda:1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed._context_from_environment("cuda:1").device == torch.device("cuda", 1)  # one process: its choice
