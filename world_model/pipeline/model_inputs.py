"""The six model inputs T1-T6: their widths and the encoders computed per sample.

T1 (customer, 192), T2 (product, 256) and T5 (store, 96) are rows of matrices the ``tensor_cache`` stage
writes once; T3 (temporal, 64), T4 (price, 64) and T6 (trip, 48) depend on the sample (its date and hour,
the prices of the week, the trip's mission) and are computed here on demand, vectorized over a batch, so
nothing of size samples x 64 is ever stored and the environment can encode a week or a price it invents.

Every encoder returns float32 with a fixed width whatever the data: unused slots stay zero.

T3 temporal 64 = week-of-year 16 | weekday 8 | hour 8 | holiday 8 | season 8 | trend 8 | recency 8:

- week-of-year: sin and cos of harmonics 1..8 of the day of the year (a year = 365.25 days).
- weekday: one-hot of SHOP_WEEKDAY 1..7 (1 = Sunday, the LGSR convention), then a weekend flag.
- hour: sin and cos of harmonics 1 and 2 of the hour of day, then one-hot of the four day parts of
  ``entity_features.DAY_PARTS``.
- holiday (UK, the data's market): Christmas week (Dec 19-26), the week before it (Dec 12-18), New Year
  (Dec 27-Jan 2), Easter (Good Friday to Easter Monday), the week before Easter, a week holding a bank-holiday
  Monday (early May, spring, summer), and days to the next / since the last of those events, each / 60
  and clipped to 1.
- season: one-hot of the meteorological season (DJF, MAM, JJA, SON), then sin and cos of harmonics 1 and 2
  of the day of the year shifted by a quarter. The shift was meant to make them other numbers than
  week-of-year's; a quarter turn only swaps and negates them (cos 1, -sin 1, -sin 2, -cos 2): four
  redundant columns, kept because the trained models read them (docs/pipeline.md).
- trend: t = week_index / train_end (1 at the end of training), t^2, t^3 (t clipped to 2 for the powers),
  hinges max(0, t - 0.25 k) for k = 1..3, max(0, t - 1) (weeks past training), log1p(week_index) /
  log1p(train_end).
- recency: log1p(weeks since the customer's previous trip) / log1p(52), one-hot of that gap in {0}, {1},
  {2, 3}, {4..7}, {8+}, a cold-start flag (no previous trip; the gap one-hots are then zero), and
  log1p(earlier trips) / log1p(100).

T6 trip 48 = mission type 16 | mission focus 16 | price sensitivity 8 | basket size 8: per attribute
(BASKET_TYPE, BASKET_DOMINANT_MISSION, BASKET_PRICE_SENSITIVITY, BASKET_SIZE), a distribution over its
training code book, zero-padded to the block width. A known trip gives one-hots; the simulator, which does
not know the trip before it happens, passes the customer's mission-pattern shares instead.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from world_model.pipeline.entity_features import DAY_PARTS

T1_DIM, T2_DIM, T3_DIM, T4_DIM, T5_DIM, T6_DIM = 192, 256, 64, 64, 96, 48

TRIP_ATTRIBUTE_SLOTS: dict[str, int] = {
    "BASKET_TYPE": 16,
    "BASKET_DOMINANT_MISSION": 16,
    "BASKET_PRICE_SENSITIVITY": 8,
    "BASKET_SIZE": 8,
}
"""T6 blocks in order: the attribute and its slot budget (a code book larger than its budget is an error)."""

T3_BLOCKS: dict[str, slice] = {
    "week_of_year": slice(0, 16), "weekday": slice(16, 24), "hour": slice(24, 32), "holiday": slice(32, 40),
    "season": slice(40, 48), "trend": slice(48, 56), "recency": slice(56, 64),
}  # fmt: skip
"""T3's blocks (module docstring) and their columns."""
T3_COLUMNS_BY_INPUT: dict[str, np.ndarray] = {
    "dates": np.r_[T3_BLOCKS["week_of_year"], T3_BLOCKS["holiday"], T3_BLOCKS["season"]],
    "weekday": np.r_[T3_BLOCKS["weekday"]],
    "hour": np.r_[T3_BLOCKS["hour"]],
    "week_index": np.r_[T3_BLOCKS["trend"]],
    "week_gap": np.r_[T3_BLOCKS["recency"]][:-1],  # the recency block but its last column
    "history_trips": np.r_[T3_BLOCKS["recency"]][-1:],
}
"""The T3 columns each argument of ``temporal_features`` determines alone (they partition the 64): a
caller whose trips share inputs (a simulator: the same shoppers, a few dates and gaps) can compute each
part once per distinct value and add the parts."""

HOLIDAY_HORIZON_DAYS = 60
RECENCY_BUCKETS = ((0, 0), (1, 1), (2, 3), (4, 7), (8, None))
"""Week-gap buckets of the recency block, inclusive bounds (None: open)."""


def _day_of_year_angle(days: np.ndarray) -> np.ndarray:
    """Angle in [0, 2 pi) of each date's position in its year."""
    dates = days.astype("datetime64[D]")
    year_start = dates.astype("datetime64[Y]").astype("datetime64[D]")
    return 2 * np.pi * (dates - year_start).astype(np.float64) / 365.25


def _harmonics(angle: np.ndarray, orders: range) -> np.ndarray:
    return np.concatenate([np.stack([np.sin(k * angle), np.cos(k * angle)], axis=1) for k in orders], axis=1)


def _easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    return date(year, month, (h + l_ - 7 * m + 114) % 31 + 1)


def _bank_holiday_mondays(year: int) -> list[date]:
    """Early May (first Monday), spring (last Monday of May) and summer (last Monday of August)."""
    first_may = date(year, 5, 1)
    early = first_may + timedelta(days=(7 - first_may.weekday()) % 7)
    spring = date(year, 5, 31) - timedelta(days=date(year, 5, 31).weekday())
    summer = date(year, 8, 31) - timedelta(days=date(year, 8, 31).weekday())
    return [early, spring, summer]


def _holiday_events(years: range) -> np.ndarray:
    """Event days (Christmas, New Year's day, Easter Sunday, bank-holiday Mondays) as datetime64[D], sorted."""
    events: list[date] = []
    for year in years:
        events += [date(year, 12, 25), date(year, 1, 1), _easter(year), *_bank_holiday_mondays(year)]
    return np.array(sorted(events), dtype="datetime64[D]")


def _holiday_block(days: np.ndarray) -> np.ndarray:
    dates = days.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    month = dates.astype("datetime64[M]").astype(int) % 12 + 1
    day = (dates - dates.astype("datetime64[M]").astype("datetime64[D]")).astype(int) + 1
    block = np.zeros((len(dates), 8))
    block[:, 0] = (month == 12) & (day >= 19) & (day <= 26)
    block[:, 1] = (month == 12) & (day >= 12) & (day <= 18)
    block[:, 2] = ((month == 12) & (day >= 27)) | ((month == 1) & (day <= 2))
    if len(dates) == 0:
        return block
    span = range(int(years.min()) - 1, int(years.max()) + 2)
    easter = np.array([_easter(y) for y in span], dtype="datetime64[D]")[years - span.start]
    offset = (dates - easter).astype(int)
    block[:, 3] = (offset >= -2) & (offset <= 1)
    block[:, 4] = (offset >= -9) & (offset <= -3)
    mondays = np.array([d for y in span for d in _bank_holiday_mondays(y)], dtype="datetime64[D]")
    week_start = dates - ((dates.astype(int) - 4) % 7)  # 1970-01-05 was a Monday: int 4 is Monday
    block[:, 5] = np.isin(week_start, mondays)
    events = _holiday_events(span)
    position = np.searchsorted(events, dates)
    to_next = (events[np.minimum(position, len(events) - 1)] - dates).astype(int)
    since_last = (dates - events[np.maximum(position - 1, 0)]).astype(int)
    block[:, 6] = np.clip(to_next / HOLIDAY_HORIZON_DAYS, 0, 1)
    block[:, 7] = np.clip(since_last / HOLIDAY_HORIZON_DAYS, 0, 1)
    return block


def shop_dates(yyyymmdd: np.ndarray) -> np.ndarray:
    """LGSR SHOP_DATE integers (yyyymmdd) as datetime64[D]."""
    values = np.asarray(yyyymmdd, dtype=np.int64)
    years, months, days = values // 10000, values // 100 % 100, values % 100
    return (
        (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (months - 1)
    ).astype("datetime64[D]") + (days - 1)


def monday_of(days: np.ndarray) -> np.ndarray:
    """The Monday of the Monday..Sunday week holding each day (``datetime64[D]``; 1970-01-05 was a Monday)."""
    days = np.asarray(days, dtype="datetime64[D]")
    return days - (days - np.datetime64("1970-01-05", "D")).astype(np.int64) % 7


def temporal_features(
    dates: np.ndarray,
    weekday: np.ndarray,
    hour: np.ndarray,
    week_index: np.ndarray,
    week_gap: np.ndarray,
    history_trips: np.ndarray,
    train_end: int,
) -> np.ndarray:
    """T3 [n, 64] float32 (layout in the module docstring).

    ``dates`` datetime64[D] (see ``shop_dates``); ``weekday`` 1..7; ``hour`` 0..23; ``week_index`` 1..N;
    ``week_gap`` weeks since the customer's previous trip, negative or NaN for none (cold start);
    ``history_trips`` the customer's earlier trips; ``train_end`` the split's last training week.
    """
    dates = np.asarray(dates).astype("datetime64[D]")
    n = len(dates)
    angle = _day_of_year_angle(dates)
    blocks = [_harmonics(angle, range(1, 9))]

    weekday = np.asarray(weekday, dtype=np.int64)
    weekday_block = np.zeros((n, 8))
    valid = (weekday >= 1) & (weekday <= 7)
    weekday_block[np.flatnonzero(valid), weekday[valid] - 1] = 1
    weekday_block[:, 7] = (weekday == 1) | (weekday == 7)
    blocks.append(weekday_block)

    hour = np.asarray(hour, dtype=np.float64)
    day_parts = np.stack([(hour >= lo) & (hour < hi) for _, lo, hi in DAY_PARTS], axis=1)
    blocks.append(np.concatenate([_harmonics(2 * np.pi * hour / 24, range(1, 3)), day_parts], axis=1))

    blocks.append(_holiday_block(dates))

    month = dates.astype("datetime64[M]").astype(int) % 12 + 1
    season = np.stack([np.isin(month, m) for m in ((12, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11))], axis=1)
    blocks.append(np.concatenate([season, _harmonics(angle + np.pi / 2, range(1, 3))], axis=1))

    index = np.asarray(week_index, dtype=np.float64)
    t = index / train_end
    capped = np.minimum(t, 2.0)
    trend = [t, capped**2, capped**3, *(np.maximum(0, t - 0.25 * k) for k in (1, 2, 3)), np.maximum(0, t - 1),
             np.log1p(index) / np.log1p(train_end)]
    blocks.append(np.stack(trend, axis=1))

    gap = np.asarray(week_gap, dtype=np.float64)
    cold = ~np.isfinite(gap) | (gap < 0)
    gap = np.where(cold, 0, gap)
    recency = [np.where(cold, 0, np.log1p(gap) / np.log1p(52))]
    for lo, hi in RECENCY_BUCKETS:
        recency.append(~cold & (gap >= lo) & (gap <= (np.inf if hi is None else hi)))
    recency += [cold, np.log1p(np.asarray(history_trips, dtype=np.float64)) / np.log1p(100)]
    blocks.append(np.stack(recency, axis=1))

    out = np.concatenate(blocks, axis=1).astype(np.float32)
    assert out.shape == (n, T3_DIM), out.shape
    return out


def trip_features(distributions: dict[str, np.ndarray]) -> np.ndarray:
    """T6 [n, 48] float32 from one [n, k] matrix per attribute of ``TRIP_ATTRIBUTE_SLOTS`` (k = the size of
    its code book): one-hot rows for known trips, mission-pattern shares for the simulator, zeros for
    unknown. An attribute missing from ``distributions`` leaves its block zero."""
    n = len(next(iter(distributions.values()))) if distributions else 0
    out = np.zeros((n, T6_DIM), dtype=np.float32)
    start = 0
    for attribute, width in TRIP_ATTRIBUTE_SLOTS.items():
        if attribute in distributions:
            values = np.asarray(distributions[attribute], dtype=np.float32)
            if values.ndim != 2 or values.shape[0] != n or values.shape[1] > width:
                raise ValueError(f"{attribute}: expected [{n}, <= {width}] distributions, got {values.shape}")
            out[:, start : start + values.shape[1]] = values
        start += width
    return out


def one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    """[n, size] float32 one-hots of integer codes; a code outside 0..size-1 (e.g. -1, unknown) gives zeros."""
    codes = np.asarray(codes, dtype=np.int64)
    out = np.zeros((len(codes), size), dtype=np.float32)
    valid = (codes >= 0) & (codes < size)
    out[np.flatnonzero(valid), codes[valid]] = 1
    return out
