"""The LGSR shop-week calendar: which dates each SHOP_WEEK (fiscal yyyyww) covers.

The dataset ships it as ``time.csv`` (``shop_week,date_from,date_to`` with yyyymmdd dates). When it is
absent, ingest infers each week's Monday-to-Sunday span from the dates its rows carry (the most common
Monday wins), so a stray row dated in another week is still caught.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from world_model.errors import RetailSimError

CALENDAR_COLUMNS = ("shop_week", "date_from", "date_to")
CALENDAR_SCHEMA = pa.schema([("shop_week", pa.int32()), ("date_from", pa.date32()), ("date_to", pa.date32())])


def read_calendar(path: Path) -> pa.Table:
    """Load ``time.csv`` into a table of (shop_week int32, date_from date32, date_to date32)."""
    try:
        raw = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in CALENDAR_COLUMNS})
        )
    except (OSError, pa.ArrowInvalid) as exc:
        raise RetailSimError(f"{path}: cannot read calendar ({exc})") from None
    names = [name.lower() for name in raw.column_names]
    for column in CALENDAR_COLUMNS:
        if column not in names:
            raise RetailSimError(f"{path}: missing required column {column}")
    raw = raw.rename_columns(names)
    weeks, starts, ends = [], [], []
    for line, (week, start, end) in enumerate(
        zip(*(raw.column(c).to_pylist() for c in CALENDAR_COLUMNS)), start=2
    ):
        try:
            weeks.append(int(week))
            starts.append(_parse_yyyymmdd(start))
            ends.append(_parse_yyyymmdd(end))
        except (TypeError, ValueError):
            raise RetailSimError(f"{path}: line {line}: unparseable value in shop_week/date_from/date_to") from None
        if ends[-1] < starts[-1]:
            raise RetailSimError(f"{path}: line {line}: date_to is before date_from")
    return pa.table([weeks, starts, ends], schema=CALENDAR_SCHEMA)


def _parse_yyyymmdd(text: str) -> date:
    return datetime.strptime(str(text).strip(), "%Y%m%d").date()


def lgsr_weeks_between(first: int, last: int) -> list[int]:
    """Week numbers from ``first`` to ``last`` inclusive in LGSR numbering (yyyy01 .. yyyy52, then next year).

    Used to name missing weeks when no calendar was given.
    """
    weeks, week = [], first
    while week <= last:
        weeks.append(week)
        year, number = divmod(week, 100)
        week = (year + 1) * 100 + 1 if number >= 52 else week + 1
    return weeks
