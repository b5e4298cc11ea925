"""Training and inference throughput of the world models; prints JSON.

    python benchmarks/world_models.py --workdir WORKDIR [--size small|full] [--device auto] [--steps 20]

WORKDIR is a work directory written by ``retailsim pipeline run`` (for instance on the real sample); without
one, a small synthetic market is generated and prepared in a temporary directory. Figures:

- ``mamba_backend``: which selective scan ran (``mamba_ssm`` kernels or the ``pytorch`` scan);
- ``train_samples_per_s``: optimizer steps (forward, backward, AdamW) over real training batches, batch
  building included, median over ``--steps`` steps after ``--warmup`` unmeasured ones;
- ``inference_baskets_per_s``: next-basket top-20 rankings (batch building included) in eval mode;
- ``epoch_seconds_estimate`` and ``twenty_epochs_hours_estimate``: the training targets of WORKDIR divided
  by the measured rate (a projection from measured steps, labelled as such, not a timed 20-epoch run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.evaluation.targets import EvaluationTargets
from world_model.models.basket import BasketModelConfig, top_k_products
from world_model.models.batches import to_device
from world_model.models.mamba import backend_for
from world_model.models.predictors import resolve_device
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES
from world_model.training.tasks import BasketTask, BasketTaskConfig, StoreVisitTask, StoreVisitTaskConfig, trip_classes
from world_model.training.trainer import autocast_dtype


def _prepare_small_market(root: Path) -> Path:
    generate_market(MarketConfig(customers=600, products=400, stores=20, weeks=30, seed=3), root / "raw", progress=False)
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False))
    run_pipeline(root / "ingested", root / "work", ALL_STAGES, PipelineConfig(train_end=22, valid_end=26, progress=False))
    return root / "work"



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _train_rate(task, device: torch.device, steps: int, warmup: int, amp: str) -> float:
    model = task.build_model().to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    dtype = autocast_dtype(amp, device)
    loader = iter(task.train_loader(0, 0, 1))
    rates = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        batch = to_device(next(loader), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= warmup:
            rates.append(task.batch_size_of(batch) / (time.perf_counter() - start))
    return statistics.median(rates)


@torch.no_grad()
def _inference_rate(task: BasketTask, device: torch.device, batches: int, batch_size: int, amp: str) -> float:
    model = task.build_model().to(device).eval()
    dtype = autocast_dtype(amp, device)
    rows = task.rows[: batches * batch_size]
    rates = []
    for i, start in enumerate(range(0, len(rows), batch_size)):
        t0 = time.perf_counter()
        batch = to_device(task.builder.next_basket(rows[start : start + batch_size]), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            top_k_products(model(batch)["logits"].float(), 20).cpu()
        _sync(device)
        if i:  # the first batch warms up
            rates.append(len(batch["customer"]) / (time.perf_counter() - t0))
    return statistics.median(rates) if rates else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="prepared work directory (default: a generated small market)")
    parser.add_argument("--size", choices=["small", "full"], default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or _prepare_small_market(Path(tmp))
        data = PreparedData(workdir)
        sizes = BasketModelConfig.full if args.size == "full" else BasketModelConfig.small
        config = sizes(n_products=data.n_products, trip_classes=trip_classes(data))
        basket = BasketTask(data, config, BasketTaskConfig(batch_size=args.batch_size, max_validation=1))
        store = StoreVisitTask(data, task_config=StoreVisitTaskConfig(batch_size=512, max_validation=1))
        torch.manual_seed(0)
        basket_rate = _train_rate(basket, device, args.steps, args.warmup, args.amp)
        store_rate = _train_rate(store, device, args.steps, args.warmup, args.amp)
        inference = _inference_rate(basket, device, args.steps + 1, 512, args.amp)
        train_targets = len(basket.rows)
        epoch_seconds = train_targets / basket_rate
        result = {
            "workdir": str(args.workdir) if args.workdir else "generated (600 customers, 400 products, 20 stores)",
            "device": str(device),
            "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "mamba_backend": backend_for(torch.zeros(1, device=device)),
            "size": args.size,
            "d_model": config.d_model,
            "amp": str(autocast_dtype(args.amp, device)),
            "threads": torch.get_num_threads(),
            "basket_train_samples_per_s": round(basket_rate, 1),
            "store_visit_train_samples_per_s": round(store_rate, 1),
            "basket_inference_baskets_per_s": round(inference, 1),
            "basket_train_targets": train_targets,
            "epoch_seconds_estimate": round(epoch_seconds, 1),
            "twenty_epochs_hours_estimate": round(20 * epoch_seconds / 3600, 3),
            "validation_targets": len(EvaluationTargets.from_prepared(data, "validation")),
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
