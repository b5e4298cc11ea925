"""Synthetic grocery market with known truth (LGSR layout).

A structural market model - catalog, stores, shoppers, prices and promotions - whose elasticities,
promotion lifts, costs and shopper habits are known. It serves two purposes:

* ``generate_market`` writes LGSR-layout weekly files (``transactions_YYYYWW.csv``/``.parquet``, the
  ``time.csv`` calendar) plus ``ground_truth/``, optionally with injected defects, for tests, benchmarks
  and the counterfactual-fidelity yardstick of the world model;
* ``SyntheticMarket`` is the oracle environment: ``simulate_week`` maps one week's prices and
  promotions to that week's shopping, ``expected_units`` gives the exact expected units without
  sampling.

See ``docs/synthetic_market.md`` and ``market.py`` for the model and the calibration.
"""

from .config import MarketConfig
from .generate import generate_market
from .market import CalendarWeek, SyntheticMarket, WeekLines

__all__ = ["MarketConfig", "SyntheticMarket", "generate_market", "CalendarWeek", "WeekLines"]
