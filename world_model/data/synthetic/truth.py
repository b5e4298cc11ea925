"""Ground truth of a generated market: the parameters that produced the data, as parquet and json.

``ground_truth/`` holds

* ``products.parquet`` - codes, tier, base price, unit cost, true elasticity and promotion lift (the
  department's), popularity, multipack share and mean quantity;
* ``categories.parquet`` - one row per department (PROD_CODE_20, the category of the price response)
  with its true elasticity, lift, seasonality and Christmas flag;
* ``stores.parquet`` - format, region, price index, format traffic weight;
* ``customers.parquet`` - every shopper (card-less ones with ``anonymous`` true and no CUST_CODE):
  segments, price sensitivity, visit rate, mission probabilities, repertoire share, habits, store
  network (codes and pulls) and repertoire (codes and weights);
* ``weeks.parquet`` (calendar, traffic factor), ``seasonality.parquet`` (department x week factor);
* ``price_changes.parquet`` - (PROD_CODE, SHOP_WEEK, regular_multiplier) at every permanent change;
* ``promotions.parquet`` - (SHOP_WEEK, STORE_REGION, PROD_CODE, promo_depth) for every promotion;
  with the two, the shelf price of any store-product-week follows ``pricing.shelf_prices``;
* ``defects.json`` (+ ``defects.parquet`` with the file row of each defect), ``config.json``,
  ``model.json`` (the model's equations and scalar parameters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from world_model.errors import RetailSimError
from world_model.pipeline.product_graph import NODES

from . import baskets as bk
from .catalog import KIND_NAMES, TIER_NAMES
from .market import BASKET_ID_BASE, BASKETS_PER_WEEK_MAX, SyntheticMarket
from .population import MISSION_NAMES, SEG1_NAMES, SEG2_NAMES
from .stores import FORMAT_NAMES, REGION_NAMES

if TYPE_CHECKING:
    from world_model.pipeline.loader import PreparedData


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def products_table(market: SyntheticMarket) -> pa.Table:
    cat = market.catalog
    return pa.table({
        "PROD_CODE": cat.prod_code,
        "PROD_CODE_10": cat.class_code[cat.product_class],
        "PROD_CODE_20": cat.dept_code[cat.product_dept],
        "PROD_CODE_30": cat.group_code[cat.product_group],
        "PROD_CODE_40": cat.division_code[cat.product_division],
        "price_tier": np.asarray(TIER_NAMES)[cat.tier],
        "division_kind": np.asarray(KIND_NAMES)[cat.product_kind],
        "base_price": cat.base_price,
        "unit_cost": cat.unit_cost,
        "elasticity": cat.elasticity,
        "promo_lift": cat.promo_lift,
        "popularity": cat.popularity,
        "multipack_share": cat.multipack,
        "mean_quantity": cat.mean_quantity,
    })


def categories_table(market: SyntheticMarket) -> pa.Table:
    cat = market.catalog
    n_products = np.bincount(cat.product_dept, minlength=len(cat.dept_code))
    group = cat.dept_group
    return pa.table({
        "PROD_CODE_20": cat.dept_code,
        "PROD_CODE_30": cat.group_code[group],
        "PROD_CODE_40": cat.division_code[cat.group_division[group]],
        "division_kind": np.asarray(KIND_NAMES)[cat.division_kind[cat.group_division[group]]],
        "elasticity": cat.dept_elasticity,
        "promo_lift": cat.dept_promo_lift,
        "seasonal_amplitude": cat.dept_season_amplitude,
        "seasonal_phase": cat.dept_season_phase,
        "christmas_peak": np.where(cat.dept_christmas, cat.christmas_peak, 1.0),
        "n_products": n_products,
    })


def stores_table(market: SyntheticMarket) -> pa.Table:
    st = market.stores
    return pa.table({
        "STORE_CODE": st.code,
        "STORE_FORMAT": np.asarray(FORMAT_NAMES)[st.format],
        "STORE_REGION": np.asarray(REGION_NAMES)[st.region],
        "price_index": st.price_index,
        "format_traffic": st.traffic,
    })


def _list_column(values: np.ndarray, keep: np.ndarray, labels: np.ndarray | None = None) -> pa.Array:
    """[N, K] matrix -> list array of the entries where ``keep`` (row-major); ``labels[values]`` if given."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))
    flat = pa.array(values[keep])
    if labels is not None:
        flat = pa.array(labels).take(flat)
    return pa.ListArray.from_arrays(offsets, flat)


def customers_table(market: SyntheticMarket) -> pa.Table:
    pop = market.population
    anonymous = pop.anonymous
    used = pop.store_pull > 0
    all_reps = np.ones_like(pop.repertoire, dtype=bool)
    return pa.table({
        "customer_index": np.arange(pop.n_total),
        "CUST_CODE": pa.array(pop.code, pa.string(), mask=anonymous),
        "anonymous": anonymous,
        "seg_1": np.asarray(SEG1_NAMES)[pop.seg1],
        "seg_2": np.asarray(SEG2_NAMES)[pop.seg2],
        "price_sensitivity": pop.price_sensitivity,
        "store_price_sensitivity": market.config.store_price_sensitivity * pop.price_sensitivity,
        "tier_taste_LA": pop.tier_taste[:, 0],
        "tier_taste_MM": pop.tier_taste[:, 1],
        "tier_taste_UM": pop.tier_taste[:, 2],
        "visit_rate": pop.visit_rate,
        "p_top_up": pop.mission_probs[:, 0],
        "p_small_shop": pop.mission_probs[:, 1],
        "p_full_shop": pop.mission_probs[:, 2],
        "expected_items_scale": pop.mission_probs @ np.asarray(market.config.mission_items),
        "repertoire_share": pop.repertoire_share,
        "habit_hour": pop.habit_hour,
        "weekday_probs_mon_to_sun": _list_column(pop.weekday_probs, np.ones_like(pop.weekday_probs, bool)),
        "home_store": market.stores.code[pop.store_slots[:, 0]],
        "stores": _list_column(pop.store_slots, used, market.stores.code),
        "store_pull": _list_column(pop.store_pull, used),
        "repertoire": _list_column(pop.repertoire, all_reps, market.catalog.prod_code),
        "repertoire_weight": _list_column(pop.repertoire_weight, all_reps),
    })


def weeks_tables(market: SyntheticMarket) -> tuple[pa.Table, pa.Table]:
    cal = market.calendar()
    weeks = pa.table({
        "week_index": np.arange(len(cal)),
        "SHOP_WEEK": [w.shop_week for w in cal],
        "date_from": [w.date_from for w in cal],
        "date_to": [w.date_to for w in cal],
        "traffic": [market.traffic(i) for i in range(len(cal))],
    })
    cat = market.catalog
    season = np.stack([cat.dept_season(w.date_from) for w in cal])  # [W, n_dept]
    seasonality = pa.table({
        "SHOP_WEEK": np.repeat([w.shop_week for w in cal], len(cat.dept_code)),
        "PROD_CODE_20": np.tile(cat.dept_code, len(cal)),
        "season": season.ravel(),
    })
    return weeks, seasonality


def price_changes_table(market: SyntheticMarket) -> pa.Table:
    path = market.regular_path[: market.config.weeks]
    changed = np.zeros_like(path, dtype=bool)
    changed[1:] = path[1:] != path[:-1]
    week, prod = np.nonzero(changed)
    cal = market.calendar()
    return pa.table({
        "PROD_CODE": market.catalog.prod_code[prod],
        "week_index": week,
        "SHOP_WEEK": np.asarray([w.shop_week for w in cal])[week] if len(week) else np.zeros(0, np.int64),
        "regular_multiplier": path[week, prod],
    })


class PromotionLog:
    """Collects the promotion schedule week by week (only the promotions, compactly)."""

    def __init__(self) -> None:
        self._parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, shop_week: int, depth_by_region: np.ndarray) -> None:
        region, prod = np.nonzero(depth_by_region)
        self._parts.append((shop_week, region, prod, depth_by_region[region, prod]))

    def table(self, market: SyntheticMarket) -> pa.Table:
        weeks = np.concatenate([np.full(len(p[1]), p[0]) for p in self._parts]) if self._parts else np.zeros(0)
        region = np.concatenate([p[1] for p in self._parts]) if self._parts else np.zeros(0, np.int64)
        prod = np.concatenate([p[2] for p in self._parts]) if self._parts else np.zeros(0, np.int64)
        depth = np.concatenate([p[3] for p in self._parts]) if self._parts else np.zeros(0)
        return pa.table({
            "SHOP_WEEK": weeks.astype(np.int32),
            "STORE_REGION": np.asarray(REGION_NAMES)[region],
            "PROD_CODE": market.catalog.prod_code[prod],
            "promo_depth": depth,
        })


def model_description(market: SyntheticMarket) -> dict[str, Any]:
    cfg = market.config
    return {
        "demand_multiplier": "m[s,p] = (price[s,p]/base_price[p])**elasticity[p] * promo_lift[p]**[promo_depth>0]"
                             " * season[dept(p), week]",
        "expected_units": "E[U(s,p)] = mean_quantity[p] * m[s,p] * sum_c visit_rate[c]*traffic[week]*P_c(s)"
                          "*expected_items_scale[c]*(repertoire_share[c]*r[c,p] + (1-repertoire_share[c])*popularity[p])",
        "store_choice": "P_c(s_k) ~ store_pull[c,k] * level[s_k]**(-store_price_sensitivity[c]), level[s] = "
                        "exp(sum_p popularity[p]*log(price[s,p]/base_price[p]))",
        "shelf_price": "round(round(base_price*price_index*regular_multiplier, 2)*(1-promo_depth), 2)",
        "own_price_elasticity_of_expected_units": "exactly elasticity[p] at fixed store traffic; plus the store-"
                                                  "choice term -eta_c*popularity[p]*(1-P_c(s)) through level[s]",
        "missions": list(MISSION_NAMES),
        "mission_items": list(cfg.mission_items),
        "mission_dispersion": list(cfg.mission_dispersion),
        "basket_size_rule": "S: 1-2 items, M: 3-6, L: 7+; Full Shop always L",
        "dominant_mission_rule": f"kind with >= {bk.DOMINANCE} of lines, else Mixed",
        "price_sensitivity_rule": f"mean tier score (LA -1, MM 0, UM +1) < {bk.LA_CUT}: LA, > {bk.UM_CUT}: UM",
        "unknown_label_share": cfg.unknown_label_share,
        "basket_id": f"{BASKET_ID_BASE} + week_index * {BASKETS_PER_WEEK_MAX} + n (n = 1.. within the week)",
        "hidden_customers": cfg.hidden_customers,
    }


def write_ground_truth(market: SyntheticMarket, out: Path, promotions: PromotionLog, defects: dict[str, Any],
                       defect_rows: pa.Table) -> None:
    """Write every ground-truth file of ``market`` into ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(products_table(market), out / "products.parquet")
    pq.write_table(categories_table(market), out / "categories.parquet")
    pq.write_table(stores_table(market), out / "stores.parquet")
    pq.write_table(customers_table(market), out / "customers.parquet")
    weeks, seasonality = weeks_tables(market)
    pq.write_table(weeks, out / "weeks.parquet")
    pq.write_table(seasonality, out / "seasonality.parquet")
    pq.write_table(price_changes_table(market), out / "price_changes.parquet")
    pq.write_table(promotions.table(market), out / "promotions.parquet")
    pq.write_table(defect_rows, out / "defects.parquet")
    write_json(out / "defects.json", defects)
    write_json(out / "config.json", market.config.to_dict())
    write_json(out / "model.json", model_description(market))


HIERARCHY = ("PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40")


def check_truth_matches(ground_truth: Path, data: PreparedData, flag: str = "--ground-truth") -> None:
    """Refuse (``RetailSimError`` naming ``flag``) a generator's ``ground_truth/`` that is not the market
    the pipeline work directory of ``data`` was built from: its products (codes and hierarchy), stores and
    weeks must cover the work directory's. A scenario built over another market's truth had an oracle that
    crashed or, where the codes happened to agree (generated markets share their code layout), silently
    ran the wrong market: 82% of another seed's products sit in other departments."""
    ground_truth, workdir = Path(ground_truth), data.workdir
    named = f"{flag}: {ground_truth}"
    missing = [name for name in ("config.json", "products.parquet", "stores.parquet", "weeks.parquet")
               if not (ground_truth / name).exists()]  # fmt: skip
    if missing:
        raise RetailSimError(f"{named} has no {', '.join(missing)} (not a generator's ground_truth/)")
    products = pd.read_parquet(ground_truth / "products.parquet", columns=["PROD_CODE", *HIERARCHY]).set_index("PROD_CODE")
    ours = pd.read_parquet(workdir / "processed" / NODES, columns=["PROD_CODE", *HIERARCHY])
    absent = ours.loc[~ours["PROD_CODE"].isin(products.index), "PROD_CODE"]
    if len(absent):
        raise RetailSimError(f"{named}: {len(absent)} of {len(ours)} products of {workdir} are not in it (e.g. "
                             f"{absent.iloc[0]}): another market's ground truth")  # fmt: skip
    moved = (products.loc[ours["PROD_CODE"], list(HIERARCHY)].to_numpy() != ours[list(HIERARCHY)].to_numpy()).any(1)
    if moved.any():
        raise RetailSimError(f"{named}: {int(moved.sum())} of {len(ours)} products of {workdir} sit elsewhere in its "
                             f"product hierarchy (e.g. {ours['PROD_CODE'].iloc[int(np.argmax(moved))]}): another "
                             "market's ground truth")  # fmt: skip
    stores = set(pd.read_parquet(ground_truth / "stores.parquet", columns=["STORE_CODE"])["STORE_CODE"])
    absent_stores = [code for code in data.vocab["stores"]["codes"] if code not in stores]
    if absent_stores:
        raise RetailSimError(f"{named}: {len(absent_stores)} stores of {workdir} are not in it (e.g. {absent_stores[0]})")
    mondays = pd.to_datetime(pd.read_parquet(ground_truth / "weeks.parquet", columns=["date_from"])["date_from"])
    start = pd.Timestamp(data.first_monday)
    end = start + pd.Timedelta(weeks=data.n_weeks - 1)
    if start < mondays.min() or end > mondays.max():
        raise RetailSimError(f"{named} covers the weeks of {mondays.min().date()} to {mondays.max().date()}, "
                             f"{workdir} those of {start.date()} to {end.date()}")  # fmt: skip
