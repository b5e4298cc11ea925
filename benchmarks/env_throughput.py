"""Environment throughput over model sizes, layouts and propensity modes; prints JSON lines (one ``retailsim
bench env`` report per case, each printed as soon as its case is done, so a run cut short by a time limit
keeps the cases it finished).

    python benchmarks/env_throughput.py [--scenario DIR] [--sizes shipped,small,full] [--layouts decoder,encoder]
        [--num-envs 8] [--steps 10] [--device auto]

``shipped`` is the scenario's own basket model, with ``propensities="weekly"`` (a forward per step) and
"fixed" (no forward per step). ``small`` and ``full`` swap in an untrained basket model of that size
(``BasketModelConfig.small()``; ``full()``: d 512, 4 Mamba layers, 256 history items) over the same
vocabulary, in a temporary copy of the scenario, once per ``--layouts`` entry: ``decoder`` (the context
after the encoder: histories encoded once, a week runs the decoder) and ``encoder`` (the context leads the
encoder: the whole model every week); weekly propensities. Throughput does not depend on the weights, so
a size's cost is measurable without training it. On a CUDA machine with ``mamba-ssm`` installed the
report's ``mamba_backend`` says "mamba_ssm".
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from world_model.models.basket import BasketModelConfig, BasketWorldModel
from world_model.training.checkpoint import load_checkpoint, save_checkpoint

from retailsim_env.bench import EnvBenchConfig, bench_env
from retailsim_env.scenario import MODELS, Scenario, file_sha256


def untrained_copy(scenario: Scenario, out: Path, size: str, context_position: str) -> Path:
    """A copy of ``scenario`` whose basket model is an untrained one of ``size`` (hashes updated)."""
    shutil.copytree(scenario.path, out)
    checkpoint = load_checkpoint(out / MODELS["basket"])
    shipped = BasketModelConfig.from_dict(checkpoint["model_config"]["config"])
    sizes = {"small": BasketModelConfig.small, "full": BasketModelConfig.full}
    config = sizes[size](n_products=shipped.n_products, trip_classes=shipped.trip_classes,
                         context_position=context_position)  # fmt: skip
    data = scenario.data
    torch.manual_seed(0)
    model = BasketWorldModel(config, data.products, data.customers, data.stores)
    checkpoint.update(model=model.state_dict(), model_config={"kind": "basket", "config": config.to_dict()})
    save_checkpoint(out / MODELS["basket"], checkpoint)
    meta = json.loads((out / "scenario.json").read_text())
    meta["files"][MODELS["basket"]] = file_sha256(out / MODELS["basket"])
    meta["name"] += f"-{size}-untrained-{context_position}"
    (out / "scenario.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", help="scenario directory (default: the shipped one)")
    parser.add_argument("--sizes", default="shipped,full", help="shipped, small, full (module docstring)")
    parser.add_argument("--layouts", default="decoder,encoder", help="context positions of the untrained models")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    scenario = Scenario(args.scenario)
    sizes = args.sizes.split(",")
    cases = [("shipped", None, propensities) for propensities in ("weekly", "fixed") if "shipped" in sizes]
    cases += [(size, layout, "weekly") for size in ("small", "full") if size in sizes for layout in args.layouts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for size, layout, propensities in cases:
            path = scenario.path if layout is None else untrained_copy(scenario, Path(tmp) / f"{size}-{layout}", size, layout)
            config = EnvBenchConfig(scenario=str(path), num_envs=args.num_envs, steps=args.steps,
                                    warmup=args.warmup, device=args.device, propensities=propensities)  # fmt: skip
            print(json.dumps({"size": size, "context_position": layout, **bench_env(config)}), flush=True)


if __name__ == "__main__":
    main()
