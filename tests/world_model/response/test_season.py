"""The season index: recovered from a Poisson panel with a known season, net of prices and promotions;
noise smoothed away where there is no season; weeks of the year outside the data interpolated."""

import numpy as np
import pandas as pd
import pytest

from world_model.response.season import (
    WEEKS_OF_YEAR, SeasonConfig, SeasonIndex, estimate_seasons, fit_season, week_bins, week_of_year,
)  # fmt: skip

FIRST_MONDAY = "2006-04-10"


FIT_KEYS = ("units", "multiplier", "pair", "category", "week", "bins", "n_categories")


def _panel(weeks: int, season: np.ndarray, seed: int = 0, promo_weeks: np.ndarray | None = None,
           first_monday: str = FIRST_MONDAY, overdispersion: float | None = None) -> dict:  # fmt: skip
    """A store-product-week panel of C categories x 8 products x 6 stores: units ~ Poisson(a x m x S)
    with m = price ** -2 x 1.8 ** promoted, prices moving at random and, with ``promo_weeks``, every
    product of category 0 promoted in those weeks (otherwise 10% of product-weeks at random); with
    ``overdispersion`` k each row's rate times a Gamma(k, 1 / k) draw (variance / mean 1 + rate / k)."""
    rng = np.random.default_rng(seed)
    n_categories = season.shape[0]
    pair_category = np.repeat(np.arange(n_categories), 8 * 6)
    level = rng.lognormal(np.log(20.0), 0.8, len(pair_category))
    pair, week = np.meshgrid(np.arange(len(pair_category)), np.arange(weeks), indexing="ij")
    pair, week = pair.ravel(), week.ravel()
    category = pair_category[pair]
    price = rng.lognormal(0.0, 0.1, len(pair))
    promoted = rng.random(len(pair)) < 0.1
    if promo_weeks is not None:
        promoted = (category == 0) & np.isin(week, promo_weeks)
    multiplier = price**-2.0 * np.where(promoted, 1.8, 1.0)
    bins = week_bins(first_monday, np.arange(weeks) + 1)
    rate = level[pair] * multiplier * season[category, bins[week]]
    if overdispersion is not None:
        rate = rate * rng.gamma(overdispersion, 1.0 / overdispersion, len(rate))
    return {"units": rng.poisson(rate), "multiplier": multiplier, "pair": pair, "category": category, "week": week,
            "bins": bins, "n_categories": n_categories, "price": price, "promoted": promoted}  # fmt: skip


def _fit(panel: dict, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    return fit_season(**{key: panel[key] for key in FIT_KEYS}, **kwargs)


def _true_season(weeks: int) -> np.ndarray:
    """Category 0: an annual sine of amplitude 0.15 and x2.5 in the three weeks before Christmas; 1: none."""
    angle = 2 * np.pi * np.arange(WEEKS_OF_YEAR) / WEEKS_OF_YEAR
    seasonal = 1.0 + 0.15 * np.sin(angle)
    seasonal[week_of_year(np.array(["2006-12-04", "2006-12-11", "2006-12-18"], dtype="datetime64[D]"))] *= 2.5
    return np.stack([seasonal, np.ones(WEEKS_OF_YEAR)])


def _normalized(season: np.ndarray, bins: np.ndarray) -> np.ndarray:
    return season / season[:, bins].mean(1, keepdims=True)


def test_week_of_year_counts_back_from_christmas_week_and_on_from_new_year_week() -> None:
    """Christmas week is bin 51 and the New Year week bin 0 every year, whatever the weekday of 25 December
    (2006: a Monday, 2007: a Tuesday, 2008: a Thursday); day of the year // 7 would put 2007-12-31 with
    Christmas and 2008's Christmas week in bin 50. A 53-week year doubles bin 25, in midsummer."""
    mondays = np.array(["2006-12-18", "2006-12-25", "2007-01-01", "2007-12-17", "2007-12-24", "2007-12-31",
                        "2008-01-07", "2008-12-22", "2008-12-29", "2006-04-10"], dtype="datetime64[D]")  # fmt: skip
    assert week_of_year(mondays).tolist() == [50, 51, 0, 50, 51, 0, 1, 51, 0, 15]
    assert week_of_year(np.array(["2006-12-31"], dtype="datetime64[D]")).tolist() == [51]  # a Sunday: its week's bin
    with pytest.raises(ValueError, match="NaT"):
        week_of_year(np.array(["2006-12-31", "NaT"], dtype="datetime64[D]"))
    year = np.arange(np.datetime64("2005-12-26"), np.datetime64("2006-12-26"), 7)  # 2006: 53 weeks
    counts = np.bincount(week_of_year(year), minlength=WEEKS_OF_YEAR)
    assert counts[25] == 2 and np.delete(counts, 25).tolist() == [1] * (WEEKS_OF_YEAR - 1)
    year = np.arange(np.datetime64("2006-12-25"), np.datetime64("2007-12-24"), 7)  # 52 weeks: one each
    assert np.bincount(week_of_year(year)).tolist() == [1] * WEEKS_OF_YEAR
    assert week_bins(FIRST_MONDAY, np.array([1, 2, 39])).tolist() == [15, 16, 0]  # week 39: 2007-01-01


def test_a_year_of_weeks_recovers_the_season_and_its_christmas_peak() -> None:
    """60 weeks from April: every week of the year covered. The index is within a few percent of the true
    season (normalized over the training weeks), far closer than no index, keeps the Christmas peak,
    and is the index itself: its mean over the training weeks is 1."""
    truth = _true_season(60)
    panel = _panel(60, truth)
    season, covered = _fit(panel)
    assert covered.all()
    bins = panel["bins"]
    target = _normalized(truth, bins)
    error = np.abs(np.log(season / target)).mean(1)
    assert error[0] < 0.03 and error[0] < 0.3 * np.abs(np.log(target[0])).mean()
    peak = week_of_year(np.array(["2006-12-11"], dtype="datetime64[D]"))[0]
    assert season[0, peak] > 2.0 * season[0, peak - 6]
    assert np.allclose(season[:, bins].mean(1), 1.0)


def test_sampling_noise_without_a_season_is_smoothed_away() -> None:
    """A category without a season: the weekly raw ratios (no smoothing, every deviation kept) vary by
    several percent at random; the smoothed index stays within 4% of 1."""
    panel = _panel(60, _true_season(60), seed=1)
    season, _ = _fit(panel)
    raw, _ = _fit(panel, config=SeasonConfig(bandwidth_weeks=0.01, spike_z=0.0))
    assert np.abs(np.log(season[1])).max() < 0.04
    assert np.abs(np.log(raw[1])).mean() > 2 * np.abs(np.log(season[1])).mean()


def test_overdispersed_noise_is_smoothed_away_too() -> None:
    """Units overdispersed (variance / mean about 5): the shrinkage measures each category's dispersion,
    so a flat category's weeks stay near 1; taking Poisson noise instead (dispersion 1) keeps most of the
    weeks' noise as spikes (measured: 0.055 mean abs log, here 0.025)."""
    panel = _panel(60, np.ones((2, WEEKS_OF_YEAR)), seed=5, overdispersion=5.0)
    season, _ = _fit(panel)
    assert np.abs(np.log(season)).mean() < 0.035


def test_the_smooth_runs_around_the_turn_of_the_year() -> None:
    """30 weeks from October, a season rising steeply through the New Year: the kernel's week distance
    is circular, so weeks 50..1 are smoothed from both sides (a kernel that stopped at week 51 would be
    5-7% off there)."""
    angle = 2 * np.pi * np.arange(WEEKS_OF_YEAR) / WEEKS_OF_YEAR
    truth = np.stack([np.exp(0.3 * np.sin(angle)), np.ones(WEEKS_OF_YEAR)])
    panel = _panel(30, truth, seed=6, first_monday="2006-10-02")
    season, _ = _fit(panel)
    error = np.abs(np.log(season[0] / _normalized(truth, panel["bins"])[0]))
    assert error[[50, 51, 0, 1]].max() < 0.02


def test_the_christmas_peak_keeps_its_height() -> None:
    """A x2.5 three-week peak stands far out of its noise, so the shrinkage keeps nearly all of its
    deviation from the smooth: within 4% of the truth on average over the three weeks (shrinking by
    1 - z0 / z rather than 1 - (z0 / z) ** 2 would leave 4.5% off; here 2%)."""
    truth = _true_season(60)
    panel = _panel(60, truth)
    season, _ = _fit(panel)
    peak = week_of_year(np.array(["2006-12-04", "2006-12-11", "2006-12-18"], dtype="datetime64[D]"))
    assert np.abs(np.log(season[0, peak] / _normalized(truth, panel["bins"])[0, peak])).mean() < 0.04


def test_the_christmas_peak_does_not_spill_into_its_neighbours() -> None:
    """The peak weeks stand out by far more than 2 x spike_z, so the next smooth leaves them out: the
    three weeks on either side stay within 2.5% of the truth (smoothed over the peak once, the week
    before it is 5.7% off and the New Year weeks 3%)."""
    truth = _true_season(60)
    panel = _panel(60, truth)
    season, _ = _fit(panel)
    around = [45, 46, 47, 51, 0, 1]  # the peak is in bins 48-50
    assert np.abs(np.log(season[0, around] / _normalized(truth, panel["bins"])[0, around])).max() < 0.025


def test_pairs_seen_in_part_of_the_weeks_do_not_bend_the_season() -> None:
    """Three pairs in four sold only in weeks 28-39 (October-December, the peak included): their levels
    and the weekly ratios are fitted jointly, so those weeks stay within 4.5% of the truth; a single
    pass (the pair levels taken from their own weeks, season and all) is more than twice as far off."""
    truth = _true_season(60)
    panel = _panel(60, truth, seed=7)
    outside = (panel["pair"] % 4 != 0) & ~((panel["week"] >= 28) & (panel["week"] < 40))
    panel = {key: value[~outside] if key in FIT_KEYS[:5] else value for key, value in panel.items()}
    window, target = panel["bins"][28:40], _normalized(truth, panel["bins"])[0]
    errors = [np.abs(np.log(_fit(panel, config=SeasonConfig(iterations=n))[0][0, window] / target[window])).mean()
              for n in (SeasonConfig().iterations, 1)]  # fmt: skip
    assert errors[0] < 0.045 and errors[1] > 2 * errors[0]


def test_promotions_are_not_taken_for_a_season() -> None:
    """Category 0 has no season but all its products on promotion in weeks 10-12: with the multipliers
    the index stays flat there; without them (multiplier 1) the promotions' lift shows up as a season."""
    flat = np.ones((2, WEEKS_OF_YEAR))
    panel = _panel(60, flat, seed=2, promo_weeks=np.arange(10, 13))
    season, _ = _fit(panel)
    promo_bins = panel["bins"][10:13]
    assert np.abs(np.log(season[0, promo_bins])).max() < 0.05
    naive, _ = _fit({**panel, "multiplier": np.ones_like(panel["multiplier"])})
    assert naive[0, promo_bins].min() > 1.4


def test_weeks_of_the_year_outside_the_data_are_interpolated_in_log() -> None:
    """32 weeks from April leave weeks 46..13 of the year uncovered: there the index runs linearly in log
    from its last covered week to its first, around the turn of the year (no December peak invented)."""
    panel = _panel(32, _true_season(32), seed=3)
    season, covered = _fit(panel)
    first, last = int(panel["bins"][0]), int(panel["bins"][-1])
    assert covered[0].tolist() == [first <= w <= last for w in range(WEEKS_OF_YEAR)]
    gap = np.log(season[0, np.r_[last + 1:WEEKS_OF_YEAR, 0:first]])  # fmt: skip
    assert np.allclose(np.diff(gap, 2), 0.0, atol=1e-12)  # a straight line in log
    assert season[0].max() < 1.3


def test_a_spike_in_the_last_covered_week_is_not_spread_over_the_gap_after_it() -> None:
    """36 weeks from April end on the second of the three x2.5 weeks before Christmas: those two keep
    their peak, and the 17 uncovered weeks after them run from the smooth there (before this, from the
    peak: a gap mean of 1.64)."""
    panel = _panel(36, _true_season(36), seed=3)
    season, _ = _fit(panel)
    first, last = int(panel["bins"][0]), int(panel["bins"][-1])
    assert season[0, [last - 1, last]].min() > 2.0
    gap = season[0, np.r_[last + 1:WEEKS_OF_YEAR, 0:first]]  # fmt: skip
    assert gap.max() < 1.2 and abs(gap.mean() - 1.0) < 0.1


def test_the_index_table_round_trips_and_unknown_categories_get_one() -> None:
    index = SeasonIndex(("DEP1", "DEP2"), np.linspace(0.5, 1.5, 2 * WEEKS_OF_YEAR).reshape(2, -1),
                        np.arange(2 * WEEKS_OF_YEAR).reshape(2, -1) % 3 == 0)  # fmt: skip
    back = SeasonIndex.from_frame(index.to_frame().sample(frac=1.0, random_state=0))
    assert back.categories == index.categories
    assert np.array_equal(back.season, index.season) and np.array_equal(back.covered, index.covered)
    of = back.of(["DEP2", "NEW", "DEP1"])
    assert np.array_equal(of[0], index.season[1]) and np.all(of[1] == 1.0) and np.array_equal(of[2], index.season[0])
    frame = index.to_frame()
    with pytest.raises(ValueError, match=r"each WEEK_OF_YEAR 0..51 once per category; DEP2 has 51 rows"):
        SeasonIndex.from_frame(frame.iloc[:-1])
    with pytest.raises(ValueError, match="DEP1 has 52 rows, not each week once"):  # the rows right, a week twice
        SeasonIndex.from_frame(frame.assign(WEEK_OF_YEAR=frame["WEEK_OF_YEAR"].replace(7, 8)))
    with pytest.raises(ValueError, match=r"missing \['covered'\]"):
        SeasonIndex.from_frame(frame.drop(columns="covered"))
    for bad in (0.0, np.nan):
        with pytest.raises(ValueError, match=r"finite and positive; DEP1 has (0.0|nan) in WEEK_OF_YEAR 5"):
            SeasonIndex.from_frame(frame.assign(season=frame["season"].where(frame.index != 5, bad)))


@pytest.mark.parametrize("field, value", [("bandwidth_weeks", 0.0), ("spike_z", -1.0), ("iterations", 0),
                                          ("robust_passes", 0)])
def test_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SeasonConfig(**{field: value})


def test_estimate_reads_the_training_rows_of_the_price_table(tmp_path) -> None:
    """From a prices_derived-like table: validation rows and products outside the response are left out;
    categories come from the response; a pair is a store and a product (each product sold at two stores,
    at levels of its own); the multiplier is the paid price ** elasticity x the lift where promoted; the
    fit is ``fit_season``'s on the same rows."""
    panel = _panel(60, _true_season(60), seed=4)
    train = panel["week"] < 53
    table = pd.DataFrame({
        "STORE_CODE": np.array(["S0", "S1"])[panel["pair"] % 2], "PROD_CODE": [f"P{i // 2}" for i in panel["pair"]],
        "week_index": panel["week"] + 1, "split": np.where(train, "train", "validation"), "units": panel["units"],
        "actual_price": panel["price"], "promo_flag": panel["promoted"],
    })  # fmt: skip
    table = pd.concat([table, table.head(5).assign(PROD_CODE="UNKNOWN", units=10**6)])
    table.to_parquet(tmp_path / "prices.parquet")
    categories = {f"P{j}": f"DEP{j // 24}" for j in range(48)}  # 24 products a category, as the panel's 48 pairs

    class Response:
        product_category = categories

        @staticmethod
        def parameters(product_codes):
            return np.full(len(product_codes), -2.0), np.full(len(product_codes), 1.8)

    index = estimate_seasons(tmp_path / "prices.parquet", Response(), FIRST_MONDAY)
    assert index.categories == ("DEP0", "DEP1")
    direct, covered = _fit({key: value[train] if key in FIT_KEYS[:5] else value for key, value in panel.items()}
                           | {"bins": panel["bins"][:53]})  # fmt: skip
    assert np.allclose(index.season, direct) and np.array_equal(index.covered, covered)
