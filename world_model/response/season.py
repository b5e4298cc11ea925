"""Category seasons from the training weeks: a week-of-year index of each category's demand, net of prices.

The price response says how demand moves with price and promotion; it has no calendar. The learned market
multiplies each product's expected units by its category's index at the week's week of year, so a
season the training weeks hold (a summer category, a Christmas peak, the quiet week after) is in the
simulated demand too. Categories are the price response's (PROD_CODE_20).

The fit, per category c, over the training rows of ``prices_derived`` (every store-product pair and week,
weeks without a sale included, so no week is missing from the sums):

    units[s, p, t] ~ a[s, p] x m[s, p, t] x S[c, t]

with m the response multiplier at the week's paid price and promotion (``price ** elasticity x lift **
promoted``: the pair's reference price is a constant of the pair, taken into a) and a the pair's level,
by alternating the two closed-form Poisson maximum-likelihood updates (a given S, S given a). The weekly
ratios S are then taken to the 52 weeks of a year (``WEEKS_OF_YEAR``; ``week_of_year`` bins a week by
its distance to the Christmas week or from the New Year week, so Christmas, the weeks before it and the
quiet week after it keep their bins from year to year, which days of the year // 7 do not):

1. training weeks in the same week of the year (data over several years) pool their units and expected
   units (a x m summed);
2. smooth: the ratio of units to expected units summed with a Gaussian kernel over the circular
   week-of-year distance (``bandwidth_weeks``), over the covered weeks;
3. spikes: a week's own deviation from the smooth, d = log(raw / smooth), is kept where it stands out
   of its noise, shrunk by max(0, 1 - (spike_z / z) ** 2) with z = d / sd and sd ** 2 = dispersion /
   (expected x smooth), the category's dispersion from the median of the weeks' squared Pearson
   residuals (over the median of a chi-square with one degree of freedom, at least 1: Poisson); so a
   three-week Christmas peak stays while week-to-week sampling noise goes (a small market's category
   weeks vary by about 8% at random, more than its real seasons over most of the year); the weeks with
   z >= 2 x spike_z are then left out of a new smooth (steps 2-3 again, ``robust_passes``), so a peak
   does not spill into the weeks beside it;
4. weeks of the year the training weeks never cover are interpolated linearly in log between the
   smooth of the nearest covered weeks on either side, circularly: no evidence, so no season of their
   own (in particular none of a December peak that only weeks outside the training split hold, nor one
   spread from a spike in the last covered week);
5. scaled so that the index averages 1 over the training weeks, the weeks the bundle's history level
   averages (``world_model.response.history``), so that level stays the training weeks' mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from world_model.data.duckdb_util import sql_string
from world_model.pipeline.model_inputs import monday_of
from world_model.response.model import PriceResponse

WEEKS_OF_YEAR = 52
CHI2_1_MEDIAN = 0.454936
"""Median of a chi-square variable with one degree of freedom: a squared standard normal."""
SEASON_COLUMNS = ("PROD_CODE_20", "WEEK_OF_YEAR", "season", "covered")
LEFT_OUT_WEIGHT = 1e-6
"""A spike week's weight in the smooth that leaves it out (not 0: a week with no other covered week
within the kernel's reach keeps its own ratio)."""


@dataclass(frozen=True)
class SeasonConfig:
    """Choices of the season fit (module docstring)."""

    bandwidth_weeks: float = 3.0
    """Standard deviation of the smoothing kernel over weeks of the year (step 2)."""
    spike_z: float = 2.0
    """A week's deviation from the smooth is dropped below this many standard deviations of its noise and
    kept in part above (step 3)."""
    iterations: int = 25
    """Alternating updates of the pair levels and the weekly ratios."""
    robust_passes: int = 5
    """Smooths at most (step 3): after each, the weeks standing out by 2 x ``spike_z`` or more are left out
    of the next one, until that set stops changing; 1 smooths every week once, as does ``spike_z`` 0
    (every deviation is kept whole then, so there is nothing to leave out)."""

    def __post_init__(self) -> None:
        if not self.bandwidth_weeks > 0:
            raise ValueError(f"bandwidth_weeks must be positive, got {self.bandwidth_weeks}")
        if self.spike_z < 0:
            raise ValueError(f"spike_z must be >= 0, got {self.spike_z}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.robust_passes < 1:
            raise ValueError(f"robust_passes must be >= 1, got {self.robust_passes}")


HALF_YEAR_WEEKS = WEEKS_OF_YEAR // 2


def _christmas_monday(years: np.ndarray) -> np.ndarray:
    """The Monday of the week holding 25 December of each calendar year."""
    december = (np.asarray(years, np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[M]") + 11
    return monday_of(december.astype("datetime64[D]") + 24)


def week_of_year(mondays: np.ndarray) -> np.ndarray:
    """[...] the week-of-year bin 0..51 of the week starting each Monday (``datetime64``; another day is
    taken to its week's Monday), anchored on the holidays rather than on 1 January, so the weeks that
    differ most keep their bin from year to year: bin 51 is the week holding Christmas day, 50 the one
    before it and so on back to 26; bin 0 is the week after it (holding New Year's day), 1 the next and so
    on up to 25. The weeks from one Christmas week to the next are 52 or 53; in a 53-week year bin 25
    takes two weeks, in midsummer, where seasons change slowest."""
    mondays = np.asarray(mondays, dtype="datetime64[D]")
    if np.isnat(mondays).any():
        raise ValueError("week_of_year: a date is NaT")
    mondays = monday_of(mondays)
    year = mondays.astype("datetime64[Y]").astype(np.int64) + 1970
    christmas = _christmas_monday(year)
    since_new_year = (mondays - (_christmas_monday(year - 1) + 7)).astype(np.int64) // 7
    to_christmas = (christmas - mondays).astype(np.int64) // 7
    bins = np.where(since_new_year < HALF_YEAR_WEEKS, since_new_year, WEEKS_OF_YEAR - 1 - to_christmas)
    return np.where(mondays > christmas, 0, bins)


def week_bins(first_monday: np.datetime64 | str, weeks: np.ndarray) -> np.ndarray:
    """The week-of-year bins of data week indices ``weeks`` (1 = the week of ``first_monday``)."""
    start = np.datetime64(first_monday, "D")
    return week_of_year(start + 7 * (np.asarray(weeks, dtype=np.int64) - 1))


@dataclass(frozen=True)
class SeasonIndex:
    """The fitted index: ``season`` [C, 52] of ``categories``, ``covered`` [C, 52] where the training weeks
    held the week of the year (elsewhere interpolated)."""

    categories: tuple[str, ...]
    season: np.ndarray
    covered: np.ndarray

    def of(self, categories: Sequence[str]) -> np.ndarray:
        """[len(categories), 52] the index of each category; 1 for a category the fit never saw."""
        row = {c: i for i, c in enumerate(self.categories)}
        out = np.ones((len(categories), WEEKS_OF_YEAR))
        for i, c in enumerate(categories):
            if c in row:
                out[i] = self.season[row[c]]
        return out

    def to_frame(self) -> pd.DataFrame:
        n = len(self.categories)
        return pd.DataFrame({
            "PROD_CODE_20": np.repeat(np.asarray(self.categories, dtype=object), WEEKS_OF_YEAR),
            "WEEK_OF_YEAR": np.tile(np.arange(WEEKS_OF_YEAR, dtype=np.int64), n),
            "season": self.season.reshape(-1), "covered": self.covered.reshape(-1),
        })  # fmt: skip

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SeasonIndex:
        """The index from ``to_frame``'s table; ValueError naming what is wrong with a table that is not
        one (a missing column, a category without each week of the year once, a season <= 0 or not finite)."""
        missing = [c for c in SEASON_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"a season table needs the columns {list(SEASON_COLUMNS)}, missing {missing}")
        frame = frame.sort_values(["PROD_CODE_20", "WEEK_OF_YEAR"])
        categories = tuple(frame["PROD_CODE_20"].drop_duplicates())
        shape = (len(categories), WEEKS_OF_YEAR)
        weeks = frame.groupby("PROD_CODE_20", sort=False)["WEEK_OF_YEAR"].agg(list)
        wrong = [c for c, w in weeks.items() if w != list(range(WEEKS_OF_YEAR))]
        if wrong:
            raise ValueError(f"a season table needs each WEEK_OF_YEAR 0..{WEEKS_OF_YEAR - 1} once per category; "
                             f"{wrong[0]} has {len(weeks[wrong[0]])} rows, not each week once")  # fmt: skip
        season = frame["season"].to_numpy(np.float64).reshape(shape)
        bad = np.argwhere(~(np.isfinite(season) & (season > 0)))
        if len(bad):
            category, week = bad[0]
            raise ValueError(f"a season table's season must be finite and positive; {categories[category]} has "
                             f"{season[category, week]} in WEEK_OF_YEAR {week}")  # fmt: skip
        return cls(categories, season, frame["covered"].to_numpy(bool).reshape(shape))


def _alternate(units: np.ndarray, multiplier: np.ndarray, pair: np.ndarray, cell: np.ndarray,
               iterations: int) -> np.ndarray:  # fmt: skip
    """[cells] each row's expected units without the season, a[pair] x m, after the alternating fit."""
    ratio = np.ones(cell.max() + 1)
    for _ in range(iterations):
        level = np.bincount(pair, units) / np.maximum(np.bincount(pair, multiplier * ratio[cell]), 1e-300)
        expected = level[pair] * multiplier
        ratio = np.bincount(cell, units) / np.maximum(np.bincount(cell, expected), 1e-300)
    return expected


def _interpolate_gaps(log_season: np.ndarray, log_smooth: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``log_season`` [52] with the uncovered weeks interpolated linearly between the nearest covered
    weeks on either side, circularly (all 0 when none is covered). The line runs between those weeks'
    ``log_smooth``, not their own index: a spike in the last covered week before a gap (training weeks
    ending on a pre-Christmas peak) is that week's alone, and would otherwise be spread over the gap."""
    known = np.flatnonzero(covered)
    if len(known) == 0:
        return np.zeros_like(log_season)
    weeks = np.arange(WEEKS_OF_YEAR)
    extended = np.r_[known - WEEKS_OF_YEAR, known, known + WEEKS_OF_YEAR]
    values = np.tile(log_smooth[known], 3)
    return np.where(covered, log_season, np.interp(weeks, extended, values))


def _kernel(bandwidth_weeks: float) -> np.ndarray:
    """[52, 52] Gaussian weights of the circular distance between weeks of the year."""
    weeks = np.arange(WEEKS_OF_YEAR)
    distance = np.abs(weeks[:, None] - weeks[None, :])
    distance = np.minimum(distance, WEEKS_OF_YEAR - distance)
    return np.exp(-0.5 * (distance / bandwidth_weeks) ** 2)


def _category_season(units: np.ndarray, expected: np.ndarray, training_bins: np.ndarray, kernel: np.ndarray,
                     config: SeasonConfig) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """([52] index, [52] covered) of one category from its units and expected units per week of the year
    (steps 2-5 of the module docstring)."""
    covered = expected > 0
    if not covered.any():
        return np.ones(WEEKS_OF_YEAR), covered
    left_out = np.zeros(WEEKS_OF_YEAR, bool)
    for _ in range(config.robust_passes):
        weight = np.where(left_out, LEFT_OUT_WEIGHT, 1.0)
        smooth = np.where(covered, kernel @ (weight * units) / np.maximum(kernel @ (weight * expected), 1e-300), 1.0)
        fitted = expected * smooth
        pearson = (units - fitted)[covered] ** 2 / np.maximum(fitted[covered], 1e-300)
        dispersion = max(float(np.median(pearson)) / CHI2_1_MEDIAN, 1.0)
        deviation = np.log(np.maximum(units, 0.5) / np.maximum(fitted, 1e-300))
        z_squared = deviation**2 * fitted / dispersion
        keep = np.clip(1.0 - config.spike_z**2 / np.maximum(z_squared, 1e-300), 0.0, 1.0)
        spikes = covered & (z_squared >= (2.0 * config.spike_z) ** 2) if config.spike_z > 0 else left_out
        if np.array_equal(spikes, left_out):
            break
        left_out = spikes
    known = covered & (smooth > 0)
    log_smooth = np.where(known, np.log(np.maximum(smooth, 1e-300)), 0.0)
    season = np.exp(_interpolate_gaps(np.where(known, log_smooth + deviation * keep, 0.0), log_smooth, known))
    return season / season[training_bins].mean(), covered


def fit_season(units: np.ndarray, multiplier: np.ndarray, pair: np.ndarray, category: np.ndarray,
               week: np.ndarray, bins: np.ndarray, n_categories: int,
               config: SeasonConfig = SeasonConfig()) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """([C, 52] index, [C, 52] covered) from training rows: ``units``, response ``multiplier``, integer
    ``pair`` (store-product), ``category`` (0..C-1) and ``week`` (0..W-1) per row, and ``bins`` [W] the
    week-of-year bin of each week (module docstring)."""
    n_weeks = len(bins)
    cell = np.asarray(category, np.int64) * n_weeks + np.asarray(week, np.int64)
    units = np.asarray(units, np.float64)
    expected = _alternate(units, np.asarray(multiplier, np.float64), np.asarray(pair, np.int64), cell, config.iterations)
    size = n_categories * n_weeks
    by_week = [np.bincount(cell, values, minlength=size).reshape(n_categories, n_weeks) for values in (units, expected)]
    seen_weeks = np.unique(np.asarray(week, np.int64))
    season, covered = np.ones((n_categories, WEEKS_OF_YEAR)), np.zeros((n_categories, WEEKS_OF_YEAR), bool)
    kernel = _kernel(config.bandwidth_weeks)  # once, not per category
    for c in range(n_categories):
        pooled = [np.bincount(bins, row, minlength=WEEKS_OF_YEAR) for row in (by_week[0][c], by_week[1][c])]
        season[c], covered[c] = _category_season(*pooled, bins[seen_weeks], kernel, config)
    return season, covered


def estimate_seasons(prices: Path, response: PriceResponse, first_monday: np.datetime64 | str,
                     config: SeasonConfig = SeasonConfig()) -> SeasonIndex:  # fmt: skip
    """The season index of every category of ``response`` from the training weeks of the
    ``prices_derived.parquet`` table at ``prices``, week 1 being the week of ``first_monday``."""
    with duckdb.connect() as con:
        rows = con.execute(
            f"""SELECT STORE_CODE, PROD_CODE, week_index, units, actual_price, promo_flag
                FROM read_parquet({sql_string(prices)}) WHERE split = 'train' AND actual_price > 0"""
        ).df()
    category_of = rows["PROD_CODE"].map(response.product_category)
    rows = rows[category_of.notna()].assign(category=category_of[category_of.notna()])
    categories = tuple(sorted(rows["category"].unique()))
    if rows.empty:
        return SeasonIndex(categories, np.ones((0, WEEKS_OF_YEAR)), np.zeros((0, WEEKS_OF_YEAR), bool))
    products = rows["PROD_CODE"].astype("category")
    elasticity, lift = response.parameters(list(products.cat.categories))
    code = products.cat.codes.to_numpy()
    promoted = rows["promo_flag"].to_numpy(bool)
    multiplier = rows["actual_price"].to_numpy(np.float64) ** elasticity[code] * np.where(promoted, lift[code], 1.0)
    first_week = int(rows["week_index"].min())
    week = rows["week_index"].to_numpy(np.int64) - first_week
    bins = week_bins(first_monday, np.arange(week.max() + 1) + first_week)
    pair = rows.groupby(["STORE_CODE", "PROD_CODE"], sort=False).ngroup().to_numpy()
    category = rows["category"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    season, covered = fit_season(rows["units"].to_numpy(np.float64), multiplier, pair, category, week, bins,
                                 len(categories), config)  # fmt: skip
    return SeasonIndex(categories, season, covered)
