"""Write a synthetic market in the LGSR file layout, week by week, with its ground truth.

Output of ``generate_market(config, out_dir)``::

    out_dir/transactions_YYYYWW.csv   one file per week, LGSR "seg" layout (or .parquet, all strings)
    out_dir/time.csv                  shop_week,date_from,date_to (dates yyyymmdd)
    out_dir/ground_truth/             see ``truth.py``

Each week is simulated from its own generator seeded by (seed, week index) - weeks are independent and
the same config always gives byte-identical files - then encoded, dirtied if asked and written, so
memory stays bounded by one week. Everything is written into a temporary sibling directory that is
renamed to ``out_dir`` at the end: a crash never leaves a half-written market behind.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from world_model.errors import check_output_dir
from world_model.files import recover_replaced, replacing

from ..schema import Reason
from .config import MarketConfig
from .defects import apply_field_edits, duplicate_order, field_edits, plan_defects
from .market import SyntheticMarket
from .truth import PromotionLog, write_ground_truth
from .writer import csv_bytes, csv_lines, string_columns, string_table

STREAM_WEEK = 0
STREAM_DEFECTS = 1
FORMATS = ("csv", "parquet")


def _write_time_csv(market: SyntheticMarket, path: Path) -> None:
    rows = ["shop_week,date_from,date_to"]
    for w in market.calendar():
        rows.append(f"{w.shop_week},{w.date_from:%Y%m%d},{w.date_to:%Y%m%d}")
    path.write_text("\n".join(rows) + "\n")


def _write_week(
    market: SyntheticMarket, week_index: int, out: Path, fmt: str, dirty_rate: float, promotions: PromotionLog
) -> dict[str, Any]:
    """Simulate, encode, dirty and write one week; return its counts and defect positions."""
    cfg = market.config
    shop_week = market.calendar_week(week_index).shop_week
    promotions.add(shop_week, market.promotions(week_index))
    price, depth = market.scheduled_prices(week_index)
    lines = market.simulate_week_lines(week_index, price, depth, np.random.default_rng([cfg.seed, week_index, STREAM_WEEK]))
    cols = string_columns(market.to_table(lines))
    rng = np.random.default_rng([cfg.seed, week_index, STREAM_DEFECTS])
    plan = plan_defects(lines.n_lines, dirty_rate, rng, with_malformed=(fmt == "csv"))
    cols = apply_field_edits(cols, field_edits(cols, plan, rng))
    order, is_copy = duplicate_order(lines.n_lines, plan.rows[Reason.DUPLICATE_LINE], rng)
    path = out / f"transactions_{shop_week}.{fmt}"
    if fmt == "csv":
        malformed = plan.rows[Reason.MALFORMED_LINE]
        too_many = rng.random(len(malformed)) < 0.5
        text = csv_lines(cols, malformed[~too_many], malformed[too_many])
        path.write_bytes(csv_bytes(text.take(pa.array(order))))
    else:
        pq.write_table(string_table(cols).take(pa.array(order)), path)
    return {
        "shop_week": shop_week,
        "rows": len(order),
        "clean_rows": lines.n_lines - sum(len(r) for k, r in plan.rows.items() if k != Reason.DUPLICATE_LINE),
        "baskets": lines.n_baskets,
        "defects": plan.counts(),
        "defect_rows": _defect_positions(shop_week, plan.rows, order, is_copy),
    }


def _defect_positions(shop_week: int, rows: dict[str, np.ndarray], order: np.ndarray, is_copy: np.ndarray) -> pa.Table:
    """File row (0-based, header excluded) of every defect; duplicates also name their source row."""
    position = np.empty(int((~is_copy).sum()), dtype=np.int64)
    position[order[~is_copy]] = np.flatnonzero(~is_copy)
    reasons, file_rows, source_rows = [], [], []
    for reason, src in rows.items():
        if reason == Reason.DUPLICATE_LINE:
            copies = np.flatnonzero(is_copy)
            file_rows.append(copies)
            source_rows.append(position[order[copies]])
        else:
            file_rows.append(position[src])
            source_rows.append(np.full(len(src), -1))
        reasons.append(np.full(len(file_rows[-1]), reason, dtype=object))
    return pa.table({
        "SHOP_WEEK": pa.array(np.full(sum(len(r) for r in file_rows), shop_week), pa.int32()),
        "row": pa.array(np.concatenate(file_rows), pa.int64()),
        "reason": pa.array(np.concatenate(reasons).tolist(), pa.string()),
        "source_row": pa.array(np.concatenate(source_rows), pa.int64()),
    })


def generate_market(
    config: MarketConfig,
    out_dir: str | os.PathLike[str],
    fmt: str = "csv",
    dirty_rate: float = 0.0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate the market of ``config`` into ``out_dir`` and return a summary.

    ``fmt``: "csv" (plain LGSR csv) or "parquet" (all-string columns; no malformed lines).
    ``dirty_rate``: about this share of rows carry exactly one injected defect (see ``defects.py``).
    ``overwrite``: replace a non-empty ``out_dir`` (otherwise RetailSimError).
    Returns {"rows", "clean_rows", "baskets", "files", "seconds", "rows_per_second", "defects", "out_dir"}.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if not 0.0 <= dirty_rate <= 1.0:
        raise ValueError("dirty_rate must be in [0, 1]")
    out = Path(out_dir)
    recover_replaced(out)
    check_output_dir(out, overwrite)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        market = SyntheticMarket(config)
        _write_time_csv(market, tmp / "time.csv")
        promotions = PromotionLog()
        weeks = []
        for week_index in tqdm(range(config.weeks), disable=not progress, desc="synthetic market", unit="week"):
            weeks.append(_write_week(market, week_index, tmp, fmt, dirty_rate, promotions))
        defects = {
            "total": {r: sum(w["defects"].get(r, 0) for w in weeks) for r in Reason.ALL},
            "by_week": {str(w["shop_week"]): w["defects"] for w in weeks},
            "dirty_rate": dirty_rate,
            "format": fmt,
        }
        defect_rows = pa.concat_tables([w.pop("defect_rows") for w in weeks])
        write_ground_truth(market, tmp / "ground_truth", promotions, defects, defect_rows)
        with replacing([out]):
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    rows = sum(w["rows"] for w in weeks)
    return {
        "rows": rows,
        "clean_rows": sum(w["clean_rows"] for w in weeks),
        "baskets": sum(w["baskets"] for w in weeks),
        "files": config.weeks,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "defects": defects["total"],
        "out_dir": str(out),
    }
