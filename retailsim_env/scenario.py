"""Scenario bundles: everything an environment needs, in one directory, built once from a work directory.

``retailsim scenario build WORKDIR --world-model CKPT --store-visit CKPT --out SCENARIO_DIR`` writes:

- ``scenario.json``: format, name, source, calendar (the data's first Monday, weeks, training end), the
  SHA-256 of every file below, package versions, and whether a generator's ground truth is included;
- ``catalog.parquet``: one row per product vocabulary row (PROD_CODE, the hierarchy, ``base_price`` the
  reference shelf price, ``unit_cost``, ``price_min``/``price_max`` = the 20th/95th percentile of its
  observed training prices, training ``revenue`` and ``units_per_line``, the category ``elasticity`` and
  ``lift`` the simulator uses);
- ``stores.parquet`` and ``reference_prices.npy`` [stores + 1, V]: each store's latest regular price;
- ``history_units.npy`` and ``history_multiplier.npy`` [stores + 1, V]: each store's mean weekly units of
  the training weeks (every basket, card or not) and the mean of those weeks' price-response multiplier
  against the reference price (``(paid / reference) ** elasticity x lift ** promoted``), from which the
  learned market sets its level (``retailsim_env.demand``: the history's units at the history's prices);
- ``basket_quantities.parquet``: per product row, how many units a training basket holding it held
  (``row``, ``QUANTITY``, ``baskets``: the pipeline's ``processed/basket_quantities.parquet``), from which
  the learned market draws a week's units as basket lines with these quantities (compound Poisson);
- ``season_index.parquet``: per category (PROD_CODE_20) and week of the year 0..51, the training weeks'
  demand index net of prices and promotions (``season``, averaging 1 over the training weeks) and whether
  a training week held that week of the year (``covered``; the others are interpolated):
  ``world_model.response.season``, with which the learned market has the data's seasons; and
  ``history_multiplier_seasonal.npy``, the history multiplier of the response x that index, the level's
  divisor when the market applies the seasons (so it too averages the history's units exactly);
- ``shoppers.parquet``: the shopper population, one row per customer with two baskets or more: its
  ``anchor_row`` (the latest basket: the models read the history before it), weekly ``visit_rate`` and
  mean distinct products per basket;
- ``prepared/`` and ``features/``: the slice of the tensor cache and price encoder the models read, so
  ``PreparedData(SCENARIO_DIR)`` works as on a work directory;
- ``models/basket.pt``, ``models/store_visit.pt``: the trained models (weights only, optimizer state dropped);
- ``processed/price_response.json``: the explicit price and promotion response;
- ``ground_truth/``: for a generated market, the generator's truth (oracle mode).

Unit costs: the generator's true costs when ground truth is given, otherwise ``cost_ratio`` (default 0.7)
times the reference price, recorded as ``cost_source`` in scenario.json. The write goes to
``SCENARIO_DIR.partial`` and is renamed when complete (``world_model.files.replacing``), so a scenario
directory is never half-written, and a previous one is replaced (``overwrite``) only by a whole new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from world_model.data.duckdb_util import sql_string
from world_model.data.synthetic.truth import check_truth_matches
from world_model.errors import RetailSimError, check_output_dir
from world_model.files import recover_replaced, replacing
from world_model.models.predictors import check_world_model
from world_model.pipeline.basket_quantities import BASKET_QUANTITIES
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.price_features import NORMALIZERS_FILE, STATS_FILE
from world_model.pipeline.tensor_cache import BASKET_COLUMN, PRODUCT_SPECIALS, VOCAB
from world_model.response.history import history_units_and_multipliers
from world_model.response.model import RESPONSE_FILE, PriceResponse
from world_model.response.season import SeasonIndex, estimate_seasons, week_bins
from world_model.training.checkpoint import load_checkpoint, save_checkpoint

from retailsim_env.config import is_finite_number, is_whole_number

FORMAT = "retailsim.scenario/1"
PREPARED_FILES = (
    VOCAB, "products.npy", "stores.npy", "customers.npy", "customer_trip_patterns.npy", "basket_table.npy",
    "basket_offsets.npy", "basket_items.npy", "basket_item_prices.npy",
)  # fmt: skip
FEATURE_FILES = (STATS_FILE, NORMALIZERS_FILE)
MODELS = {"basket": "models/basket.pt", "store_visit": "models/store_visit.pt"}
GROUND_TRUTH_FILES = ("config.json", "products.parquet", "categories.parquet", "stores.parquet")
"""What the oracle and the costs need (the generator rebuilds the market from config.json); the
per-customer truth stays out of the bundle to keep it small."""
PRICE_QUANTILES = (0.20, 0.95)
HISTORY_UNITS, HISTORY_MULTIPLIER = "history_units.npy", "history_multiplier.npy"
SEASON_INDEX, HISTORY_SEASONAL_MULTIPLIER = "season_index.parquet", "history_multiplier_seasonal.npy"
DEFAULT_SCENARIO = "default"


MIN_PRICE_SPREAD = 0.10
"""The room a price has at least on either side of a reference price, as a share of it: the catalog's
bounds around the product's reference (``BuildConfig.min_price_spread``), and the environment's around
each managed store's own (``retailsim_env.market.RetailMarket``)."""


def widen_price_bounds(low, high, reference, spread: float = MIN_PRICE_SPREAD):
    """(low, high) widened to at least ``spread`` of ``reference`` on either side, rounded to cents; arrays
    or Series of one shape (or broadcasting)."""
    return np.round(np.minimum(low, reference * (1 - spread)), 2), np.round(np.maximum(high, reference * (1 + spread)), 2)


@dataclass(frozen=True)
class BuildConfig:
    """Choices of ``build_scenario``."""

    name: str = "scenario"
    cost_ratio: float = 0.7
    """Unit cost as a share of the reference price when no ground truth gives costs (finite, > 0)."""
    min_price_spread: float = MIN_PRICE_SPREAD
    """Products whose observed 20th-95th percentile range is narrower than this share of the reference
    price get [ref x (1 - spread), ref x (1 + spread)], so every managed product has room to move."""

    def __post_init__(self) -> None:
        if not (is_finite_number(self.cost_ratio) and self.cost_ratio > 0):
            raise RetailSimError(f"--cost-ratio: unit cost as a share of the reference price must be a finite "
                                 f"number above 0, got {self.cost_ratio!r}")  # fmt: skip
        if not (is_finite_number(self.min_price_spread) and 0 <= self.min_price_spread < 1):
            raise RetailSimError(f"min_price_spread must be in [0, 1), got {self.min_price_spread!r}")


def default_scenario_path() -> Path:
    """The small scenario shipped inside the package (built by ``python -m retailsim_env.make_default``)."""
    return Path(str(resources.files("retailsim_env") / "scenarios" / DEFAULT_SCENARIO))


def resolve_scenario(scenario: str | Path | None) -> Path:
    """``None`` or "default" is the shipped scenario; anything else a scenario directory."""
    if scenario is None or str(scenario) == DEFAULT_SCENARIO:
        path = default_scenario_path()
    else:
        path = Path(scenario)
    if not (path / "scenario.json").exists():
        raise RetailSimError(f"scenario: {path} is not a scenario directory (no scenario.json); "
                             "build one with 'retailsim scenario build'")  # fmt: skip
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_only_copy(source: Path, target: Path) -> None:
    """The checkpoint file ``source`` with the optimizer, scheduler and RNG state emptied (the loader keeps
    its keys)."""
    checkpoint = load_checkpoint(source)
    checkpoint.update(optimizer={}, scheduler={}, scaler={}, rng={}, history=[])
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, checkpoint)


def _catalog(data: PreparedData, workdir: Path, response: PriceResponse, truth: pd.DataFrame | None,
             config: BuildConfig) -> pd.DataFrame:  # fmt: skip
    """One row per real product vocabulary row (``row`` = vocabulary row)."""
    codes = list(data.vocab["products"]["codes"])
    nodes = pd.read_parquet(workdir / "processed" / "product_graph_nodes.parquet").set_index("PROD_CODE")
    prices = workdir / "processed" / "prices_derived.parquet"
    with duckdb.connect() as con:
        observed = con.execute(
            f"""SELECT PROD_CODE, quantile_cont(actual_price, {PRICE_QUANTILES[0]}) AS price_low,
                       quantile_cont(actual_price, {PRICE_QUANTILES[1]}) AS price_high,
                       median(base_price) AS reference, sum(units * actual_price) AS revenue
                FROM read_parquet({sql_string(prices)})
                WHERE split = 'train' AND price_source = 'observed' GROUP BY 1"""
        ).df().set_index("PROD_CODE")
    frame = pd.DataFrame({"row": np.arange(len(codes)) + PRODUCT_SPECIALS, "PROD_CODE": codes})
    frame = frame.join(nodes[["PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40", "train_baskets",
                              "train_units", "mean_unit_price"]], on="PROD_CODE").join(observed, on="PROD_CODE")  # fmt: skip
    frame["base_price"] = frame["reference"].fillna(frame["mean_unit_price"]).fillna(1.0)
    low, high = widen_price_bounds(frame["price_low"].fillna(frame["base_price"]), frame["price_high"].fillna(frame["base_price"]),
                                   frame["base_price"], config.min_price_spread)  # fmt: skip
    frame["price_min"], frame["price_max"] = low.clip(lower=0.01), high
    frame["revenue"] = frame["revenue"].fillna(0.0)
    frame["units_per_line"] = (frame["train_units"] / frame["train_baskets"].clip(lower=1)).fillna(1.0)
    if truth is not None:
        frame["unit_cost"] = frame["PROD_CODE"].map(truth.set_index("PROD_CODE")["unit_cost"])
    else:
        frame["unit_cost"] = np.nan
    frame["unit_cost"] = frame["unit_cost"].fillna(frame["base_price"] * config.cost_ratio)
    frame["elasticity"], frame["lift"] = response.parameters(codes)
    return frame.drop(columns=["reference", "price_low", "price_high", "train_baskets", "train_units",
                               "mean_unit_price"])  # fmt: skip


def _product_rows(catalog: pd.DataFrame) -> dict[str, int]:
    """{PROD_CODE: product vocabulary row} of the catalog's products."""
    return dict(zip(catalog["PROD_CODE"], catalog["row"]))


def _stores_and_reference_prices(data: PreparedData, workdir: Path, catalog: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    codes = list(data.vocab["stores"]["codes"])
    prices = workdir / "processed" / "prices_derived.parquet"
    with duckdb.connect() as con:
        latest = con.execute(
            f"""SELECT STORE_CODE, PROD_CODE, arg_max(base_price, week_index) AS price
                FROM read_parquet({sql_string(prices)}) GROUP BY 1, 2"""
        ).df()
        revenue = con.execute(
            f"""SELECT STORE_CODE, sum(units * actual_price) AS revenue FROM read_parquet({sql_string(prices)})
                WHERE split = 'train' GROUP BY 1"""
        ).df().set_index("STORE_CODE")["revenue"]
    store_row, product_row = {code: i + 1 for i, code in enumerate(codes)}, _product_rows(catalog)
    reference = np.ones((len(codes) + 1, data.n_products), dtype=np.float32)
    reference[:, PRODUCT_SPECIALS:] = catalog["base_price"].to_numpy(np.float32)
    s = latest["STORE_CODE"].map(store_row)
    p = latest["PROD_CODE"].map(product_row)
    keep = s.notna() & p.notna()
    reference[s[keep].astype(int), p[keep].astype(int)] = latest.loc[keep, "price"].to_numpy(np.float32)
    stores = pd.DataFrame({"row": np.arange(len(codes)) + 1, "STORE_CODE": codes})
    stores["revenue"] = stores["STORE_CODE"].map(revenue).fillna(0.0)
    return stores, reference


def _history_levels(data: PreparedData, workdir: Path, catalog: pd.DataFrame, reference: np.ndarray,
                    season: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(mean weekly units, mean response multiplier, mean multiplier of response x ``season``), each
    [stores + 1, V], of the training weeks per store and product (``world_model.response.history``;
    ``season`` [V', weeks + 1] per catalog product and data week); 0 and 1 where the training weeks have
    no row."""
    rows = catalog["row"].to_numpy()
    units, multipliers = history_units_and_multipliers(
        workdir / "processed" / "prices_derived.parquet", list(data.vocab["stores"]["codes"]), list(catalog["PROD_CODE"]),
        catalog["elasticity"].to_numpy(np.float64), catalog["lift"].to_numpy(np.float64), reference[1:][:, rows],
        [None, season])  # fmt: skip
    full = [np.zeros(reference.shape, np.float32)] + [np.ones(reference.shape, np.float32) for _ in multipliers]
    for target, values in zip(full, [units, *multipliers]):
        target[1:, rows] = values
    return full[0], full[1], full[2]  # units, plain multiplier, seasonal multiplier


def _seasons_by_week(seasons: SeasonIndex, catalog: pd.DataFrame, calendar: dict) -> np.ndarray:
    """[V', weeks + 1] the season index of each catalog product in each data week (column 0 unused)."""
    bins = week_bins(calendar["first_monday"], np.arange(calendar["weeks"] + 1))
    return seasons.of(list(catalog["PROD_CODE_20"]))[:, bins]


def _basket_quantities(workdir: Path) -> pd.DataFrame:
    """The work directory's ``processed/basket_quantities.parquet`` (read before anything is written)."""
    path = workdir / "processed" / BASKET_QUANTITIES
    if not path.exists():
        raise RetailSimError(f"{path}: missing; run `retailsim pipeline run` on the work directory again "
                             "(its stage basket_quantities is newer than the work directory)")  # fmt: skip
    return pd.read_parquet(path)


def _bundle_quantities(quantities: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """``basket_quantities.parquet`` of the bundle: the catalog's products by vocabulary row."""
    rows = quantities["PROD_CODE"].map(_product_rows(catalog))
    kept = quantities[rows.notna()].assign(row=rows[rows.notna()].astype(np.int64))
    return kept[["row", "QUANTITY", "baskets"]].sort_values(["row", "QUANTITY"]).reset_index(drop=True)


def _shoppers(data: PreparedData) -> pd.DataFrame:
    """Customers with two baskets or more: their latest basket row and shopping rates."""
    table = np.asarray(data.basket_table)
    offsets = np.asarray(data.basket_offsets)
    customer = table[:, BASKET_COLUMN["customer_row"]]
    last = np.flatnonzero(np.r_[customer[1:] != customer[:-1], True])
    first = np.r_[0, last[:-1] + 1]
    baskets = last - first + 1
    keep = baskets >= 2
    weeks = table[:, BASKET_COLUMN["week_index"]]
    span = weeks.max() - weeks[first] + 1
    sizes = np.diff(offsets).astype(np.float64)
    cumulative = np.r_[0.0, np.cumsum(sizes)]
    items = (cumulative[last + 1] - cumulative[first]) / baskets
    return pd.DataFrame({"customer_row": customer[last], "anchor_row": last, "visit_rate": baskets / span,
                         "basket_items": items})[keep].reset_index(drop=True)  # fmt: skip


def _calendar(data: PreparedData) -> dict:
    return {"first_monday": str(data.first_monday), "weeks": data.n_weeks, "train_end": data.train_end}


def build_scenario(workdir: Path | str, world_model: Path | str, store_visit: Path | str, out: Path | str,
                   ground_truth: Path | str | None = None, config: BuildConfig = BuildConfig(),
                   overwrite: bool = False) -> Path:  # fmt: skip
    """Write the bundle (module docstring) to ``out``; returns ``out``. A non-empty ``out`` is refused
    unless ``overwrite`` (RetailSimError)."""
    workdir, out = Path(workdir), Path(out)
    recover_replaced(out, flag="--out")
    check_output_dir(out, overwrite, flag="--out")
    data = PreparedData(workdir)
    # before anything is written; models of another work directory made a bundle no env could open
    checkpoints = {"basket": check_world_model(world_model, "basket", data),
                   "store_visit": check_world_model(store_visit, "store_visit", data)}  # fmt: skip
    response = PriceResponse.load(workdir)
    quantities = _basket_quantities(workdir)
    truth = None
    if ground_truth is not None:
        ground_truth = Path(ground_truth)
        check_truth_matches(ground_truth, data)
        truth = pd.read_parquet(ground_truth / "products.parquet")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for folder in ("prepared", "features", "processed", "models"):
        (partial / folder).mkdir(parents=True)
    for name in PREPARED_FILES:
        shutil.copyfile(data.prepared / name, partial / "prepared" / name)
    for name in FEATURE_FILES:
        shutil.copyfile(workdir / "features" / name, partial / "features" / name)
    response.save(partial / "processed" / RESPONSE_FILE)
    for kind, source in checkpoints.items():
        _weights_only_copy(source, partial / MODELS[kind])
    catalog = _catalog(data, workdir, response, truth, config)
    catalog.to_parquet(partial / "catalog.parquet", index=False)
    stores, reference = _stores_and_reference_prices(data, workdir, catalog)
    stores.to_parquet(partial / "stores.parquet", index=False)
    np.save(partial / "reference_prices.npy", reference)
    _bundle_quantities(quantities, catalog).to_parquet(partial / BASKET_QUANTITIES, index=False)
    calendar = _calendar(data)
    seasons = estimate_seasons(workdir / "processed" / "prices_derived.parquet", response, calendar["first_monday"])
    seasons.to_frame().to_parquet(partial / SEASON_INDEX, index=False)
    levels = _history_levels(data, workdir, catalog, reference, _seasons_by_week(seasons, catalog, calendar))
    for name, values in zip((HISTORY_UNITS, HISTORY_MULTIPLIER, HISTORY_SEASONAL_MULTIPLIER), levels):
        np.save(partial / name, values)
    _shoppers(data).to_parquet(partial / "shoppers.parquet", index=False)
    if ground_truth is not None:
        (partial / "ground_truth").mkdir()
        for name in GROUND_TRUTH_FILES:
            shutil.copyfile(ground_truth / name, partial / "ground_truth" / name)
    files = sorted(p for p in partial.rglob("*") if p.is_file())
    meta = {
        "format": FORMAT, "name": config.name, "source": {"workdir": str(workdir.resolve())},
        "calendar": calendar, "generated": ground_truth is not None,
        "cost_source": "ground_truth" if truth is not None else f"{config.cost_ratio} x reference price",
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "files": {str(p.relative_to(partial)): file_sha256(p) for p in files},
    }  # fmt: skip
    (partial / "scenario.json").write_text(json.dumps(meta, indent=1) + "\n")
    with replacing([out]):
        os.replace(partial, out)
    return out


class Scenario:
    """A scenario directory opened for the environments (tables read once, models loaded on demand)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = resolve_scenario(path)
        self.meta = json.loads((self.path / "scenario.json").read_text())
        if self.meta.get("format") != FORMAT:
            raise RetailSimError(f"{self.path / 'scenario.json'}: format {self.meta.get('format')!r}, expected {FORMAT}")
        self.catalog = pd.read_parquet(self.path / "catalog.parquet")
        self.stores = pd.read_parquet(self.path / "stores.parquet")
        self.shoppers = pd.read_parquet(self.path / "shoppers.parquet")
        self.reference_prices = np.load(self.path / "reference_prices.npy")

    @cached_property
    def history_levels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(``history_units``, ``history_multiplier``) [stores + 1, V], or None for a bundle built before
        they were written (the learned market then keeps the models' own level)."""
        paths = self.path / HISTORY_UNITS, self.path / HISTORY_MULTIPLIER
        return tuple(np.load(path) for path in paths) if all(path.exists() for path in paths) else None

    @cached_property
    def basket_quantities(self) -> pd.DataFrame | None:
        """(``row``, ``QUANTITY``, ``baskets``): how many units a training basket holding a product held,
        or None for a bundle built before it was written (the learned market then draws Poisson units)."""
        path = self.path / BASKET_QUANTITIES
        return pd.read_parquet(path) if path.exists() else None

    @cached_property
    def history_seasonal_multiplier(self) -> np.ndarray | None:
        """[stores + 1, V] the history multiplier of the response x season index, or None for a bundle
        built before the index was written."""
        path = self.path / HISTORY_SEASONAL_MULTIPLIER
        return np.load(path) if path.exists() else None

    @cached_property
    def season_index(self) -> SeasonIndex | None:
        """The categories' week-of-year index (``world_model.response.season``), or None for a bundle built
        before it was written (the learned market then has no seasons of its own). ``RetailSimError``
        naming the file where the table is malformed or the bundle lacks the seasonal history multiplier
        the learned market's level needs beside it."""
        path = self.path / SEASON_INDEX
        if not path.exists():
            return None
        if not (self.path / HISTORY_SEASONAL_MULTIPLIER).exists():  # the seasonal market's level needs it
            raise RetailSimError(f"{path}: the bundle has no {HISTORY_SEASONAL_MULTIPLIER} beside it; rebuild it "
                                 "(retailsim scenario build)")  # fmt: skip
        try:
            return SeasonIndex.from_frame(pd.read_parquet(path))
        except ValueError as error:
            raise RetailSimError(f"{path}: {error}") from None

    @cached_property
    def catalog_by_row(self) -> pd.DataFrame:
        """The catalog indexed by product vocabulary row."""
        return self.catalog.set_index("row")

    @cached_property
    def stores_by_row(self) -> pd.DataFrame:
        """The stores indexed by store vocabulary row."""
        return self.stores.set_index("row")

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.meta.get("generated")) and (self.path / "ground_truth" / "config.json").exists()

    @cached_property
    def data(self) -> PreparedData:
        return PreparedData(self.path)

    @cached_property
    def response(self) -> PriceResponse:
        return PriceResponse.load(self.path)

    def verify(self) -> None:
        """Raise when a file's SHA-256 differs from scenario.json (a damaged or edited bundle)."""
        for name, digest in self.meta["files"].items():
            if file_sha256(self.path / name) != digest:
                raise RetailSimError(f"{self.path / name}: hash differs from scenario.json (damaged scenario)")

    def store_rows(self, stores: str | list[str] | None, count: int = 1) -> list[int]:
        """Store vocabulary rows: the given codes, or the ``count`` (the envs' ``n_stores``) stores with the
        most training revenue."""
        if stores is None:
            if not is_whole_number(count):
                raise RetailSimError(f"n_stores: a store count, got {count!r}")
            if not 1 <= count <= len(self.stores):
                raise RetailSimError(f"n_stores: {count} stores asked, the scenario has {len(self.stores)}")
            return self.stores.sort_values(["revenue", "row"], ascending=[False, True])["row"].head(count).tolist()
        codes = _codes("stores", stores)
        known = dict(zip(self.stores["STORE_CODE"], self.stores["row"]))
        missing = [c for c in codes if c not in known]
        if missing:
            raise RetailSimError(f"stores: {', '.join(missing)} not in scenario {self.name}")
        return [int(known[c]) for c in codes]

    def product_rows(self, products: list[str] | str | int | None) -> np.ndarray:
        """Managed products: the given codes (a string is one code), or the top ``products`` (int, default
        10) by training revenue."""
        catalog = self.catalog
        if isinstance(products, (bool, np.bool_)):
            raise RetailSimError(f"products: a count or product codes, got {products!r}")
        if products is None or isinstance(products, (int, np.integer)):
            k = 10 if products is None else int(products)
            if not 1 <= k <= len(catalog):
                raise RetailSimError(f"products: {k} managed products asked, the scenario has {len(catalog)}")
            return catalog.sort_values(["revenue", "row"], ascending=[False, True])["row"].head(k).to_numpy()
        products = _codes("products", products)
        known = dict(zip(catalog["PROD_CODE"], catalog["row"]))
        missing = [c for c in products if c not in known]
        if missing:
            raise RetailSimError(f"products: {', '.join(missing[:5])} not in scenario {self.name}")
        return np.array([known[c] for c in products], dtype=np.int64)


def _codes(argument: str, codes: object) -> list[str]:
    """``codes`` (one code or several) as a list, refused with the argument's name when it is empty, holds
    something other than strings or names a code twice (a store or product counted twice would double
    its trips or split its demand)."""
    values = [codes] if isinstance(codes, str) else list(codes) if isinstance(codes, (list, tuple, np.ndarray)) else None
    if values is None or not all(isinstance(code, str) for code in values):
        raise RetailSimError(f"{argument}: one code or a list of codes, got {codes!r}")
    if not values:
        raise RetailSimError(f"{argument}: an empty list; name at least one code or pass None for the default")
    repeated = sorted(code for code, n in Counter(values).items() if n > 1)
    if repeated:
        raise RetailSimError(f"{argument}: {', '.join(repeated[:5])} given more than once")
    return values
