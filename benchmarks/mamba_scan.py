"""Selective scan backends side by side: the parallel PyTorch scan against the sequential reference loop.

Times forward + backward (gradients for u, delta, A, B, C, D) of ``selective_scan_parallel`` and
``selective_scan_reference``, and of the ``mamba_ssm`` kernel when it imports and CUDA is there; the methods
take turns within each repeat, so load from other processes falls on all of them alike. Prints JSON: per
device and length the median milliseconds of each method, the speed-up of the parallel scan over the loop
(and of the kernel over the parallel scan) and the largest output difference to the reference.

    python benchmarks/mamba_scan.py                          # batch 8, d_inner 256, d_state 16, L 64/256/1024
    python benchmarks/mamba_scan.py --lengths 64 --repeats 1 # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from world_model.models import mamba


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


def bench_device(device: str, lengths: list[int], batch: int, d_inner: int, d_state: int, repeats: int) -> dict:
    methods: dict[str, Callable[..., torch.Tensor]] = {"reference_loop": mamba.selective_scan_reference,
                                                       "parallel": mamba.selective_scan_parallel}
    if device == "cuda" and mamba.selective_scan_fn is not None:
        methods["mamba_ssm_kernel"] = mamba.selective_scan_fn
    warm = make_inputs(batch, d_inner, d_state, min(lengths), device)
    for scan in methods.values():  # first-call costs (allocator, CUDA context, kernel load) out of the timings
        forward_backward(scan, warm)
    rows = []
    for length in lengths:
        inputs = make_inputs(batch, d_inner, d_state, length, device)
        reference = forward_backward(mamba.selective_scan_reference, inputs)
        max_abs_diff = {name: float((forward_backward(scan, inputs) - reference).abs().max())
                        for name, scan in methods.items() if name != "reference_loop"}
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(repeats):  # the methods take turns
            for name, scan in methods.items():
                samples[name].append(timed_ms(scan, inputs, device))
        median_ms = {name: round(statistics.median(values), 2) for name, values in samples.items()}
        row = {"L": length, "median_ms": median_ms,
               "speedup_parallel_vs_loop": round(median_ms["reference_loop"] / median_ms["parallel"], 2),
               "max_abs_diff_vs_reference": max_abs_diff}
        if "mamba_ssm_kernel" in median_ms:
            row["speedup_kernel_vs_parallel"] = round(median_ms["parallel"] / median_ms["mamba_ssm_kernel"], 2)
        rows.append(row)
    return {"device": device if device == "cpu" else torch.cuda.get_device_name(),
            "dispatch_backend": mamba.backend_for(torch.empty(0, device=device)), "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--d-inner", type=int, default=256)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method and length (median)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    report = {
        "what": "selective scan forward+backward, float32, median of repeats (ms)",
        "shape": {"batch": args.batch, "d_inner": args.d_inner, "d_state": args.d_state},
        "repeats": args.repeats, "chunk_size": mamba.DEFAULT_CHUNK_SIZE,
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "mamba_ssm_kernel": "importable" if mamba.selective_scan_fn is not None else mamba.KERNEL_IMPORT_ERROR,
        "devices": [bench_device(device, args.lengths, args.batch, args.d_inner, args.d_state, args.repeats)
                    for device in devices],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
