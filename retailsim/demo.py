"""``retailsim demo``: the main job on the embedded default, runnable right after install.

For now the chain ends at ingest: a small synthetic market with known truth (and a sprinkle of
injected defects, so the quarantine has something to show) is generated, ingested and summarized
next to the real sample's calibration facts. Later stages append their steps here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from world_model.data.facts import SCALE_FREE_FACTS, compute_facts, format_facts
from world_model.data.ingest import IngestConfig, ingest, iter_report_lines
from world_model.data.synthetic import MarketConfig, generate_market


@dataclass(frozen=True)
class DemoConfig:
    """Size of the demo market: small enough for a laptop CPU in well under a minute."""

    customers: int = 1000
    products: int = 800
    stores: int = 20
    weeks: int = 26
    seed: int = 0
    dirty_rate: float = 0.002
    """Share of generated rows given one defect, to exercise the quarantine."""


def run_demo(out: Path, config: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    """Generate, ingest and summarize the demo market under ``out``; returns the ingest report."""
    raw, ingested = out / "raw", out / "ingested"
    market = MarketConfig(
        customers=config.customers, products=config.products, stores=config.stores, weeks=config.weeks, seed=config.seed
    )
    print(f"generating a synthetic market into {raw} ...")
    summary = generate_market(market, raw, dirty_rate=config.dirty_rate, progress=progress, overwrite=True)
    print(f"  {summary['rows']:,} rows, {summary['files']} weekly files, ground truth in {raw / 'ground_truth'}")
    print(f"ingesting into {ingested} ...")
    report = ingest(raw, ingested, IngestConfig(overwrite=True, progress=progress))
    for line in iter_report_lines(report):
        print(f"  {line}")
    print("size-independent facts, generated vs the real LGSR sample (full table: docs/calibration.md):")
    for line in format_facts(compute_facts(ingested), SCALE_FREE_FACTS).splitlines():
        print(f"  {line}")
    print(f"report: {ingested / 'ingest_report.json'}")
    return report
