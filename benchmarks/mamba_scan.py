"""Selective scan methods side by side: the sequential and chunked PyTorch scans against the reference loop.

Times forward + backward (gradients for u, delta, A, B, C, D) of ``selective_scan_parallel`` with
``method="sequential"`` and ``method="chunked"``, of ``selective_scan_reference``, of the ``mamba_ssm`` kernel
when it imports and CUDA is there, and, with ``--baseline-rev``, of ``selective_scan_parallel`` as
``world_model/models/mamba.py`` was at that git revision. The methods take turns within each repeat, so load
from other processes falls on all of them alike. Prints JSON: per device and shape the median milliseconds of
each method, the speed-ups of the sequential scan over the others, the method ``method="auto"`` picks and
the largest output difference to the reference.

    python benchmarks/mamba_scan.py                            # the basket model's shapes, 5 repeats
    python benchmarks/mamba_scan.py --baseline-rev 84055ca     # and the scan of that commit
    python benchmarks/mamba_scan.py --shapes 8,256,16,1024 --repeats 1 --threads 1

On a shared CPU, compare the default thread count with ``--threads 1``: when other processes keep the cores
busy, every multi-threaded op waits for its descheduled worker thread, and the step count (not the work)
decides.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from world_model.models import mamba

REPO = Path(__file__).resolve().parents[1]
MODULE_PATH = "world_model/models/mamba.py"
# (batch, d_inner, d_state, L): the basket model's small CPU config (MambaConfig.small, baskets of 17 to 65
# steps, d_state 16 or 8) and one full-size layer (MambaConfig.full: d_inner 1024)
DEFAULT_SHAPES = ["256,128,16,17", "256,128,16,65", "256,128,8,17", "256,128,8,65", "8,1024,16,256"]


def make_inputs(batch: int, d_inner: int, d_state: int, length: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    inputs = {"u": randn(batch, d_inner, length), "delta": randn(batch, d_inner, length),
              "A": -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1),
              "B": randn(batch, d_state, length), "C": randn(batch, d_state, length), "D": torch.ones(d_inner),
              "z": randn(batch, d_inner, length), "delta_bias": randn(d_inner) - 4.0}
    return {name: t.to(device).requires_grad_(name in ("u", "delta", "A", "B", "C", "D"))
            for name, t in inputs.items()}


def forward_backward(scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    out = scan(**inputs)
    grads = torch.autograd.grad(out.square().sum(), [t for t in inputs.values() if t.requires_grad])
    del grads
    return out.detach()


def timed_ms(scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    forward_backward(scan, inputs)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) * 1e3


def baseline_scan(revision: str) -> Callable[..., torch.Tensor]:
    """``selective_scan_parallel`` from ``world_model/models/mamba.py`` at a git revision, imported as a module."""
    source = subprocess.run(["git", "show", f"{revision}:{MODULE_PATH}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    name = f"_mamba_at_{revision}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:{MODULE_PATH}", "exec"), module.__dict__)
    return module.selective_scan_parallel


def bench_device(device: str, shapes: list[tuple[int, int, int, int]], repeats: int,
                 baseline: Callable[..., torch.Tensor] | None) -> dict:
    methods: dict[str, Callable[..., torch.Tensor]] = {
        "reference_loop": mamba.selective_scan_reference,
        "chunked": functools.partial(mamba.selective_scan_parallel, method="chunked"),
        "sequential": functools.partial(mamba.selective_scan_parallel, method="sequential"),
    }
    if baseline is not None:
        methods["baseline"] = baseline
    if device == "cuda" and mamba.selective_scan_fn is not None:
        methods["mamba_ssm_kernel"] = mamba.selective_scan_fn
    warm = make_inputs(*min(shapes, key=lambda shape: shape[0] * shape[1] * shape[2] * shape[3]), device)
    for scan in methods.values():  # first-call costs (allocator, CUDA context, kernel load) out of the timings
        forward_backward(scan, warm)
    rows = []
    for batch, d_inner, d_state, length in shapes:
        inputs = make_inputs(batch, d_inner, d_state, length, device)
        reference = forward_backward(mamba.selective_scan_reference, inputs)
        max_abs_diff = {name: float((forward_backward(scan, inputs) - reference).abs().max())
                        for name, scan in methods.items() if name != "reference_loop"}
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(repeats):  # the methods take turns
            for name, scan in methods.items():
                samples[name].append(timed_ms(scan, inputs, device))
        median_ms = {name: round(statistics.median(values), 2) for name, values in samples.items()}
        speedup = {f"sequential_vs_{name}": round(ms / median_ms["sequential"], 2)
                   for name, ms in median_ms.items() if name != "sequential"}
        rows.append({"batch": batch, "d_inner": d_inner, "d_state": d_state, "L": length,
                     "auto_method": mamba.scan_method_for(inputs["u"]),
                     "median_ms": median_ms, "speedup": speedup, "max_abs_diff_vs_reference": max_abs_diff})
    return {"device": device if device == "cpu" else torch.cuda.get_device_name(),
            "dispatch_backend": mamba.backend_for(torch.empty(0, device=device)), "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, metavar="BATCH,D_INNER,D_STATE,L")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method and shape (median)")
    parser.add_argument("--baseline-rev", default=None,
                        help="also time selective_scan_parallel of world_model/models/mamba.py at this git revision")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shapes = [tuple(int(size) for size in shape.split(",")) for shape in args.shapes]
    if any(len(shape) != 4 for shape in shapes):
        parser.error("each shape is BATCH,D_INNER,D_STATE,L")
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    baseline = baseline_scan(args.baseline_rev) if args.baseline_rev else None
    report = {
        "what": "selective scan forward+backward, float32, median of repeats (ms)",
        "repeats": args.repeats, "chunk_size": mamba.DEFAULT_CHUNK_SIZE,
        "plain_loop_max_length": mamba.PLAIN_LOOP_MAX_LENGTH, "baseline_rev": args.baseline_rev,
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "mamba_ssm_kernel": "importable" if mamba.selective_scan_fn is not None else mamba.KERNEL_IMPORT_ERROR,
        "devices": [bench_device(device, shapes, args.repeats, baseline) for device in devices],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
