"""End-to-end pipeline time and peak memory, printed as JSON.

Runs ``retailsim pipeline run`` on raw input (so ingest is included) as a child process and samples the
resident memory of its process tree, on the real LGSR sample and on a generated market of about
``--rows`` rows. Goals of the pipeline issue: the real sample end to end in <= 3 minutes on 2 cores, peak
memory under 6 GB at 30M rows and flat as input grows. Per-stage seconds and peak memory come from the
run's ``pipeline_report.json``.

    python benchmarks/pipeline_end_to_end.py                     # real sample + a 3M-row market
    python benchmarks/pipeline_end_to_end.py --rows 30000000     # the full-size run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_throughput import REAL_SAMPLE, generate, run_measured  # noqa: E402


def bench_pipeline(source: Path, workdir: Path, split: str) -> dict:
    out = workdir / "pipeline"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "retailsim", "pipeline", "run", str(source), "--out", str(out), "--quiet", "--split", split]
    seconds, peak, _ = run_measured(command)
    report = json.loads((out / "pipeline_report.json").read_text())
    ingest_report = json.loads((out / "ingested" / "ingest_report.json").read_text())
    return {
        "input": str(source),
        "rows": ingest_report["rows_read"],
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "ingest_seconds": ingest_report["seconds"],
        "stages": {name: {"seconds": s["seconds"], "peak_rss_mb": s["peak_rss_mb"]} for name, s in report["stages"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of the generated market (0: skip)")
    parser.add_argument("--market", type=Path, help="an already generated market to use instead of generating one")
    parser.add_argument("--real", type=Path, default=REAL_SAMPLE)
    parser.add_argument("--split", default="80,95", help="TRAIN_END,VALID_END")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="retailsim-pipeline-bench-"))
    result: dict = {"cores": os.cpu_count()}
    try:
        if args.real.is_dir():
            result["real_sample"] = bench_pipeline(args.real, workdir, args.split)
        if args.market:
            result["generated"] = bench_pipeline(args.market, workdir, args.split)
        elif args.rows:
            market, result["generate"] = generate(args.rows, workdir, seed=0)
            result["generated"] = bench_pipeline(market, workdir, args.split)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
