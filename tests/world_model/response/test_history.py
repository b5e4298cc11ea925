"""The history level's inputs, on a hand-made price table."""

import numpy as np
import pandas as pd
import pytest

from world_model.response.history import history_level, history_units_and_multiplier, history_units_and_multipliers


def test_units_and_multiplier_are_the_training_weeks_means(tmp_path) -> None:
    """Units: the sum over training rows with a paid price, over every such week of any store, asked for
    or not (week 3 is S2's alone, week 5 S9's), not counting a week of unpaid rows only (6); multiplier:
    the mean over the cell's rows of (paid / reference) ** e x lift ** promoted. Validation rows, unpaid
    rows and stores not asked for are left out."""
    rows = [  # store, product, week, split, paid, units, promoted
        ("S1", "A", 1, "train", 2.0, 10, False), ("S1", "A", 2, "train", 1.5, 20, True),
        ("S1", "B", 1, "train", 0.0, 99, False), ("S2", "A", 3, "train", 2.0, 6, False),
        ("S1", "A", 4, "validation", 1.0, 50, True), ("S9", "A", 1, "train", 2.0, 7, False),
        ("S9", "A", 5, "train", 2.0, 8, False), ("S1", "A", 6, "train", 0.0, 40, False),
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["STORE_CODE", "PROD_CODE", "week_index", "split", "actual_price", "units", "promo_flag"])
    table.to_parquet(tmp_path / "prices.parquet")
    reference = np.array([[2.0, 1.0], [2.0, 1.0]])
    units, multiplier = history_units_and_multiplier(tmp_path / "prices.parquet", ["S1", "S2"], ["A", "B"],
                                                     np.array([-2.0, -1.0]), np.array([1.5, 1.2]), reference)  # fmt: skip
    assert units.tolist() == [[30 / 4, 0.0], [6 / 4, 0.0]]
    assert multiplier[0, 0] == pytest.approx((1.0 + 0.75**-2.0 * 1.5) / 2)
    assert multiplier[0, 1] == multiplier[1, 1] == 1.0 and multiplier[1, 0] == pytest.approx(1.0)


def test_a_season_multiplies_each_weeks_multiplier_before_the_mean(tmp_path) -> None:
    """With a season index [P, weeks + 1] by product and data week, the multiplier is the mean of response
    x season over the cell's weeks: what the seasonal market's expected units average at the history's
    prices. One scan gives the plain and the seasonal multiplier alike (``history_units_and_multipliers``)."""
    rows = [("S1", "A", 1, "train", 2.0, 10, False), ("S1", "A", 2, "train", 1.5, 20, True),
            ("S1", "B", 1, "train", 1.0, 4, False), ("S1", "B", 2, "train", 1.0, 6, False)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["STORE_CODE", "PROD_CODE", "week_index", "split", "actual_price", "units", "promo_flag"])
    table.to_parquet(tmp_path / "prices.parquet")
    season = np.array([[np.nan, 0.8, 1.25], [np.nan, 2.0, 0.5]])
    args = (tmp_path / "prices.parquet", ["S1"], ["A", "B"], np.array([-2.0, -1.0]), np.array([1.5, 1.2]), np.array([[2.0, 1.0]]))
    units, multiplier = history_units_and_multiplier(*args, season=season)
    assert units.tolist() == [[15.0, 5.0]]
    assert multiplier[0].tolist() == pytest.approx([(1.0 * 0.8 + 0.75**-2.0 * 1.5 * 1.25) / 2, (2.0 + 0.5) / 2])
    plain = (1.0 + 0.75**-2.0 * 1.5) / 2
    assert history_units_and_multiplier(*args)[1][0].tolist() == pytest.approx([plain, 1.0])
    both_units, both = history_units_and_multipliers(*args, [None, season])
    assert np.array_equal(both_units, units) and np.allclose(both[0], [[plain, 1.0]]) and np.array_equal(both[1], multiplier)


def test_the_level_is_one_where_either_side_has_no_units() -> None:
    level = history_level(np.array([4.0, 0.0, 3.0]), np.array([2.0, 1.0, 1.0]), np.array([1.0, 5.0, 0.0]))
    assert level.tolist() == [2.0, 1.0, 1.0]
