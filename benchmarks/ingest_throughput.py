"""Ingest throughput and peak memory, printed as JSON.

Runs ``retailsim data ingest`` as a child process (so the figure includes start-up, every pass and the
worker processes) on the real LGSR sample and on a generated market of about ``--rows`` rows, and samples
the resident memory of the whole process tree every 50 ms. Goal of the foundation issue: >= 500K rows/s on
2 cores and peak memory under 4 GB whatever the input size.

    python benchmarks/ingest_throughput.py                    # real sample + a 3M-row market
    python benchmarks/ingest_throughput.py --rows 30000000    # the full-size run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "lgsr_sample"
# Rows per customer-week of the default market: 0.68 baskets x 6.4 lines, plus ~20% anonymous rows.
ROWS_PER_CUSTOMER_WEEK = 5.4


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """Run ``command``; return (seconds, peak tree RSS in bytes, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(process.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return seconds, peak, stdout


def bench_ingest(source: Path, workdir: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = workdir / "ingested"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "retailsim", "data", "ingest", str(source), "--out", str(out), "--quiet", "--json"]
        seconds, peak, stdout = run_measured(command)
        report = json.loads(stdout)
        runs.append({"seconds": seconds, "peak_rss_bytes": peak, "report": report})
    seconds = statistics.median(r["seconds"] for r in runs)
    rows = runs[0]["report"]["rows_read"]
    return {
        "input": str(source),
        "rows": rows,
        "input_bytes": sum(p.stat().st_size for p in source.glob("transactions_*")),
        "repeats": repeats,
        "seconds_median": round(seconds, 3),
        "seconds_all": [round(r["seconds"], 3) for r in runs],
        "rows_per_second_median": round(rows / seconds),
        # The same run timed by ingest itself: from reading the first file to publishing DIR, without
        # the interpreter's start-up and imports (~0.5 s).
        "in_process_seconds_median": statistics.median(r["report"]["seconds"] for r in runs),
        "in_process_rows_per_second_median": round(rows / statistics.median(r["report"]["seconds"] for r in runs)),
        "peak_rss_mb_max": round(max(r["peak_rss_bytes"] for r in runs) / 2**20, 1),
        "seconds_by_pass_last": runs[-1]["report"]["seconds_by_pass"],
        "rows_quarantined": runs[0]["report"]["rows_quarantined"],
    }


def generate(rows: int, workdir: Path, seed: int) -> tuple[Path, dict]:
    weeks = 94
    customers = max(50, round(rows / (weeks * ROWS_PER_CUSTOMER_WEEK)))
    out = workdir / f"market-{rows}"
    command = [
        sys.executable, "-m", "retailsim", "data", "generate", "--out", str(out), "--customers", str(customers),
        "--weeks", str(weeks), "--seed", str(seed), "--quiet",
    ]
    seconds, peak, stdout = run_measured(command)
    summary = json.loads(stdout)
    return out, {
        "customers": customers,
        "rows": summary["rows"],
        "seconds": round(seconds, 3),
        "rows_per_second": round(summary["rows"] / seconds),
        "peak_rss_mb": round(peak / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of the generated market (0: skip)")
    parser.add_argument("--real", type=Path, default=REAL_SAMPLE, help="real LGSR sample directory")
    parser.add_argument("--repeats", type=int, default=3, help="ingest runs per input (median reported)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="retailsim-bench-"))
    result: dict = {"cores": os.cpu_count()}
    try:
        if args.real.is_dir():
            result["real_sample"] = bench_ingest(args.real, workdir, args.repeats)
        else:  # said in the JSON, not only by a missing key
            result["real_sample"] = {"skipped": f"{args.real} is not a directory (pass --real DIR)"}
        if args.rows:
            market, result["generate"] = generate(args.rows, workdir, seed=0)
            result["generated"] = bench_ingest(market, workdir, args.repeats)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
