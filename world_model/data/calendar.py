"""The LGSR shop-week calendar: which dates each SHOP_WEEK (fiscal yyyyww) covers.

The dataset ships it as ``time.csv`` (``shop_week,date_from,date_to`` with yyyymmdd dates). When it is
absent, ingest infers each week's Monday-to-Sunday span from the dates its rows carry (the most common
Monday wins), so a stray row dated in another week is still caught.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
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
    first_line: dict[int, int] = {}
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
        if weeks[-1] in first_line:  # the week would get two indices and its rows be joined twice
            raise RetailSimError(f"{path}: line {line}: shop_week {weeks[-1]} again (first on line {first_line[weeks[-1]]})")
        first_line[weeks[-1]] = line
    spans = sorted(zip(starts, ends, weeks))
    for (_, end, week), (start, _, later) in zip(spans, spans[1:]):
        if start <= end:  # a date would belong to two weeks
            raise RetailSimError(f"{path}: shop_week {later} starts on {start}, within shop_week {week} (to {end})")
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


def is_lgsr_week(week: int) -> bool:
    """``week`` is a fiscal yyyyww with ww in 1..53 (200699 or 2006 is a typo, not a week)."""
    year, number = divmod(week, 100)
    return 1900 <= year <= 2999 and 1 <= number <= 53


def complete_inferred_calendar(calendar: pa.Table) -> pa.Table:
    """An inferred calendar (a row per week with data) with what a ``time.csv`` would have in between.

    Weeks that are not LGSR weeks are dropped, so their rows are quarantined as ``date_outside_week``,
    as they are when a given calendar lacks the week. Every LGSR week between two weeks with data gets
    a row, its span counted on in whole weeks from the week before the gap, so a week without data keeps
    its place in the week index (the pipeline numbers the calendar's weeks) and the gap stays a gap.
    Where the next week with data is not reached by LGSR numbering (a week 53), nothing is filled in.
    """
    rows = sorted((week, start) for week, start in zip(calendar.column("shop_week").to_pylist(),
                                                     calendar.column("date_from").to_pylist()) if is_lgsr_week(week))
    weeks: list[int] = []
    starts: list[date] = []
    for i, (week, start) in enumerate(rows):
        if i:
            previous_week, previous_start = rows[i - 1]
            between = lgsr_weeks_between(previous_week, week)
            if between[-1] == week:
                for k, missing in enumerate(between[1:-1], start=1):
                    weeks.append(missing)
                    starts.append(previous_start + timedelta(weeks=k))
        weeks.append(week)
        starts.append(start)
    return pa.table([weeks, starts, [s + timedelta(days=6) for s in starts]], schema=CALENDAR_SCHEMA)
