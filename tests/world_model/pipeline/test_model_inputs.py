"""T3 (temporal) and T6 (trip) encoders: widths, and the meaning of individual columns."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from world_model.pipeline.model_inputs import (
    T3_COLUMNS_BY_INPUT,
    T3_DIM,
    T6_DIM,
    TRIP_ATTRIBUTE_SLOTS,
    _easter,
    one_hot,
    shop_dates,
    temporal_features,
    trip_features,
)

WEEK_OF_YEAR = slice(0, 16)
WEEKDAY, HOUR, HOLIDAY, SEASON, TREND, RECENCY = (slice(s, s + 8) for s in range(16, 64, 8))
T3_ARGUMENTS = ("dates", "weekday", "hour", "week_index", "week_gap", "history_trips")


def _t3(dates: list[int], weekday=None, hour=None, week_index=None, week_gap=None, history=None) -> np.ndarray:
    n = len(dates)
    return temporal_features(
        shop_dates(np.array(dates)),
        np.array(weekday or [2] * n),
        np.array(hour or [12] * n),
        np.array(week_index or [10] * n),
        np.array(week_gap if week_gap is not None else [1.0] * n, dtype=float),
        np.array(history or [3] * n),
        train_end=80,
    )


def test_shop_dates_parse_yyyymmdd() -> None:
    parsed = shop_dates(np.array([20060410, 20080229, 20071231]))
    assert parsed.tolist() == [date(2006, 4, 10), date(2008, 2, 29), date(2007, 12, 31)]


def test_temporal_width_dtype_and_finite() -> None:
    t3 = _t3([20060410, 20071225, 20080101], week_gap=[np.nan, 0, 30])
    assert t3.shape == (3, T3_DIM) and t3.dtype == np.float32
    assert np.isfinite(t3).all()
    assert temporal_features(shop_dates(np.array([], dtype=np.int64)), [], [], [], [], [], 80).shape == (0, T3_DIM)


def test_week_of_year_is_cyclic_and_distinguishes_seasons() -> None:
    t3 = _t3([20061231, 20070101, 20070701])
    assert np.abs(t3[0, WEEK_OF_YEAR] - t3[1, WEEK_OF_YEAR]).max() < 0.2  # new year's eve ~ new year's day
    assert np.abs(t3[1, WEEK_OF_YEAR] - t3[2, WEEK_OF_YEAR]).max() > 1.0


def test_weekday_hour_and_season_one_hots() -> None:
    t3 = _t3([20070107, 20070110], weekday=[1, 4], hour=[9, 19])
    assert t3[0, WEEKDAY].tolist() == [1, 0, 0, 0, 0, 0, 0, 1]  # Sunday, weekend
    assert t3[1, WEEKDAY].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert t3[0, HOUR][4:].tolist() == [1, 0, 0, 0] and t3[1, HOUR][4:].tolist() == [0, 0, 0, 1]
    assert t3[0, SEASON][:4].tolist() == [1, 0, 0, 0]  # January: winter


def test_easter_and_uk_holidays() -> None:
    assert [_easter(y) for y in (2006, 2007, 2008)] == [date(2006, 4, 16), date(2007, 4, 8), date(2008, 3, 23)]
    # Christmas week, Good Friday 2007, the week of the spring bank holiday (Mon 28 May 2007), an ordinary day.
    t3 = _t3([20071224, 20070406, 20070530, 20070314])
    holiday = t3[:, HOLIDAY]
    assert holiday[0, 0] == 1 and holiday[0, 6] == pytest.approx(1 / 60)  # Christmas is a day away
    assert holiday[1, 3] == 1 and holiday[1, :3].sum() == 0
    assert holiday[2, 5] == 1
    assert holiday[3, :6].sum() == 0


def test_trend_and_recency() -> None:
    t3 = _t3([20070101] * 3, week_index=[40, 80, 96], week_gap=[np.nan, 0, 5], history=[0, 1, 100])
    assert t3[:, TREND][:, 0].tolist() == pytest.approx([0.5, 1.0, 1.2])
    assert t3[:, TREND][:, 6].tolist() == pytest.approx([0, 0, 0.2])  # weeks past training
    recency = t3[:, RECENCY]
    assert recency[0].tolist()[:7] == [0, 0, 0, 0, 0, 0, 1]  # cold start: no gap bucket, flag set
    assert recency[1, 1] == 1 and recency[2, 4] == 1  # gap 0 -> {0}; gap 5 -> {4..7}
    assert recency[2, 7] == pytest.approx(1.0)  # 100 earlier trips


def _random_t3_inputs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "dates": np.datetime64("2006-01-02") + rng.integers(0, 3 * 365, n), "weekday": rng.integers(1, 8, n),
        "hour": rng.integers(0, 24, n), "week_index": rng.integers(1, 160, n),
        "week_gap": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 30, n)), "history_trips": rng.integers(0, 200, n),
    }  # fmt: skip


def test_each_argument_determines_its_own_columns_alone() -> None:
    """What a caller factorizing T3 by input relies on: changing one argument moves its columns only."""
    assert np.array_equal(np.sort(np.concatenate(list(T3_COLUMNS_BY_INPUT.values()))), np.arange(T3_DIM))
    rng = np.random.default_rng(0)
    base = _random_t3_inputs(rng, 500)
    t3 = temporal_features(**base, train_end=80)
    for name in T3_ARGUMENTS:
        moved = temporal_features(**{**base, name: _random_t3_inputs(rng, 500)[name]}, train_end=80)
        changed = np.flatnonzero((moved != t3).any(0))
        assert set(changed) <= set(T3_COLUMNS_BY_INPUT[name]), name
        assert len(changed) >= min(len(T3_COLUMNS_BY_INPUT[name]), 2), name  # the map names live columns


def test_trip_features_place_each_attribute_in_its_block() -> None:
    starts = np.cumsum([0, *TRIP_ATTRIBUTE_SLOTS.values()])[:-1]
    t6 = trip_features({"BASKET_TYPE": one_hot([1, -1], 4), "BASKET_SIZE": np.array([[0.2, 0.3, 0.5], [1, 0, 0]])})
    assert t6.shape == (2, T6_DIM) and t6.dtype == np.float32
    assert t6[0, starts[0] + 1] == 1 and t6[1, starts[0] : starts[1]].sum() == 0  # unknown code -> zeros
    assert t6[0, starts[3] : starts[3] + 3].tolist() == pytest.approx([0.2, 0.3, 0.5])
    assert t6[:, starts[1] : starts[3]].sum() == 0  # attributes not given stay zero
    with pytest.raises(ValueError, match="BASKET_SIZE"):
        trip_features({"BASKET_SIZE": np.ones((2, 9))})
