"""LGSR fiscal calendar: week codes yyyyww (52 weeks a fiscal year), Monday..Sunday weeks.

LGSR's ``time.csv`` maps each SHOP_WEEK to its Monday and Sunday; the fiscal year has exactly 52
weeks, so 200652 is followed by 200701. SHOP_WEEKDAY counts 1 = Sunday .. 7 = Saturday.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

WEEKS_PER_YEAR = 52


def shop_week(start_week: int, week_index: int) -> int:
    """Fiscal week code ``week_index`` weeks after ``start_week`` (both yyyyww)."""
    year, ww = divmod(start_week, 100)
    n = year * WEEKS_PER_YEAR + (ww - 1) + week_index
    year, ww0 = divmod(n, WEEKS_PER_YEAR)
    return year * 100 + ww0 + 1


def week_dates(start_date: date, week_index: int) -> tuple[date, date]:
    """(Monday, Sunday) of week ``week_index``."""
    monday = start_date + timedelta(days=7 * week_index)
    return monday, monday + timedelta(days=6)


def yyyymmdd(d: date) -> int:
    """A date as the integer yyyymmdd."""
    return d.year * 10000 + d.month * 100 + d.day


def lgsr_weekday(d: date) -> int:
    """LGSR weekday of a date: 1 = Sunday .. 7 = Saturday."""
    return (d.weekday() + 1) % 7 + 1


def week_day_codes(start_date: date, week_index: int) -> tuple[np.ndarray, np.ndarray]:
    """For the 7 days Monday..Sunday of a week: (yyyymmdd ints, LGSR weekdays)."""
    monday, _ = week_dates(start_date, week_index)
    days = [monday + timedelta(days=k) for k in range(7)]
    return (
        np.array([yyyymmdd(d) for d in days], dtype=np.int32),
        np.array([lgsr_weekday(d) for d in days], dtype=np.int8),
    )


def days_to_christmas(d: date) -> int:
    """Days from ``d`` to the next (or same-day) 25 December."""
    xmas = date(d.year, 12, 25)
    if xmas < d:
        xmas = date(d.year + 1, 12, 25)
    return (xmas - d).days


def holds_month_day(monday: date, month: int, day: int) -> bool:
    """Whether the Monday..Sunday week starting ``monday`` holds the given month/day."""
    return any((monday + timedelta(days=k)).month == month and (monday + timedelta(days=k)).day == day
               for k in range(7))
