"""The product catalog: a 4-level hierarchy with LGSR-style codes and the true demand parameters.

Hierarchy (LGSR naming): division ``D00001`` (PROD_CODE_40) > group ``G00001`` (_30) > department
``DEP00001`` (_20) > class ``CL00001`` (_10) > product ``PRD0900001``. At the default size the counts
are the real ones (9 / 31 / 90 / 250 for 5000 products, divisions sized like the real ones); smaller
catalogs scale them down with small floors so that tests still see several categories.

A department is the *category* of the price response: every product of a department shares its true
own-price elasticity (in [-3, -1]) and promotion lift, so the truth is one number per category and
can be recovered from data by pooling the category's products. Per product the catalog holds a base
price (near real LGSR price levels, by division and price tier LA/MM/UM), a unit cost (20-40% margin),
a long-tailed popularity (lognormal, cheaper products more popular) and a quantity profile (mostly 1,
multi-buys mostly 3, as in LGSR). Departments carry an annual seasonality and some a Christmas peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .calendar import days_to_christmas
from .config import MarketConfig

TIER_NAMES: tuple[str, ...] = ("LA", "MM", "UM")
KIND_NAMES: tuple[str, ...] = ("Fresh", "Grocery", "Nonfood")

# The real LGSR sample's divisions: products, groups, departments and classes per division, the
# division's price level relative to the food divisions and its kind (for BASKET_DOMINANT_MISSION).
_REF_DIVISION_PRODUCTS = (379, 1787, 1779, 131, 728, 6, 1, 162, 20)
_REF_DIVISION_GROUPS = (3, 6, 7, 4, 3, 2, 1, 3, 2)
_REF_DIVISION_DEPTS = (7, 26, 22, 11, 10, 3, 1, 8, 2)
_REF_DIVISION_CLASSES = (22, 78, 68, 26, 30, 3, 1, 18, 4)
_REF_DIVISION_PRICE = (0.9, 1.3, 1.0, 2.6, 1.0, 3.4, 6.8, 6.8, 1.4)
_REF_DIVISION_KIND = (0, 0, 1, 2, 0, 2, 2, 2, 1)

# Quantity of a multi-unit line (LGSR: quantity is mostly 1, then 3, rarely 2).
MULTI_QUANTITIES = np.array([2, 3, 4, 5, 6, 8, 10, 12], dtype=np.int32)
MULTI_QUANTITY_PROBS = np.array([0.03, 0.63, 0.12, 0.05, 0.09, 0.04, 0.02, 0.02])


@dataclass(frozen=True)
class Catalog:
    """Products (index = PROD_CODE order) and departments, with their true parameters."""

    prod_code: np.ndarray  # [P] str
    class_code: np.ndarray  # [n_class] str (CL.....)
    dept_code: np.ndarray  # [n_dept] str (DEP.....)
    group_code: np.ndarray  # [n_group] str (G.....)
    division_code: np.ndarray  # [n_div] str (D.....)
    product_class: np.ndarray  # [P] int, index into class_code
    class_dept: np.ndarray  # [n_class] int
    dept_group: np.ndarray  # [n_dept] int
    group_division: np.ndarray  # [n_group] int
    division_kind: np.ndarray  # [n_div] int, index into KIND_NAMES
    tier: np.ndarray  # [P] int, index into TIER_NAMES
    base_price: np.ndarray  # [P] float, cents
    unit_cost: np.ndarray  # [P] float
    popularity: np.ndarray  # [P] float, sums to 1
    multipack: np.ndarray  # [P] float, P(line is multi-unit)
    dept_elasticity: np.ndarray  # [n_dept] float in elasticity_range
    dept_promo_lift: np.ndarray  # [n_dept] float
    dept_season_amplitude: np.ndarray  # [n_dept]
    dept_season_phase: np.ndarray  # [n_dept]
    dept_christmas: np.ndarray  # [n_dept] bool
    christmas_peak: float

    @property
    def n_products(self) -> int:
        return len(self.prod_code)

    @property
    def product_dept(self) -> np.ndarray:
        return self.class_dept[self.product_class]

    @property
    def product_group(self) -> np.ndarray:
        return self.dept_group[self.product_dept]

    @property
    def product_division(self) -> np.ndarray:
        return self.group_division[self.product_group]

    @property
    def product_kind(self) -> np.ndarray:
        return self.division_kind[self.product_division]

    @property
    def elasticity(self) -> np.ndarray:
        """[P] true own-price elasticity of each product (its department's)."""
        return self.dept_elasticity[self.product_dept]

    @property
    def promo_lift(self) -> np.ndarray:
        """[P] true promotion lift of each product (its department's)."""
        return self.dept_promo_lift[self.product_dept]

    @property
    def mean_quantity(self) -> np.ndarray:
        """[P] expected quantity of a line of each product."""
        multi_mean = float(MULTI_QUANTITIES @ MULTI_QUANTITY_PROBS)
        return 1.0 + self.multipack * (multi_mean - 1.0)

    def dept_season(self, monday: date) -> np.ndarray:
        """[n_dept] demand multiplier of each department in the week starting ``monday``."""
        t = (monday - date(monday.year, 1, 1)).days / 365.25
        factor = 1.0 + self.dept_season_amplitude * np.sin(2 * np.pi * t + self.dept_season_phase)
        to_xmas = days_to_christmas(monday)
        if 7 <= to_xmas <= 21:
            bump = self.christmas_peak
        elif to_xmas < 7:
            bump = 1.0 + 0.5 * (self.christmas_peak - 1.0)
        else:
            bump = 1.0
        return factor * np.where(self.dept_christmas, bump, 1.0)


def hierarchy_counts(config: MarketConfig) -> tuple[int, int, int, int]:
    """(divisions, groups, departments, classes) for the config's catalog size, nested and >= 1."""
    n_prod = config.products
    scale = n_prod / config.reference_products
    ref_d, ref_g, ref_dep, ref_cl = config.hierarchy

    def clamp(ref: int, floor: int, cap: int) -> int:
        scaled = round(ref * min(scale, 1.0))
        return int(min(cap, max(floor, scaled)))

    n_cl = clamp(ref_cl, 6, n_prod)
    n_dep = clamp(ref_dep, 4, n_cl)
    n_g = clamp(ref_g, 3, n_dep)
    n_d = clamp(ref_d, 2, n_g)
    return n_d, n_g, n_dep, n_cl


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest-remainder rounding)."""
    if total <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    share = total * weights / weights.sum()
    base = np.floor(share).astype(np.int64)
    left = total - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")
    base[order[:left]] += 1
    return base


def _reference_weights(ref: tuple[float, ...], n: int) -> np.ndarray:
    """First ``n`` reference division weights (cycled if more divisions than the reference)."""
    return np.array([ref[i % len(ref)] for i in range(n)], dtype=float)


def _assign_children(
    n_children: int, n_parents: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """Parent index of each child so that every parent gets at least one child (n_children >= n_parents)."""
    parent = np.empty(n_children, dtype=np.int64)
    parent[:n_parents] = np.arange(n_parents)
    if n_children > n_parents:
        p = None if weights is None else weights / weights.sum()
        parent[n_parents:] = rng.choice(n_parents, size=n_children - n_parents, p=p)
    return np.sort(parent, kind="stable")


def _build_tree(config: MarketConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Nested hierarchy: parent index per group, department, class and product (products unshuffled)."""
    n_d, n_g, n_dep, n_cl = hierarchy_counts(config)
    n_p = config.products
    w_prod = _reference_weights(_REF_DIVISION_PRODUCTS, n_d)
    g_per_d = 1 + _largest_remainder(n_g - n_d, _reference_weights(_REF_DIVISION_GROUPS, n_d))
    dep_per_d = g_per_d + _largest_remainder(n_dep - n_g, _reference_weights(_REF_DIVISION_DEPTS, n_d))
    cl_per_d = dep_per_d + _largest_remainder(n_cl - n_dep, _reference_weights(_REF_DIVISION_CLASSES, n_d))
    p_per_d = cl_per_d + _largest_remainder(n_p - n_cl, w_prod)

    group_div, dept_group, class_dept, prod_class = [], [], [], []
    g0 = dep0 = cl0 = 0
    for d in range(n_d):
        group_div.append(np.full(g_per_d[d], d))
        dept_group.append(g0 + _assign_children(dep_per_d[d], g_per_d[d], rng))
        class_dept.append(dep0 + _assign_children(cl_per_d[d], dep_per_d[d], rng))
        class_size = rng.lognormal(0.0, 0.8, size=cl_per_d[d])
        prod_class.append(cl0 + _assign_children(p_per_d[d], cl_per_d[d], rng, class_size))
        g0 += g_per_d[d]
        dep0 += dep_per_d[d]
        cl0 += cl_per_d[d]
    return {
        "group_division": np.concatenate(group_div),
        "dept_group": np.concatenate(dept_group),
        "class_dept": np.concatenate(class_dept),
        "product_class": np.concatenate(prod_class),
    }


def _codes(prefix: str, n: int, width: int = 5) -> np.ndarray:
    return np.array([f"{prefix}{i + 1:0{width}d}" for i in range(n)])


def product_codes(n: int) -> np.ndarray:
    """LGSR product codes PRD0900001, PRD0900002, ..."""
    return np.array([f"PRD{900000 + i + 1:07d}" for i in range(n)])


def _scaled_beta(rng: np.random.Generator, lo: float, hi: float, a: float, b: float, n: int) -> np.ndarray:
    return lo + (hi - lo) * rng.beta(a, b, size=n)


def build_catalog(config: MarketConfig, rng: np.random.Generator) -> Catalog:
    """Draw the catalog of ``config`` from ``rng`` (deterministic given the generator state)."""
    tree = _build_tree(config, rng)
    n_p = config.products
    # PROD_CODE numbering is a random permutation of the hierarchy order (codes do not reveal the tree).
    perm = rng.permutation(n_p)
    product_class = tree["product_class"][perm]
    n_d = len(np.unique(tree["group_division"]))
    n_dep = len(tree["dept_group"])
    n_cl = len(tree["class_dept"])

    division = tree["group_division"][tree["dept_group"][tree["class_dept"][product_class]]]
    div_price = _reference_weights(_REF_DIVISION_PRICE, n_d)
    class_level = config.price_median * np.exp(rng.normal(0.0, config.price_class_sd, size=n_cl))
    tier = rng.choice(3, size=n_p, p=np.asarray(config.tier_shares) / sum(config.tier_shares))
    raw = (
        class_level[product_class]
        * div_price[division]
        * np.asarray(config.tier_price_factors)[tier]
        * np.exp(rng.normal(0.0, config.price_product_sd, size=n_p))
    )
    base_price = np.maximum(np.round(raw, 2), 0.05)
    margin = rng.uniform(*config.margin_range, size=n_p)
    unit_cost = np.round(base_price * (1.0 - margin), 4)

    rel_price = base_price / config.price_median
    popularity = rng.lognormal(0.0, config.popularity_sigma, size=n_p) * rel_price ** -config.popularity_price_power
    popularity /= popularity.sum()

    m = config.multipack_share
    multipack = rng.beta(4.0 * m / (1 - m) if m > 0 else 1.0, 4.0, size=n_p) if m > 0 else np.zeros(n_p)
    multipack = np.clip(multipack * rel_price ** -0.3, 0.0, 0.9)
    if m > 0:  # rescale so the popularity-weighted multipack share is the configured one
        multipack = np.clip(multipack * m / float(popularity @ multipack), 0.0, 0.9)

    dept_elasticity = np.round(_scaled_beta(rng, *config.elasticity_range, 2.0, 2.5, n_dep), 4)
    dept_promo_lift = np.round(_scaled_beta(rng, *config.promo_lift_range, 2.0, 2.0, n_dep), 4)
    amplitude = rng.uniform(0.0, config.seasonal_amplitude, size=n_dep)
    phase = rng.uniform(0.0, 2 * np.pi, size=n_dep)
    n_xmas = int(round(config.christmas_share * n_dep))
    if config.christmas_share > 0 and n_dep >= 3:
        n_xmas = max(n_xmas, 1)
    christmas = np.zeros(n_dep, dtype=bool)
    christmas[rng.choice(n_dep, size=n_xmas, replace=False)] = True

    return Catalog(
        prod_code=product_codes(n_p),
        class_code=_codes("CL", n_cl),
        dept_code=_codes("DEP", n_dep),
        group_code=_codes("G", len(tree["group_division"])),
        division_code=_codes("D", n_d),
        product_class=product_class,
        class_dept=tree["class_dept"],
        dept_group=tree["dept_group"],
        group_division=tree["group_division"],
        division_kind=np.array([_REF_DIVISION_KIND[i % len(_REF_DIVISION_KIND)] for i in range(n_d)]),
        tier=tier,
        base_price=base_price,
        unit_cost=unit_cost,
        popularity=popularity,
        multipack=multipack,
        dept_elasticity=dept_elasticity,
        dept_promo_lift=dept_promo_lift,
        dept_season_amplitude=amplitude,
        dept_season_phase=phase,
        dept_christmas=christmas,
        christmas_peak=config.christmas_peak,
    )
