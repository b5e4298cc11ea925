"""The normalized week index and the temporal split.

SHOP_WEEK (fiscal yyyyww) is mapped to 1..N through the calendar ingest used, starting at the first week
with data, so a week missing from the data still takes its place in time (the gap stays a gap) and
"week 80" means the same span of time whatever is missing. The split is by index: train 1..train_end,
validation train_end+1..valid_end, test after.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class WeekIndex:
    """Calendar weeks from the first week with data to the last, in order, with their split."""

    shop_weeks: tuple[int, ...]
    train_end: int
    valid_end: int

    @classmethod
    def from_calendar(cls, calendar: pa.Table, first_week: int, last_week: int, train_end: int, valid_end: int) -> "WeekIndex":
        """Index the calendar's weeks from ``first_week`` to ``last_week`` (the weeks with data)."""
        weeks = sorted(w for w in calendar.column("shop_week").to_pylist() if first_week <= w <= last_week)
        if not weeks or weeks[0] != first_week or weeks[-1] != last_week:
            raise ValueError(f"the calendar does not cover weeks {first_week}..{last_week}")
        return cls(tuple(weeks), train_end, valid_end)

    def index(self, shop_week: int) -> int:
        """1-based index of a calendar week."""
        return self.shop_weeks.index(shop_week) + 1

    def split(self, index: int) -> str:
        if index <= self.train_end:
            return "train"
        return "validation" if index <= self.valid_end else "test"

    def table(self) -> pa.Table:
        """(SHOP_WEEK, week_index, split) for joins in DuckDB."""
        indices = list(range(1, len(self.shop_weeks) + 1))
        return pa.table(
            {
                "SHOP_WEEK": pa.array(self.shop_weeks, pa.int32()),
                "week_index": pa.array(indices, pa.int32()),
                "split": pa.array([self.split(i) for i in indices], pa.string()),
            }
        )

    @property
    def last_train_shop_week(self) -> int:
        """SHOP_WEEK of the last training week (or the last week when there are fewer)."""
        return self.shop_weeks[min(self.train_end, len(self.shop_weeks)) - 1]
