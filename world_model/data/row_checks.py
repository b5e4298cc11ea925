"""The checks an LGSR row must pass, in the order of :class:`schema.Reason` (first failure wins).

Row-local checks (numbers, dates, codes, ranges, weekday) run in DuckDB on each streamed block, which
also types the row into the canonical schema. Checks that need the calendar or the whole week (dated
outside its week, exact duplicate of an earlier line) run per week in :func:`late_reasons`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world_model.data.schema import CANONICAL_SCHEMA, INTEGER_COLUMNS, Reason, layout_columns

# The values hashed to find duplicate-line candidates: enough to make candidates rare, few enough to hash
# fast; the numbers and the date as parsed, so `07` and `7`, `0.340` and `0.34` hash the same (the text
# columns are compared as they are). Candidates are confirmed on every canonical value (later_exact_copies).
DUPLICATE_CANDIDATE_KEY = (
    "BASKET_ID", "PROD_CODE", "t_spend", "t_quantity", "t_date", "t_hour", "CUST_CODE", "STORE_CODE"
)
TYPED_COLUMNS = ("SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "QUANTITY", "SPEND")
# What the streaming pass keeps next to each canonical row: a hash of its key values and its line.
ROW_ID_SCHEMA = pa.schema([("_hash", pa.uint64()), ("_line", pa.int64())])


def row_check_sql(layout: str, table: str = "chunk") -> str:
    """SQL that types and checks every row of ``table`` (text columns of ``layout`` plus ``_line``).

    Returns, in input order, ``reason`` (null when the row passed), the six typed columns, ``_hash`` (of
    :data:`DUPLICATE_CANDIDATE_KEY`) and ``_line``; the text columns are taken over from the input by
    :func:`canonical_rows`.
    Integers must be plain decimal digits with an optional minus: TRY_CAST alone would also take
    ``1.5`` (rounded), ``0x10`` and ``1_000``, so any other character marks the row.
    """
    all_empty = " AND ".join(f'"{c}" = \'\'' for c in layout_columns(layout))
    integer_text = ", ".join(f'"{c}"' for c in INTEGER_COLUMNS)
    candidate_key = ", ".join(f'"{c}"' for c in DUPLICATE_CANDIDATE_KEY)
    return f"""
    WITH typed AS (
        SELECT *,
            NOT regexp_matches(concat({integer_text}), '[^0-9-]') AS digits_only,
            TRY_CAST("SHOP_WEEK" AS INTEGER) AS t_week,
            CASE WHEN length("SHOP_DATE") = 8
                 THEN CAST(try_strptime("SHOP_DATE", '%Y%m%d') AS DATE) END AS t_date,
            TRY_CAST("SHOP_WEEKDAY" AS INTEGER) AS t_weekday,
            TRY_CAST("SHOP_HOUR" AS INTEGER) AS t_hour,
            TRY_CAST("QUANTITY" AS INTEGER) AS t_quantity,
            TRY_CAST("SPEND" AS DOUBLE) AS t_spend
        FROM {table}
    )
    SELECT
        CASE
            WHEN {all_empty} THEN '{Reason.MALFORMED_LINE}'
            WHEN NOT digits_only OR t_week IS NULL OR TRY_CAST("SHOP_DATE" AS INTEGER) IS NULL
                 OR t_weekday IS NULL OR t_hour IS NULL OR t_quantity IS NULL
                 OR t_spend IS NULL OR NOT isfinite(t_spend) THEN '{Reason.UNPARSEABLE_NUMBER}'
            WHEN t_date IS NULL THEN '{Reason.INVALID_DATE}'
            WHEN "PROD_CODE" = '' THEN '{Reason.MISSING_PROD_CODE}'
            WHEN "STORE_CODE" = '' THEN '{Reason.MISSING_STORE_CODE}'
            WHEN "BASKET_ID" = '' THEN '{Reason.MISSING_BASKET_ID}'
            WHEN t_quantity <= 0 THEN '{Reason.NONPOSITIVE_QUANTITY}'
            WHEN t_spend < 0 THEN '{Reason.NEGATIVE_SPEND}'
            WHEN t_hour NOT BETWEEN 0 AND 23 THEN '{Reason.HOUR_OUT_OF_RANGE}'
            WHEN t_weekday <> dayofweek(t_date) + 1 THEN '{Reason.WEEKDAY_MISMATCH}'
        END AS reason,
        t_week AS "SHOP_WEEK", t_date AS "SHOP_DATE", t_weekday AS "SHOP_WEEKDAY", t_hour AS "SHOP_HOUR",
        t_quantity AS "QUANTITY", t_spend AS "SPEND",
        hash({candidate_key}) AS "_hash",
        _line AS "_line"
    FROM typed
    """


def canonical_rows(raw: pa.Table, checked: pa.Table) -> pa.Table:
    """Accepted rows in the canonical schema: typed columns from ``checked``, text from ``raw``.

    Empty text becomes null (an anonymous shopper has a null CUST_CODE); the segment pair a layout
    lacks is null throughout.
    """
    n = raw.num_rows
    columns = []
    for field in CANONICAL_SCHEMA:
        if field.name in TYPED_COLUMNS:  # hour and weekday are checked in range before this narrowing cast
            columns.append(checked.column(field.name).cast(field.type))
        elif field.name == "BASKET_ID_REBUILT":
            columns.append(pa.array(np.zeros(n, dtype=bool)))
        elif field.name not in raw.column_names:
            columns.append(pa.nulls(n, pa.string()))
        else:
            columns.append(_empty_as_null(raw.column(field.name)))
    return pa.Table.from_arrays(columns, schema=CANONICAL_SCHEMA)


def _empty_as_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    empty = pc.equal(column, "")
    return pc.if_else(empty, pa.scalar(None, pa.string()), column) if pc.any(empty).as_py() else column


RowLoader = Callable[[np.ndarray], list[tuple]]
"""Loads the canonical values of the given row positions of a week, as tuples."""


def late_reasons(
    dates: pa.ChunkedArray | None, hashes: np.ndarray, span: tuple[date, date] | None, rows: RowLoader
) -> np.ndarray:
    """Reason (object array, None where accepted) for one week's rows in input order.

    ``span`` is the week's (date_from, date_to), None when the calendar lacks the week; ``dates`` may be
    None when every date is known to lie in the span. ``rows`` loads the canonical values of given row
    positions, used only to confirm duplicate candidates.
    """
    n = len(hashes)
    if span is None:
        outside = np.ones(n, dtype=bool)
    elif dates is None:
        outside = np.zeros(n, dtype=bool)
    else:
        outside = pc.or_(pc.less(dates, pa.scalar(span[0])), pc.greater(dates, pa.scalar(span[1])))
        outside = outside.to_numpy(zero_copy_only=False)
    reason = np.full(n, None, dtype=object)
    reason[later_exact_copies(hashes, rows)] = Reason.DUPLICATE_LINE
    reason[outside] = Reason.DATE_OUTSIDE_WEEK  # checked first, so it wins
    return reason


def later_exact_copies(hashes: np.ndarray, rows: RowLoader) -> np.ndarray:
    """True for each row repeating an earlier row (rows in input order).

    The 64-bit hash of the row's key (:data:`DUPLICATE_CANDIDATE_KEY`) picks candidates cheaply;
    candidates are then compared on the hash and every canonical value, so neither a hash collision
    nor a shared key alone quarantines a distinct row.
    """
    later = np.zeros(len(hashes), dtype=bool)
    if len(hashes) < 2:
        return later
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse] > 1)
    if len(candidates) == 0:
        return later
    seen: set[tuple] = set()
    for position, values in zip(candidates, rows(candidates)):
        values = (int(hashes[position]), *values)
        if values in seen:
            later[position] = True
        else:
            seen.add(values)
    return later
