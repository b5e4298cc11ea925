"""T3 of simulated trips from tables: the same rows as the per-trip encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_model.pipeline.model_inputs import temporal_features

from retailsim_env.temporal import ROW_BLOCK, TripTemporalFeatures, trip_dates


def test_trip_temporal_features_equal_the_per_trip_encoder() -> None:
    rng = np.random.default_rng(0)
    n = 40
    weekday, hour, history = rng.integers(1, 8, n), rng.integers(0, 24, n), rng.integers(0, 90, n)
    first_monday = np.datetime64("2006-04-10")
    table = TripTemporalFeatures(weekday, hour, history, 117, 80, first_monday, torch.device("cpu"))
    for n_weeks, largest_gap in ((3, 2), (60, 40)):  # the second call grows both tables
        shoppers = rng.integers(0, n, 500)
        mondays = first_monday + 7 * rng.integers(0, n_weeks, 500)
        gaps = rng.integers(0, largest_gap + 1, 500).astype(float)
        dates = trip_dates(mondays, weekday[shoppers])
        expected = temporal_features(dates, weekday[shoppers], hour[shoppers], np.full(500, 117), gaps,
                                     history[shoppers], 80)  # fmt: skip
        np.testing.assert_array_equal(table(shoppers, mondays, gaps).numpy(), expected)
    with pytest.raises(ValueError, match="whole weeks"):
        table(shoppers[:1], mondays[:1] + 1, gaps[:1])
    with pytest.raises(ValueError, match="gaps"):
        table(shoppers[:1], mondays[:1], gaps[:1] + 0.5)


def test_far_weeks_and_gaps_hold_only_the_blocks_they_reach() -> None:
    """A trip 100,000 weeks on (and 100,000 weeks after its previous one) gets the per-trip encoder's
    row, and the tables hold the blocks of weeks and gaps asked for, not every week before them."""
    rng = np.random.default_rng(1)
    weekday, hour, history = rng.integers(1, 8, 5), rng.integers(0, 24, 5), rng.integers(0, 90, 5)
    first_monday = np.datetime64("2006-04-10")
    table = TripTemporalFeatures(weekday, hour, history, 117, 80, first_monday, torch.device("cpu"))
    shoppers, weeks = np.arange(5), np.array([3, 100_000, 100_001, 100_063, 100_000])
    mondays, gaps = first_monday + 7 * weeks, weeks.astype(float)
    expected = temporal_features(trip_dates(mondays, weekday), weekday, hour, np.full(5, 117), gaps, history, 80)
    np.testing.assert_array_equal(table(shoppers, mondays, gaps).numpy(), expected)
    block = ROW_BLOCK
    assert len(table.date_rows.rows) == 3 * block * len(np.unique(weekday))  # weeks 0-63, 99,968-100,031, 100,032-100,095
    assert len(table.gap_rows.rows) == 3 * block
    np.testing.assert_array_equal(table(shoppers, mondays, gaps).numpy(), expected)  # asked again: the same rows


def test_trip_dates_follow_the_lgsr_week() -> None:
    """LGSR week 200607 runs Monday 2006-04-10 to Sunday 2006-04-16, whose SHOP_WEEKDAY is 1 (the real sample)."""
    monday = np.datetime64("2006-04-10")
    dates = trip_dates(np.full(7, monday), np.arange(1, 8))
    assert dates[0] == np.datetime64("2006-04-16") and dates[1] == monday and dates[6] == np.datetime64("2006-04-15")
    assert sorted(dates.tolist()) == [monday.tolist() + np.timedelta64(d, "D").tolist() for d in range(7)]
