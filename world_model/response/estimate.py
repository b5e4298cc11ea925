"""Estimate the price and promotion response from the training weeks, shrunk toward a prior.

Per category (PROD_CODE_20), a fixed-effects Poisson regression (``poisson.fit_fixed_effects_poisson``)
of weekly zone units on log price and the promotion flag, with a product-zone effect and a category week
effect (``panel``). The elasticity is the log-price coefficient and the lift ``exp`` of the flag's: the
flag's coefficient is what a promotion adds beyond its discount, since the discounted price is in the
log price. Each estimate is combined with the normal prior of ``ResponseConfig`` by precision weights,

    posterior = w * estimate + (1 - w) * prior,     w = prior_sd^2 / (prior_sd^2 + se^2),

so a category the data identify poorly (few products, no price moves: large ``se``) leans on the prior
in proportion, and one with no within-series variation at all is the prior. ``w`` is reported as the
data weight with the standard error, the price variation, the promotion share and the counts.

The store-choice response is the same regression on the store panel: weekly trips on the store's log
price level, with store and week effects.

The placebo (``fit_category(..., placebo=True)``) adds a fake promotion flag on a random share of the
unpromoted zone-weeks whose regular price did not change: its fitted lift should be 1, and how far it is from 1
bounds how much a promotion flag with no real promotion behind it moves simulated demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from world_model.errors import RetailSimError
from world_model.response.config import ResponseConfig
from world_model.response.model import CategoryResponse, PriceResponse, StoreResponse
from world_model.response.panel import CategoryPanel, Panel, two_way_residual_sd
from world_model.response.poisson import fit_fixed_effects_poisson

UNCHANGED_PRICE = 1e-9
"""A regular log price within this of the previous week's counts as unchanged (placebo cells)."""


def shrink(estimate: float, se: float, prior: float, prior_sd: float) -> tuple[float, float]:
    """(posterior mean, data weight) of a normal estimate under a normal prior; no estimate -> prior."""
    if not (math.isfinite(estimate) and math.isfinite(se) and se > 0):
        return prior, 0.0
    weight = prior_sd**2 / (prior_sd**2 + se**2)
    return weight * estimate + (1.0 - weight) * prior, weight


@dataclass(frozen=True)
class CategoryFit:
    """Raw estimates of one category (``coef`` order: log price, promotion[, placebo])."""

    elasticity: float
    elasticity_se: float
    log_lift: float
    log_lift_se: float
    converged: bool
    placebo_log_lift: float = math.nan
    placebo_se: float = math.inf
    placebo_cells: int = 0


def placebo_flags(panel: CategoryPanel, share: float, rng: np.random.Generator) -> np.ndarray:
    """[G, W] fake promotion flags on ``share`` of the unpromoted weeks with an unchanged regular price.

    Eligibility reads the national regular price, never the zone's own price: a zone's price is only
    observed when it sold, so "its price did not change" would pick zero-sale weeks and fake a negative
    lift (measured: -41% on the synthetic market before this rule)."""
    unchanged = np.zeros(panel.log_price.shape, dtype=bool)
    unchanged[:, 1:] = np.abs(np.diff(panel.regular_log_price, axis=1)) < UNCHANGED_PRICE
    eligible = unchanged & (panel.promo == 0)
    return (eligible & (rng.random(eligible.shape) < share)).astype(np.float64)


def fit_category(panel: CategoryPanel, config: ResponseConfig, placebo: bool = False) -> CategoryFit:
    """Fit one category; ``placebo`` adds the fake flag (seeded by the config and the category name)."""
    regressors = [panel.log_price, panel.promo]
    if placebo:
        rng = np.random.default_rng([config.seed, *panel.category.encode()])
        fake = placebo_flags(panel, config.placebo_share, rng)
        regressors.append(fake)
    _, product_index = np.unique(panel.products, return_inverse=True)
    fit = fit_fixed_effects_poisson(panel.units, np.stack(regressors, axis=-1), product_index)
    extra = {}
    if placebo:
        extra = {"placebo_log_lift": float(fit.coef[2]), "placebo_se": float(fit.se[2]),
                 "placebo_cells": int(fake.sum())}  # fmt: skip
    (e, e_se), (b, b_se) = _estimate(fit, 0), _estimate(fit, 1)
    return CategoryFit(e, e_se, b, b_se, fit.converged, **extra)


def _estimate(fit, j: int) -> tuple[float, float]:
    """(coefficient, se) of regressor j, (nan, inf) when it is not identified."""
    return (float(fit.coef[j]), float(fit.se[j])) if math.isfinite(fit.se[j]) else (math.nan, math.inf)


def category_response(panel: CategoryPanel, fit: CategoryFit, config: ResponseConfig) -> CategoryResponse:
    """Shrink, clip and describe one category's fit.

    A wrong-signed estimate (demand rising with price, a promotion lowering demand) is not used: in
    transaction data it is the mark of a mismeasured price (LGSR has no shelf prices) or of prices set
    in response to demand, not a finding about shoppers, and a simulator given it would reward price
    rises without end. Such a category gets the prior and ``*_rejected`` is set."""
    reject_e = math.isfinite(fit.elasticity) and fit.elasticity > config.max_elasticity
    reject_l = math.isfinite(fit.log_lift) and math.exp(fit.log_lift) < config.min_lift
    elasticity, w_e = shrink(math.nan if reject_e else fit.elasticity, fit.elasticity_se, config.prior_elasticity,
                             config.prior_elasticity_sd)  # fmt: skip
    log_lift, w_l = shrink(math.nan if reject_l else fit.log_lift, fit.log_lift_se, math.log(config.prior_lift),
                           config.prior_log_lift_sd)  # fmt: skip
    return CategoryResponse(
        category=panel.category,
        elasticity=min(elasticity, config.max_elasticity),
        lift=max(math.exp(log_lift), config.min_lift),
        elasticity_estimate=fit.elasticity,
        elasticity_se=fit.elasticity_se,
        lift_estimate=math.exp(fit.log_lift) if math.isfinite(fit.log_lift) else math.nan,
        log_lift_se=fit.log_lift_se,
        elasticity_data_weight=w_e,
        lift_data_weight=w_l,
        products=int(len(np.unique(panel.products))),
        groups=int(panel.units.shape[0]),
        series_total=panel.series_total,
        weeks=int(panel.units.shape[1]),
        units=float(panel.units.sum()),
        price_variation=panel.price_variation(),
        promo_share=float(panel.promo.mean()) if panel.promo.size else 0.0,
        converged=fit.converged,
        elasticity_rejected=reject_e,
        lift_rejected=reject_l,
    )


def estimate_categories(panel: Panel, config: ResponseConfig, progress: bool = True) -> dict[str, CategoryResponse]:
    out = {}
    for name in tqdm(panel.categories, desc="price response", unit="category", disable=not progress or None):
        category = panel.category(name)
        out[name] = category_response(category, fit_category(category, config), config)
    return out


def estimate_store_response(store_panel: pd.DataFrame, loyalty: float, config: ResponseConfig) -> StoreResponse:
    """Weekly trips per store on its log price level (store and week effects), shrunk to the prior."""
    frame = store_panel.sort_values(["STORE_CODE", "week_index"])
    weeks = np.unique(frame["week_index"].to_numpy())
    stores = frame["STORE_CODE"].to_numpy()
    n_stores = len(np.unique(stores))
    if n_stores == 0 or len(frame) != n_stores * len(weeks):
        raise RetailSimError(f"response_store_panel.parquet: not a dense store x week panel ({len(frame)} rows, "
                             f"{n_stores} stores, {len(weeks)} weeks)")  # fmt: skip
    trips = frame["baskets"].to_numpy(np.float64).reshape(n_stores, len(weeks))
    level = frame["log_level"].to_numpy(np.float64).reshape(n_stores, len(weeks))
    sold = trips.sum(axis=0) > 0
    trips, level = trips[:, sold], level[:, sold]
    fit = fit_fixed_effects_poisson(trips, level[:, :, None], np.arange(len(trips)))
    estimate, se = _estimate(fit, 0)
    rejected = math.isfinite(estimate) and estimate > 0  # visits rising with the price level: see category_response
    elasticity, weight = shrink(math.nan if rejected else estimate, se, config.prior_store_elasticity,
                                config.prior_store_elasticity_sd)  # fmt: skip
    elasticity = min(elasticity, 0.0)
    return StoreResponse(
        elasticity=elasticity,
        # one store: no choice to tilt; otherwise the loyalty capped (ResponseConfig.max_loyalty)
        choice_sensitivity=0.0 if n_stores < 2 else -elasticity / (1.0 - min(loyalty, config.max_loyalty)),
        estimate=estimate,
        se=se,
        data_weight=weight,
        loyalty=loyalty,
        stores=int(trips.shape[0]),
        weeks=int(trips.shape[1]),
        level_variation=two_way_residual_sd(level),
        rejected=rejected,
    )


def estimate_response(panel: Panel, store_panel: pd.DataFrame, loyalty: float, config: ResponseConfig,
                      progress: bool = True) -> PriceResponse:  # fmt: skip
    """The whole response of a work directory's panels."""
    frame = panel.frame
    first = ~frame["PROD_CODE"].duplicated()
    product_category = dict(zip(frame["PROD_CODE"][first], frame["category"][first]))
    return PriceResponse(estimate_categories(panel, config, progress), product_category,
                         estimate_store_response(store_panel, loyalty, config), config)  # fmt: skip
