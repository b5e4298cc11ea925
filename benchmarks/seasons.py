"""How close the learned market's seasons are to the generator's truth, for a generated scenario: prints JSON.

Three figures, all in mean absolute log ratio (0.05 = about 5% off):

- ``index``: the bundle's season index (``season_index.parquet``) against the true season per category
  (the generator's department season x its traffic of the week, each category's PROD_CODE_20 being a
  department), both scaled to mean 1 over the training weeks, per category and data week: over the
  training weeks and over the data's later weeks, next to no index at all (1 everywhere).
- ``shape``: the learned market's expected units at reference prices (fixed propensities, seasons off and
  on) against the oracle's, at the busiest store's top ``products``, over ``weeks`` weeks from data week 1,
  once each product's mean log ratio over those weeks is divided out (so the level does not count, only
  the season's shape): over the weeks the training weeks' calendar holds and over December's.
- ``level_at_middle_week``: learned (seasons on) over oracle units at reference prices in the data's
  middle week per product (the range) and summed over the products.

A figure over weeks the run does not hold (December with ``--weeks`` too short, weeks after the training
ones in a bundle whose data ends with them) is left out or null.

    python benchmarks/seasons.py [--scenario DIR] [--products 10] [--weeks 52]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from world_model.response.checks import load_market
from world_model.response.season import week_bins

from retailsim_env.demand import LearnedDemand, OracleDemand
from retailsim_env.scenario import Scenario


def _mean_abs_log(ratio: np.ndarray) -> float:
    return float(np.abs(np.log(ratio)).mean())


def index_error(scenario: Scenario) -> dict:
    """The ``index`` figures (module docstring)."""
    market = load_market(scenario.path / "ground_truth")
    calendar = scenario.meta["calendar"]
    weeks = np.arange(1, calendar["weeks"] + 1)  # data week t is the generator's week t - 1
    index = scenario.season_index
    if index is None:
        raise SystemExit(f"{scenario.path}: no season_index.parquet (a bundle built before seasons; rebuild it)")
    product_category = scenario.catalog.set_index("PROD_CODE")["PROD_CODE_20"]
    category = product_category.reindex(market.catalog.prod_code).to_numpy()
    truth = np.stack([[market.season(int(t) - 1)[category == c].mean() * market.traffic(int(t) - 1) for t in weeks]
                      for c in index.categories])  # fmt: skip
    train = weeks <= calendar["train_end"]
    truth /= truth[:, train].mean(1, keepdims=True)
    fitted = index.season[:, week_bins(calendar["first_monday"], weeks)]
    return {
        f"{name}_weeks": {"index": _mean_abs_log(fitted[:, part] / truth[:, part]), "none": _mean_abs_log(1.0 / truth[:, part])}
        for name, part in (("training", train), ("later", ~train)) if part.any()
    }  # fmt: skip


def _forecast(backend, weeks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[weeks, K] expected units at the first managed store at reference prices without promotions."""
    price = np.broadcast_to(reference, (len(weeks), *reference.shape))
    return backend.forecast(weeks, price, np.zeros_like(price))[:, 0]


def shape_and_level(scenario: Scenario, products: int, n_weeks: int) -> dict:
    """The ``shape`` and ``level`` figures (module docstring)."""
    calendar = scenario.meta["calendar"]
    stores, rows = scenario.store_rows(None), scenario.product_rows(products)
    reference = scenario.reference_prices[np.ix_(stores, rows)].astype(np.float64)
    weeks = np.arange(1, n_weeks + 1)
    oracle = OracleDemand(scenario, stores, rows)
    truth = _forecast(oracle, weeks, reference)
    learned = {on: LearnedDemand(scenario, stores, rows, device="cpu", propensities="fixed", seasons=on)
               for on in (False, True)}  # fmt: skip
    first = calendar["first_monday"]
    training = np.isin(week_bins(first, weeks), week_bins(first, np.arange(1, calendar["train_end"] + 1)))
    december = (np.datetime64(first, "D") + 7 * (weeks - 1)).astype("datetime64[M]").astype(np.int64) % 12 == 11
    shape = {}
    for on, backend in learned.items():
        log_ratio = np.log(_forecast(backend, weeks, reference) / truth)
        log_ratio -= log_ratio.mean(0, keepdims=True)
        shape["seasons_on" if on else "seasons_off"] = {
            name: float(np.abs(log_ratio[part]).mean()) if part.any() else None
            for name, part in (("training_weeks", training), ("december", december))
        }  # fmt: skip
    middle = np.array([max(calendar["weeks"] // 2, 1)])
    units, oracle_units = _forecast(learned[True], middle, reference)[0], _forecast(oracle, middle, reference)[0]
    ratio = units / oracle_units
    level = {"week": int(middle[0]), "min": float(ratio.min()), "max": float(ratio.max()), "all": float(units.sum() / oracle_units.sum())}
    return {"shape": shape, "level_at_middle_week": level}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenario", default=None, help="a generated scenario directory (default: the shipped one)")
    parser.add_argument("--products", type=int, default=10)
    parser.add_argument("--weeks", type=int, default=52)
    args = parser.parse_args()
    scenario = Scenario(args.scenario)
    result = {"scenario": scenario.name, "products": args.products, "weeks": args.weeks, "index": index_error(scenario),
              **shape_and_level(scenario, args.products, args.weeks)}  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
