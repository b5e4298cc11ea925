import numpy as np

from world_model.response.poisson import fit_fixed_effects_poisson


def _panel(rng, groups=600, weeks=30, coef=(-2.0, 0.5)):
    alpha = np.exp(rng.normal(-0.5, 1.0, groups))
    delta = rng.normal(0, 0.3, weeks)
    log_price = rng.normal(0, 0.1, (groups, weeks))
    promo = (rng.random((groups, weeks)) < 0.15).astype(float)
    log_price -= 0.25 * promo
    x = np.stack([log_price, promo], -1)
    y = rng.poisson(alpha[:, None] * np.exp(delta + x @ np.asarray(coef)))
    return y, x, delta


def test_recovers_coefficients_and_week_effects_within_their_standard_errors() -> None:
    y, x, delta = _panel(np.random.default_rng(0))
    fit = fit_fixed_effects_poisson(y, x, np.arange(len(y)) // 5)
    assert fit.converged
    assert np.all(np.abs(fit.coef - [-2.0, 0.5]) < 4 * fit.se)
    assert np.all(fit.se < 0.2)
    assert np.allclose(fit.week_effects - fit.week_effects.mean(), delta - delta.mean(), atol=0.15)


def test_zero_groups_are_dropped_and_a_regressor_constant_within_groups_is_not_identified() -> None:
    rng = np.random.default_rng(1)
    y, x, _ = _panel(rng, groups=300)
    y[:50] = 0
    group_constant = np.repeat(rng.normal(size=(len(y), 1)), y.shape[1], axis=1)[..., None]
    fit = fit_fixed_effects_poisson(y, np.concatenate([x, group_constant], -1), np.arange(len(y)))
    assert fit.coef[2] == 0.0 and np.isinf(fit.se[2])
    assert np.all(np.isfinite(fit.se[:2]))
    # dropping the all-zero groups does not change the estimate
    kept = fit_fixed_effects_poisson(y[50:], x[50:], np.arange(250))
    assert np.allclose(kept.coef, fit.coef[:2], atol=1e-6)


def test_no_data_gives_no_estimate() -> None:
    fit = fit_fixed_effects_poisson(np.zeros((3, 4)), np.zeros((3, 4, 2)), np.arange(3))
    assert np.all(fit.coef == 0) and np.all(np.isinf(fit.se))


def test_a_price_path_shared_by_every_group_is_a_week_effect_not_an_elasticity() -> None:
    """Every product changes price in the same weeks: the price moves within each group, yet the week
    effects explain it exactly. Not identified (se inf), while the promotion, which varies across
    groups, still is; a sum of group and week terms is caught the same way."""
    rng = np.random.default_rng(3)
    groups, weeks = 200, 30
    alpha = np.exp(rng.normal(-0.5, 1.0, groups))
    promo = (rng.random((groups, weeks)) < 0.15).astype(float)
    shared = np.broadcast_to(np.where(rng.random(weeks) < 0.3, -0.2, 0.0), (groups, weeks))
    two_way = rng.normal(0, 0.1, (groups, 1)) + rng.normal(0, 0.1, (1, weeks))
    for path in (shared, two_way):
        x = np.stack([path, promo], -1)
        y = rng.poisson(alpha[:, None] * np.exp(x @ np.array([-2.0, 0.5])))
        fit = fit_fixed_effects_poisson(y, x, np.arange(groups) // 5)
        assert fit.coef[0] == 0.0 and np.isinf(fit.se[0])
        assert abs(fit.coef[1] - 0.5) < 4 * fit.se[1] and fit.se[1] < 0.2
