"""Generate a small synthetic market, ingest it, and query the canonical dataset with DuckDB.

    python examples/ingest_and_query.py --out runs/example [--customers 500]

Shows the Python API behind `retailsim data generate` / `retailsim data ingest`, the loader of an ingested
directory (`world_model.data.dataset`), and the ground truth that comes with a generated market.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from world_model.data.dataset import transactions_glob
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    parser.add_argument("--customers", type=int, default=500)
    args = parser.parse_args()

    market = MarketConfig(customers=args.customers, products=300, stores=8, weeks=8, seed=1)
    generate_market(market, args.out / "raw", dirty_rate=0.01, progress=False, overwrite=True)
    report = ingest(args.out / "raw", args.out / "ingested", IngestConfig(overwrite=True, progress=False))
    print(f"accepted {report['rows_accepted']:,} rows, quarantined {report['quarantine_reasons']}")

    # Relational work on the canonical dataset goes through DuckDB (it streams, and spills when large).
    top = duckdb.connect().execute(
        f"""SELECT PROD_CODE, PROD_CODE_20 AS department, sum(QUANTITY) AS units, round(sum(SPEND), 2) AS revenue
            FROM read_parquet('{transactions_glob(args.out / "ingested")}')
            GROUP BY ALL ORDER BY revenue DESC LIMIT 5"""
    ).fetchall()
    print("top products by revenue:", json.dumps(top, default=str))

    # The generated market's truth: the elasticity of each department, to check estimates against.
    truth = pq.read_table(args.out / "raw" / "ground_truth" / "categories.parquet").to_pylist()
    print("true elasticity of the first departments:", [(c["PROD_CODE_20"], round(c["elasticity"], 2)) for c in truth[:3]])


if __name__ == "__main__":
    main()
