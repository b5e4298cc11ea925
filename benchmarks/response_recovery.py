"""Recovery of category elasticities and promotion lifts as the amount of price variation changes.

For each variation scale, generates a market whose promotion share and regular price change rate are
the default's times the scale, ingests it, runs the pipeline's price_response stage
and compares the estimates with the generator's truth. Prints one JSON object (one entry per scale).

    python benchmarks/response_recovery.py [--customers 5000] [--products 5000] [--weeks 94] [--scales 0.25,0.5,1,2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES
from world_model.response.checks import median_abs_rel_error, recovery
from world_model.response.model import PriceResponse


def measure(config: MarketConfig, root: Path, train_end: int) -> dict:
    started = time.perf_counter()
    generate_market(config, root / "raw", progress=False)
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False))
    pipeline = PipelineConfig(train_end=train_end, valid_end=train_end + 1, progress=False)
    run_pipeline(root / "ingested", root / "work", ALL_STAGES, pipeline, only=["price_response"])
    response = PriceResponse.load(root / "work")
    table, summary = recovery(response, root / "raw" / "ground_truth")
    identified = table["elasticity_data_weight"].to_numpy() > 0.5
    return {
        **summary,
        "median_abs_rel_error_identified_only": {
            "elasticity": median_abs_rel_error(table["elasticity_estimate"].to_numpy()[identified],
                                               table["true_elasticity"].to_numpy()[identified]),
            "lift": median_abs_rel_error(table["lift_estimate"].to_numpy()[identified],
                                         table["true_lift"].to_numpy()[identified]),
        },  # fmt: skip
        "categories_identified": int(identified.sum()),
        "median_price_variation": float(table["price_variation"].median()),
        "median_promo_share": float(table["promo_share"].median()),
        "median_elasticity_se": float(np.nanmedian(table["elasticity_se"].replace(np.inf, np.nan))),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--stores", type=int, default=760)
    parser.add_argument("--weeks", type=int, default=94)
    parser.add_argument("--train-end", type=int, default=80)
    parser.add_argument("--scales", default="0.25,0.5,1,2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = MarketConfig(customers=args.customers, products=args.products, stores=args.stores, weeks=args.weeks, seed=args.seed)
    results = {}
    for scale in (float(s) for s in args.scales.split(",")):
        config = replace(base, promo_share=min(base.promo_share * scale, 0.9), price_change_rate=base.price_change_rate * scale)
        with tempfile.TemporaryDirectory() as tmp:
            results[str(scale)] = {"promo_share": config.promo_share, "price_change_rate": config.price_change_rate,
                                   **measure(config, Path(tmp), args.train_end)}  # fmt: skip
        print(json.dumps({scale: results[str(scale)]["median_abs_rel_error"]}), flush=True)
    print(json.dumps({"market": {"customers": args.customers, "products": args.products, "stores": args.stores,
                                 "weeks": args.weeks, "seed": args.seed}, "by_variation_scale": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
