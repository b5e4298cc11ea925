import math

import numpy as np
import pandas as pd
import pytest

from world_model.response.config import ResponseConfig
from world_model.response.estimate import category_response, estimate_store_response, fit_category, placebo_flags, shrink
from world_model.response.panel import CategoryPanel


def test_shrink_weights_the_estimate_by_its_precision() -> None:
    assert shrink(-3.0, 1e-6, -2.0, 0.75)[0] == pytest.approx(-3.0, abs=1e-6)
    assert shrink(-3.0, math.inf, -2.0, 0.75) == (-2.0, 0.0)
    assert shrink(math.nan, 0.1, -2.0, 0.75) == (-2.0, 0.0)
    posterior, weight = shrink(-3.0, 0.75, -2.0, 0.75)  # se = prior sd: half the weight
    assert weight == pytest.approx(0.5) and posterior == pytest.approx(-2.5)


def _category(rng, elasticity=-1.6, lift=1.5, groups=400, weeks=40, price_sd=0.08) -> CategoryPanel:
    regular = np.cumsum(rng.normal(0, price_sd, (groups, weeks)) * (rng.random((groups, weeks)) < 0.05), axis=1)
    promo = (rng.random((groups, weeks)) < 0.12).astype(float)
    log_price = regular + np.log1p(-0.25 * promo)
    alpha = np.exp(rng.normal(0, 1, groups))
    units = rng.poisson(alpha[:, None] * np.exp(elasticity * log_price + math.log(lift) * promo)).astype(float)
    products = np.array([f"P{g // 4:04d}" for g in range(groups)])
    return CategoryPanel("C1", products, np.arange(1, weeks + 1), units, log_price, promo, regular)


def test_fit_and_response_recover_a_known_category() -> None:
    panel = _category(np.random.default_rng(3))
    config = ResponseConfig()
    fit = fit_category(panel, config)
    assert fit.elasticity == pytest.approx(-1.6, abs=4 * fit.elasticity_se)
    assert math.exp(fit.log_lift) == pytest.approx(1.5, rel=0.1)
    response = category_response(panel, fit, config)
    assert response.elasticity_data_weight > 0.9
    assert response.products == 100 and response.groups == 400


def test_a_category_without_price_variation_is_the_prior() -> None:
    rng = np.random.default_rng(4)
    panel = _category(rng)
    flat = CategoryPanel("C2", panel.products, panel.weeks, panel.units, np.zeros_like(panel.log_price),
                         np.zeros_like(panel.promo), np.zeros_like(panel.log_price))  # fmt: skip
    config = ResponseConfig(prior_elasticity=-2.2, prior_lift=1.25)
    response = category_response(flat, fit_category(flat, config), config)
    assert response.elasticity == -2.2 and response.lift == pytest.approx(1.25)
    assert response.elasticity_data_weight == 0.0 and math.isnan(response.elasticity_estimate)


def test_wrong_signed_estimates_are_replaced_by_the_prior() -> None:
    panel = _category(np.random.default_rng(5), elasticity=1.0, lift=0.6)
    config = ResponseConfig()
    response = category_response(panel, fit_category(panel, config), config)
    assert response.elasticity_estimate > 0 and response.elasticity == config.prior_elasticity
    assert response.lift_estimate < 1 and response.lift == pytest.approx(config.prior_lift)
    assert response.elasticity_rejected and response.lift_rejected and response.elasticity_data_weight == 0


def test_placebo_flags_only_unpromoted_weeks_with_an_unchanged_regular_price() -> None:
    rng = np.random.default_rng(6)
    panel = _category(rng)
    flags = placebo_flags(panel, 0.5, np.random.default_rng(0)).astype(bool)
    changed = np.zeros_like(flags)
    changed[:, 1:] = np.diff(panel.regular_log_price, axis=1) != 0
    assert flags.any()
    assert not (flags & (panel.promo > 0)).any() and not (flags & changed).any() and not flags[:, 0].any()


def test_placebo_lift_of_a_fake_flag_is_near_one() -> None:
    panel = _category(np.random.default_rng(7), groups=800)
    fit = fit_category(panel, ResponseConfig(), placebo=True)
    assert fit.placebo_cells > 0
    assert abs(math.expm1(fit.placebo_log_lift)) < max(0.03, 3 * fit.placebo_se)


def _store_panel(n_stores: int, weeks: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"STORE_CODE": f"S{s}", "week_index": w, "baskets": int(rng.poisson(200)), "log_level": rng.normal(0, 0.02)}
            for s in range(n_stores) for w in range(weeks)]  # fmt: skip
    return pd.DataFrame(rows)


def test_store_choice_sensitivity_is_zero_for_one_store_and_bounded_near_full_loyalty() -> None:
    config = ResponseConfig()
    single = estimate_store_response(_store_panel(1), loyalty=1.0, config=config)
    assert single.choice_sensitivity == 0.0
    loyal = estimate_store_response(_store_panel(4), loyalty=0.98, config=config)
    assert loyal.choice_sensitivity == pytest.approx(-loyal.elasticity / (1 - config.max_loyalty))
    usual = estimate_store_response(_store_panel(4), loyalty=0.7, config=config)
    assert usual.choice_sensitivity == pytest.approx(-usual.elasticity / 0.3)
