"""Calibration of the synthetic market: generate, ingest, measure the facts, compare with the real sample.

Prints JSON (facts, per-fact ratio to the real sample, the largest deviation) and, with ``--markdown``,
the table kept in ``docs/calibration.md``. The same ``compute_facts`` measured the real sample, so the
comparison is like for like.

    python benchmarks/calibration.py                       # the default market (about 2.6M rows)
    python benchmarks/calibration.py --customers 400       # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from world_model.data.facts import REAL_SAMPLE_FACTS, compare_to_real, compute_facts
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market


def calibrate(config: MarketConfig, workdir: Path) -> dict:
    """Generate ``config`` under ``workdir``, ingest it and compare its facts with the real sample."""
    started = time.perf_counter()
    generate_market(config, workdir / "raw", progress=False, overwrite=True)
    ingest(workdir / "raw", workdir / "ingested", IngestConfig(progress=False, overwrite=True))
    facts = compute_facts(workdir / "ingested")
    rows = compare_to_real(facts)
    return {
        "config": {"customers": config.customers, "products": config.products, "stores": config.stores,
                   "weeks": config.weeks, "seed": config.seed},
        "facts": facts,
        "comparison": rows,
        "max_abs_relative_error": max(abs(r["relative_error"]) for r in rows),
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(result: dict) -> str:
    lines = ["| fact | real sample | generated | relative error |", "| --- | ---: | ---: | ---: |"]
    for row in result["comparison"]:
        lines.append(f"| {row['fact']} | {row['real']:g} | {row['measured']:g} | {row['relative_error']:+.1%} |")
    return "\n".join(lines)


def main() -> None:
    defaults = MarketConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=defaults.customers)
    parser.add_argument("--products", type=int, default=defaults.products)
    parser.add_argument("--stores", type=int, default=defaults.stores)
    parser.add_argument("--weeks", type=int, default=defaults.weeks)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--markdown", action="store_true", help="also print the docs table")
    args = parser.parse_args()
    config = MarketConfig(customers=args.customers, products=args.products, stores=args.stores,
                          weeks=args.weeks, seed=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="retailsim-calibration-"))
    try:
        result = calibrate(config, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.markdown:
        print(markdown(result))
    assert set(REAL_SAMPLE_FACTS) == {r["fact"] for r in result["comparison"]}


if __name__ == "__main__":
    main()
