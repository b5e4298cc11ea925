"""``retailsim whatif``: the simulated change in units, revenue and profit of a price or promotion move.

``--set KEYS=CHANGE`` moves shelf prices (``+10%``, ``-5%``), ``--promo KEYS=DEPTH`` puts products on
promotion at a discount depth (``20%``); KEYS is a comma-separated list of product codes or categories
(PROD_CODE_20, meaning all of its products). Everything else stays at its reference price. The answer is
the expected weekly demand of ``response.simulate`` times ``weeks``, for the changed products, their
categories and the whole store (which also carries the store-choice effect of the new price level).
Units are leveled to the store's training-week sales (``world_model.response.history``): the baseline, at
reference prices without promotions, is those sales less the effect of the prices and promotions they
were sold at. Without a season that is an average week of the training weeks; with one
(``from_week``, ``DemandSimulator.season_factor``), the change runs over data weeks ``from_week ..
from_week + weeks - 1`` and each product's units follow its category's season index over those weeks,
leveled as the scenario bundles' seasonal market is, so a December promotion is weighed against
December's baseline. Unit costs are not in LGSR data: cost = (1 - margin) x reference price.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from world_model.errors import RetailSimError
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS
from world_model.response.simulate import DemandSimulator

MAX_PRODUCT_ROWS = 20
"""More changed products than this are shown by category only."""
_CHANGE = re.compile(r"^([+-]?\d+(?:\.\d+)?)%$")


def _percent(text: str, option: str) -> float:
    match = _CHANGE.match(text.strip())
    if not match:
        raise RetailSimError(f"{option}: {text!r} is not a percentage like +10% or -5%")
    return float(match.group(1)) / 100.0


def parse_moves(specs: list[str], option: str, simulator: DemandSimulator) -> dict[int, float]:
    """{vocabulary row: value} from ``KEY[,KEY...]=PERCENT`` arguments (a category key: all its products).
    A product's own value overrides its category's, whatever the order; the same product (or category)
    given two different values is refused, since which one wins would depend on the order."""
    by_category: dict[str, list[int]] = {}
    for i, code in enumerate(simulator.product_codes):
        by_category.setdefault(simulator.response.product_category.get(code, ""), []).append(i + PRODUCT_SPECIALS)
    given: dict[str, tuple[str, float]] = {}  # key -> (its text, value)
    for spec in specs:
        keys, sep, value = spec.partition("=")
        if not sep or not keys:
            raise RetailSimError(f"{option}: {spec!r} is not KEYS=PERCENT (e.g. PRD0900001,PRD0900002=+10%)")
        amount = _percent(value, option)
        for key in (k.strip() for k in keys.split(",")):
            if key in given and given[key][1] != amount:
                raise RetailSimError(f"{option}: {key} is given two values ({given[key][0]} and {value.strip()})")
            given[key] = (value.strip(), amount)
    moves: dict[int, float] = {}
    for key, (_, amount) in sorted(given.items(), key=lambda item: item[0] not in by_category):  # categories first
        if key in by_category and key:
            rows = by_category[key]
        else:
            try:
                rows = [simulator.product_row(key)]
            except RetailSimError:
                raise RetailSimError(f"{option}: {key} is neither a product code nor a category key of this work directory") from None
        moves.update(dict.fromkeys(rows, amount))
    return moves


def run_whatif(simulator: DemandSimulator, store_code: str, price_moves: dict[int, float],
               promo_depths: dict[int, float], weeks: int = 1, margin: float = 0.3,
               from_week: int | None = None) -> pd.DataFrame:  # fmt: skip
    """Rows per changed product, per touched category and for the store: baseline and scenario units,
    revenue and profit over ``weeks`` (from data week ``from_week``, each product's units times its
    ``DemandSimulator.season_factor``; None: an average training week)."""
    if weeks < 1:
        raise RetailSimError(f"--weeks must be >= 1, got {weeks}")
    if not 0.0 <= margin < 1.0:
        raise RetailSimError(f"--margin must be in [0, 1), got {margin}")
    threshold = simulator.response.config.promo_threshold  # shallower drops were never flagged promotions
    for row, depth in promo_depths.items():
        if not threshold < depth < 1.0:
            raise RetailSimError(f"--promo: depth {depth:.0%} of {simulator.product_codes[row - PRODUCT_SPECIALS]} must be in "
                                 f"({threshold:.0%}, 100%): the lifts were estimated on drops of more than {threshold:.0%}")  # fmt: skip
    for row, change in price_moves.items():
        if change <= -1.0:
            raise RetailSimError(f"--set: {change:+.0%} would make the price of {simulator.product_codes[row - PRODUCT_SPECIALS]} <= 0")
    demand = simulator.store_demand(simulator.store_row(store_code))
    n = len(demand.units_per_line)
    ratio, promoted = np.ones(n), np.zeros(n, dtype=bool)
    for row, change in price_moves.items():
        ratio[row] *= 1.0 + change
    for row, depth in promo_depths.items():
        ratio[row] *= 1.0 - depth
        promoted[row] = True
    scale = weeks * (1.0 if from_week is None else simulator.season_factor(demand, from_week, weeks))
    base_units = demand.expected_units() * scale
    new_units = demand.expected_units(ratio, promoted) * scale
    ref = demand.reference_price
    cost = (1.0 - margin) * ref
    frame = pd.DataFrame({
        "product": [""] * PRODUCT_SPECIALS + simulator.product_codes,
        "category": [""] * PRODUCT_SPECIALS + [simulator.response.product_category.get(c, "") for c in simulator.product_codes],
        "reference_price": ref, "price": ref * ratio, "promoted": promoted,
        "units_before": base_units, "units_after": new_units,
        "revenue_before": base_units * ref, "revenue_after": new_units * ref * ratio,
        "profit_before": base_units * (ref - cost), "profit_after": new_units * (ref * ratio - cost),
    }).iloc[PRODUCT_SPECIALS:]  # fmt: skip
    changed = sorted(set(price_moves) | set(promo_depths))
    products = frame.loc[changed].assign(level="product")
    touched = products["category"].unique()
    if len(products) > MAX_PRODUCT_ROWS:  # a whole category was moved: its row says it all
        products = products.iloc[:0]
    sums = ["units_before", "units_after", "revenue_before", "revenue_after", "profit_before", "profit_after"]
    categories = frame[frame["category"].isin(touched)].groupby("category", as_index=False)[sums].sum()
    store = frame[sums].sum().to_frame().T.assign(level="store", product=store_code)
    table = pd.concat([products, categories.assign(level="category"), store], ignore_index=True)
    table["units_change"] = table["units_after"] / table["units_before"].where(table["units_before"] > 0) - 1
    return table


def format_whatif(table: pd.DataFrame, weeks: int, from_week: int | None = None) -> str:
    """A plain-text table for the terminal."""
    span = f"over {weeks} week{'s' if weeks > 1 else ''}" + (f" from data week {from_week}" if from_week else "")
    lines = [f"{'level':<9} {'product / category':<22} {'price':>13} {'units':>21} {'change':>8} "
             f"{'revenue change':>15} {'profit change':>14}   ({span})"]  # fmt: skip
    for _, r in table.iterrows():
        name = r["product"] if r["level"] != "category" else r["category"]
        price = f"{r['reference_price']:.2f}->{r['price']:.2f}" if r["level"] == "product" else ""
        if r["level"] == "product" and r["promoted"]:
            price += "*"
        units = f"{r['units_before']:.1f}->{r['units_after']:.1f}"
        change = f"{r['units_change']:+.1%}" if np.isfinite(r["units_change"]) else "n/a"
        lines.append(f"{r['level']:<9} {name:<22} {price:>13} {units:>21} {change:>8} "
                     f"{r['revenue_after'] - r['revenue_before']:>+15.2f} {r['profit_after'] - r['profit_before']:>+14.2f}")  # fmt: skip
    seasons = "with the season index of those weeks" if from_week else "an average training week, no season"
    lines.append("* on promotion; costs = (1 - margin) x reference price; units leveled to the store's training-week "
                 f"sales, {seasons} (docs/price_response.md)")
    return "\n".join(lines)
