"""Defect injection: dirty rows that each trip exactly one ingest quarantine reason.

The ingest checks a row in ``schema.Reason.ALL`` order and keeps its first failing reason, so every
defect changes one field of an otherwise clean row in a way that fails its own check and no earlier one:

==================== ================================================================================
reason               how it is made
==================== ================================================================================
malformed_line       the line loses its last field or gains one (CSV only; applied at line assembly)
unparseable_number   QUANTITY = "abc" or SPEND = "1.2x"
invalid_date         SHOP_DATE with month 13 (e.g. 20061315): numeric, not a calendar date
missing_prod_code    PROD_CODE empty
missing_store_code   STORE_CODE empty
missing_basket_id    BASKET_ID empty
nonpositive_quantity QUANTITY = 0 or minus the original
negative_spend       SPEND = minus the original
hour_out_of_range    SHOP_HOUR in 24..27
weekday_mismatch     SHOP_WEEKDAY shifted by 1..6 days (mod 7)
date_outside_week    SHOP_DATE moved by +-7 days: a valid date, right weekday, another week
duplicate_line       an exact copy of a clean line, inserted at a random later position of the file
==================== ================================================================================

About ``dirty_rate`` of a week's rows are picked (binomial), split evenly at random over the reasons;
every picked row gets exactly one defect, and only untouched clean rows are duplicated. The exact
counts and the final row positions are recorded in the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import Reason

StrColumns = dict[str, pa.Array]


@dataclass(frozen=True)
class DefectPlan:
    """Which rows of a week carry which defect."""

    rows: dict[str, np.ndarray]  # reason -> sorted source row indices

    def counts(self) -> dict[str, int]:
        return {reason: int(len(rows)) for reason, rows in self.rows.items()}


def plan_defects(n_rows: int, rate: float, rng: np.random.Generator, with_malformed: bool) -> DefectPlan:
    """Pick distinct rows for each reason (about ``rate`` of the rows in total)."""
    reasons = [r for r in Reason.ALL if with_malformed or r != Reason.MALFORMED_LINE]
    if rate <= 0 or n_rows == 0:
        return DefectPlan({r: np.zeros(0, dtype=np.int64) for r in reasons})
    total = min(int(rng.binomial(n_rows, min(rate, 1.0))), n_rows)
    per_reason = rng.multinomial(total, np.full(len(reasons), 1.0 / len(reasons)))
    picked = rng.choice(n_rows, size=total, replace=False)
    bounds = np.concatenate([[0], np.cumsum(per_reason)])
    return DefectPlan({r: np.sort(picked[bounds[i]: bounds[i + 1]]) for i, r in enumerate(reasons)})


def _set(edits: dict[str, list[tuple[np.ndarray, np.ndarray]]], column: str, rows: np.ndarray, values) -> None:
    values = np.asarray(values, dtype=object)
    if values.ndim == 0:
        values = np.full(len(rows), values.item(), dtype=object)
    edits.setdefault(column, []).append((rows, values))


def _values(cols: StrColumns, column: str, rows: np.ndarray) -> np.ndarray:
    return np.asarray(cols[column].take(pa.array(rows)).to_numpy(zero_copy_only=False), dtype=object)


def _shift_dates(dates: np.ndarray, days: np.ndarray) -> np.ndarray:
    parsed = pd.to_datetime(pd.Series(dates.astype(str)), format="%Y%m%d") + pd.to_timedelta(days, unit="D")
    return parsed.dt.strftime("%Y%m%d").to_numpy(dtype=object)


def field_edits(cols: StrColumns, plan: DefectPlan, rng: np.random.Generator) -> dict[str, list]:
    """Replacement values per column for every field-level defect of the plan."""
    edits: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    rows = plan.rows
    r = rows.get(Reason.UNPARSEABLE_NUMBER, np.zeros(0, np.int64))
    use_qty = rng.random(len(r)) < 0.5
    _set(edits, "QUANTITY", r[use_qty], "abc")
    _set(edits, "SPEND", r[~use_qty], "1.2x")
    r = rows.get(Reason.INVALID_DATE, np.zeros(0, np.int64))
    d = _values(cols, "SHOP_DATE", r).astype(np.int64)
    _set(edits, "SHOP_DATE", r, ((d // 10000) * 10000 + 1300 + d % 100).astype(str))
    _set(edits, "PROD_CODE", rows[Reason.MISSING_PROD_CODE], "")
    _set(edits, "STORE_CODE", rows[Reason.MISSING_STORE_CODE], "")
    _set(edits, "BASKET_ID", rows[Reason.MISSING_BASKET_ID], "")
    r = rows[Reason.NONPOSITIVE_QUANTITY]
    q = _values(cols, "QUANTITY", r).astype(str)
    _set(edits, "QUANTITY", r, np.where(rng.random(len(r)) < 0.5, "0", np.char.add("-", q)))
    r = rows[Reason.NEGATIVE_SPEND]
    _set(edits, "SPEND", r, np.char.add("-", _values(cols, "SPEND", r).astype(str)))
    r = rows[Reason.HOUR_OUT_OF_RANGE]
    _set(edits, "SHOP_HOUR", r, rng.integers(24, 28, size=len(r)).astype(str))
    r = rows[Reason.WEEKDAY_MISMATCH]
    wd = _values(cols, "SHOP_WEEKDAY", r).astype(np.int64)
    _set(edits, "SHOP_WEEKDAY", r, ((wd - 1 + rng.integers(1, 7, size=len(r))) % 7 + 1).astype(str))
    r = rows[Reason.DATE_OUTSIDE_WEEK]
    shift = np.where(rng.random(len(r)) < 0.5, -7, 7)
    _set(edits, "SHOP_DATE", r, _shift_dates(_values(cols, "SHOP_DATE", r), shift))
    return edits


def apply_field_edits(cols: StrColumns, edits: dict[str, list]) -> StrColumns:
    """Columns with the edited values put in place (vectorized per column)."""
    out = dict(cols)
    for column, parts in edits.items():
        rows = np.concatenate([p[0] for p in parts])
        if len(rows) == 0:
            continue
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(rows, kind="stable")
        mask = np.zeros(len(cols[column]), dtype=bool)
        mask[rows] = True
        out[column] = pc.replace_with_mask(
            cols[column], pa.array(mask), pa.array(values[order].astype(str).tolist(), pa.string())
        )
    return out


def duplicate_order(n_rows: int, sources: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """File order with each source row copied once at a random later position.

    Returns (row index per file position, whether the position holds the copy).
    """
    later = sources + 0.5 + rng.random(len(sources)) * (n_rows - sources - 0.5)
    keys = np.concatenate([np.arange(n_rows, dtype=np.float64), later])
    perm = np.argsort(keys, kind="stable")
    rows = np.concatenate([np.arange(n_rows), sources])[perm]
    return rows, perm >= n_rows
