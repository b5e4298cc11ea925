"""The basket model's two layouts side by side: validation accuracy after the same training; prints JSON.

    python benchmarks/context_position.py --workdir WORKDIR [--epochs 2] [--steps-per-epoch 300]

``encoder``: the trip's context token leads the Mamba sequence; ``decoder``: it joins the decoder's memory
and queries after the encoder, so the simulator can encode each history once
(``world_model.models.history_cache``). Both train with the same seed, data order, optimizer and budget
(``--epochs`` x ``--steps-per-epoch`` batches of the small size), and report the task's validation metrics
per epoch (ndcg@10, recall@10 on the split's first ``max_validation`` validation targets). WORKDIR is a
work directory written by ``retailsim pipeline run``; without one, ``benchmarks/world_models.py``'s small
synthetic market is prepared in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from world_model.models.basket import CONTEXT_POSITIONS, BasketModelConfig
from world_model.pipeline.loader import PreparedData
from world_model.training.config import TrainConfig
from world_model.training.tasks import BasketTask, BasketTaskConfig, trip_classes
from world_model.training.trainer import train
from world_models import _prepare_small_market  # the sibling benchmark's small generated market


def compare(workdir: Path, out: Path, epochs: int, steps_per_epoch: int, seed: int = 0) -> dict:
    data = PreparedData(workdir)
    report = {"workdir": str(workdir), "epochs": epochs, "steps_per_epoch": steps_per_epoch, "layouts": {}}
    for position in CONTEXT_POSITIONS:
        config = BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data),
                                         context_position=position)  # fmt: skip
        task = BasketTask(data, config, BasketTaskConfig(seed=seed), epochs=epochs)
        summary = train(task, TrainConfig(epochs=epochs, seed=seed, max_steps_per_epoch=steps_per_epoch, progress=False,
                                          lr=2e-3, patience=epochs), out / position)  # fmt: skip
        report["layouts"][position] = {"history": summary["history"], "best_value": summary["best_value"],
                                       "monitor": summary["monitor"], "samples_per_s": summary["samples_per_s"]}  # fmt: skip
    best = {position: result["best_value"] for position, result in report["layouts"].items()}
    report["decoder_to_encoder_best_ratio"] = best["decoder"] / best["encoder"] if best["encoder"] else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="a pipeline work directory (default: a small generated market)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps-per-epoch", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else _prepare_small_market(Path(tmp))
        print(json.dumps(compare(workdir, Path(tmp) / "runs", args.epochs, args.steps_per_epoch), indent=1, default=float))


if __name__ == "__main__":
    main()
