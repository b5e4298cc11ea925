"""Poisson regression with group fixed effects and week effects, by conditional maximum likelihood.

The demand model behind the price response is multiplicative,

    E[units_gw] = alpha_g * exp(delta_w + x_gw . b),

with a fixed effect ``alpha_g`` per panel group (a product in a pricing zone), a week effect ``delta_w``
shared by the category (seasonality, traffic, holidays) and regressors ``x`` (log price, promotion flag).
Weekly units are small counts with many zeros, so a log-log OLS (which drops the zeros, or needs an
arbitrary ``log(1 + y)``) is biased; the Poisson pseudo-likelihood is consistent for ``b`` whenever the
mean is right, whatever the count distribution (Santos Silva and Tenreyro, 2006), and zeros are data.

The group effects are not estimated: conditioning on each group's total ``n_g = sum_w y_gw`` turns the
Poisson likelihood into a multinomial one over the group's weeks, ``pi_gw = softmax_w(delta_w + x_gw . b)``,
which does not contain ``alpha_g`` (the Poisson MLE of ``b`` and ``delta`` is the same). Newton steps on
the ``K + W - 1`` remaining parameters (``delta_0 = 0``) use the exact information matrix, built from
[G, W] arrays with no dummy matrix. Standard errors are cluster-robust (sandwich, clustered by product),
so overdispersion from shopper heterogeneity and serial correlation within a product widen them honestly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoissonFit:
    """Estimates of a fixed-effects Poisson fit."""

    coef: np.ndarray
    """[K] coefficients of the regressors."""
    se: np.ndarray
    """[K] cluster-robust standard errors (inf where a regressor does not vary within groups)."""
    week_effects: np.ndarray
    """[W] delta_w, delta_0 = 0."""
    log_likelihood: float
    """Conditional (multinomial) log-likelihood at the estimate."""
    iterations: int
    converged: bool


def _probabilities(x: np.ndarray, coef: np.ndarray, delta: np.ndarray) -> np.ndarray:
    linear = x @ coef + delta  # [G, W]
    linear -= linear.max(axis=1, keepdims=True)
    np.exp(linear, out=linear)
    linear /= linear.sum(axis=1, keepdims=True)
    return linear


def _log_likelihood(y: np.ndarray, pi: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        return float(np.sum(y * np.where(y > 0, np.log(pi), 0.0)))


def fit_fixed_effects_poisson(
    y: np.ndarray, x: np.ndarray, clusters: np.ndarray, max_iterations: int = 50, tolerance: float = 1e-9
) -> PoissonFit:
    """Fit ``E[y_gw] = alpha_g exp(delta_w + x_gw . b)``.

    ``y`` [G, W] counts (>= 0), ``x`` [G, W, K] regressors, ``clusters`` [G] integer cluster of each
    group for the standard errors. Groups with no units carry no information and are dropped.
    A regressor the group and week effects (or the regressors before it) explain exactly is not
    identified (``_identified``): it gets coefficient 0 and standard error inf.
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if y.ndim != 2 or x.shape[:2] != y.shape:
        raise ValueError(f"y must be [G, W] and x [G, W, K]; got {y.shape} and {x.shape}")
    n_weeks, k = y.shape[1], x.shape[2]
    keep = y.sum(axis=1) > 0
    y, x, clusters = y[keep], x[keep], np.asarray(clusters)[keep]
    n = y.sum(axis=1)
    active = _identified(x) if len(y) else np.zeros(0, dtype=np.int64)
    xa = x[:, :, active]
    ka = len(active)
    theta = np.zeros(ka + n_weeks - 1)

    def unpack(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return t[:ka], np.concatenate([[0.0], t[ka:]])

    pi = _probabilities(xa, *unpack(theta)) if len(y) else np.zeros_like(y)
    loglik = _log_likelihood(y, pi)
    converged, iteration = len(y) == 0, 0
    information = np.eye(len(theta))
    for iteration in range(1, max_iterations + 1):
        if converged:
            break
        score, information = _score_and_information(y, n, xa, pi)
        step = np.linalg.lstsq(information, score, rcond=None)[0]
        scale = 1.0
        while True:  # step halving keeps the likelihood increasing
            candidate = theta + scale * step
            cand_pi = _probabilities(xa, *unpack(candidate))
            cand_loglik = _log_likelihood(y, cand_pi)
            if cand_loglik >= loglik - 1e-12 or scale < 1e-6:
                break
            scale /= 2
        gain = cand_loglik - loglik
        theta, pi, loglik = candidate, cand_pi, cand_loglik
        if np.max(np.abs(scale * step)) < 1e-8 or abs(gain) < tolerance * (1 + abs(loglik)):
            converged = True
    information = _score_and_information(y, n, xa, pi)[1] if len(y) else information
    coef_active, delta = unpack(theta)
    se_active = _cluster_robust_se(y, n, xa, pi, clusters, information)[:ka] if len(y) else np.full(ka, np.inf)
    coef, se = np.zeros(k), np.full(k, np.inf)
    coef[active], se[active] = coef_active, se_active
    return PoissonFit(coef, se, delta, loglik, iteration, bool(converged))


def two_way_residual(x: np.ndarray) -> np.ndarray:
    """``x`` [G, W, ...] less its group (row) and week (column) means: what group and week effects leave."""
    return x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean(axis=(0, 1), keepdims=True)


def _identified(x: np.ndarray, tolerance: float = 1e-9) -> np.ndarray:
    """Indices of the regressors of ``x`` [G, W, K] the fit can identify: those whose two-way residual
    (less its group and week means: what the group and week effects cannot absorb) is not zero and not
    a combination of the earlier ones' residuals. A price path shared by every group (all products
    changing price in the same weeks) moves within each group yet is a week effect: without this, the
    minimum-norm Newton step and the pseudo-inverse gave it a coefficient with a small standard error."""
    flat = two_way_residual(x).reshape(-1, x.shape[2])
    scale = np.maximum(np.abs(x).reshape(-1, x.shape[2]).max(axis=0), 1.0)
    kept: list[int] = []
    for j in range(x.shape[2]):
        candidate = flat[:, kept + [j]] / scale[kept + [j]]
        if np.abs(candidate[:, -1]).max() > tolerance and np.linalg.matrix_rank(candidate, tol=tolerance * np.sqrt(len(flat))) == len(kept) + 1:
            kept.append(j)
    return np.asarray(kept, dtype=np.int64)


def _score_and_information(y: np.ndarray, n: np.ndarray, x: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score and information of the conditional likelihood in (b, delta_1..delta_{W-1})."""
    resid = y - n[:, None] * pi  # [G, W]
    npi = n[:, None] * pi
    px = np.einsum("gw,gwk->gk", pi, x)  # [G, K] expected x within a group
    score_b = np.einsum("gw,gwk->k", resid, x)
    score_d = resid.sum(axis=0)[1:]
    info_bb = np.einsum("gw,gwk,gwl->kl", npi, x, x) - np.einsum("g,gk,gl->kl", n, px, px)
    info_db = np.einsum("gw,gwk->wk", npi, x) - np.einsum("gw,gk->wk", npi, px)  # [W, K]
    info_dd = np.diag(npi.sum(axis=0)) - npi.T @ pi
    k = x.shape[2]
    information = np.empty((k + pi.shape[1] - 1,) * 2)
    information[:k, :k] = info_bb
    information[k:, :k] = info_db[1:]
    information[:k, k:] = info_db[1:].T
    information[k:, k:] = info_dd[1:, 1:]
    return np.concatenate([score_b, score_d]), information


def _cluster_robust_se(
    y: np.ndarray, n: np.ndarray, x: np.ndarray, pi: np.ndarray, clusters: np.ndarray, information: np.ndarray
) -> np.ndarray:
    """Sandwich standard errors with per-cluster scores, small-sample factor C / (C - 1)."""
    resid = y - n[:, None] * pi
    group_scores = np.concatenate([np.einsum("gw,gwk->gk", resid, x), resid[:, 1:]], axis=1)
    _, cluster_index = np.unique(clusters, return_inverse=True)
    n_clusters = int(cluster_index.max()) + 1
    cluster_scores = np.zeros((n_clusters, group_scores.shape[1]))
    np.add.at(cluster_scores, cluster_index, group_scores)
    meat = cluster_scores.T @ cluster_scores * (n_clusters / max(n_clusters - 1, 1))
    bread = np.linalg.pinv(information)
    variance = np.diag(bread @ meat @ bread)
    return np.sqrt(np.where(variance > 0, variance, np.inf)) if n_clusters > 1 else np.full(len(variance), np.inf)
