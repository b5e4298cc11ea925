"""The benchmark scripts ``benchmarks/gpu_check.sh`` runs (and ``forward_flops.py``) run on a CPU with tiny
sizes and print the figures a GPU session reads: a script that broke would otherwise be found only there,
where device time is short. No figure is checked against a value (tests never assert on wall time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *args: str) -> list[dict]:
    """The script's JSON output: one document, or one per line."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout.strip()
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines()]


def test_gpu_check_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")]).returncode == 0


def test_env_throughput_reports_visits_ratio_and_time_beyond_the_forward() -> None:
    reports = run("env_throughput.py", "--sizes", "shipped,small", "--layouts", "decoder", "--num-envs", "2",
                  "--steps", "2", "--warmup", "0")  # fmt: skip
    cases = [(r["size"], r["config"]["propensities"]) for r in reports]
    assert cases == [("shipped", "weekly"), ("shipped", "fixed"), ("small", "weekly")]
    for report in reports:
        assert isinstance(report["vector"]["shopper_visits_per_s"], float) and report["mamba_backend"] == "pytorch"
    weekly = [r for r in reports if r["config"]["propensities"] == "weekly"]
    assert all(isinstance(r["step_to_forward_ratio"], float) and isinstance(r["beyond_forward"]["us_per_visit"], float)
               for r in weekly)  # fmt: skip
    assert all(set(r["forward_by_inference_batch"]) == {"256", "1024", "4096"} for r in weekly)


def test_env_host_floor_reports_the_ceiling_with_and_without_the_softmax() -> None:
    (report,) = run("env_host_floor.py", "--num-envs", "2", "--steps", "2", "--warmup", "0")
    assert report["num_envs"] == 2 and report["visits_per_step"] > 0
    assert {"us_per_visit", "visits_per_s"} <= set(report["without_softmax"])


@pytest.mark.parametrize("script,args,keys", [
    ("mamba_scan.py", ("--shapes", "2,8,4,16", "--repeats", "1", "--devices", "cpu"), {"devices", "mamba_ssm_kernel"}),
    ("world_models.py", ("--steps", "1", "--warmup", "0", "--batch-size", "8"),
     {"basket_train_samples_per_s", "store_visit_train_samples_per_s", "mamba_backend"}),
    ("forward_flops.py", ("--size", "small", "--trips", "4"), {"gflop_per_trip", "history_length"}),
])  # fmt: skip
def test_the_other_device_benchmarks_print_their_figures(script: str, args: tuple[str, ...], keys: set[str]) -> None:
    (report,) = run(script, *args)
    assert keys <= set(report)
