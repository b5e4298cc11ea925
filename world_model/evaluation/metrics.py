"""Next-basket and store-visit metrics, per target and averaged.

Every function returns a dict of per-target arrays [n] (so ``breakdowns`` can average any subset) and
``mean_metrics`` turns them into the figures of a report. Definitions, for a target T (the basket's
distinct products, UNK ones included: they count in |T| and can never be hit) and a ranking P of k
products:

- recall@k = |P@k ∩ T| / |T|; precision@k = |P@k ∩ T| / k (a missing prediction, -1, is a miss);
- NDCG@k: binary relevance, DCG = sum of 1 / log2(rank + 1) over hit ranks, divided by the ideal DCG of
  min(|T|, k) hits;
- hit_rate@k: at least one hit;
- repeat / explore: T splits into items the customer bought in an earlier basket (repeat) and the others
  (explore; UNK items are in neither, see ``EvaluationTargets.item_is_repeat``). ``repeat_hits@k`` and
  ``explore_hits@k`` count hits of each kind; ``repeat_recall@k`` = repeat hits / |T repeat|, defined
  (not NaN) only for targets holding a repeat item, and likewise ``explore_recall@k`` (the convention of
  Li et al. 2023, "A Next Basket Recommendation Reality Check"). Means skip NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from world_model.evaluation.targets import EvaluationTargets
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS

NO_PREDICTION = -1
PROBABILITY_FLOOR = 1e-12
STORE_BLOCK = 4096


def _check_ranked(ranked: np.ndarray, n: int, k: int, n_products: int) -> np.ndarray:
    """Rankings must be [n, >= k] vocabulary rows of real products (3 .. ``n_products`` - 1) or -1, without
    repeats in a row: a repeated product would be counted as two hits, and a row past the vocabulary as a
    hit on another target's item (hits are found by target x n_products + row)."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != n or ranked.shape[1] < k:
        raise ValueError(f"ranked: shape {ranked.shape}, expected ({n}, >= {k})")
    if np.any((ranked != NO_PREDICTION) & (ranked < PRODUCT_SPECIALS)):
        raise ValueError("ranked: holds PAD, UNK or MASK (rows < 3) or a negative row other than -1")
    if ranked.size and ranked.max() >= n_products:
        raise ValueError(f"ranked: holds row {ranked.max()}, past the vocabulary's {n_products} rows")
    ordered = np.sort(ranked, axis=1)
    if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != NO_PREDICTION)):
        raise ValueError("ranked: a product appears twice in one ranking")
    return ranked.astype(np.int64)


def next_basket_metrics(
    ranked: np.ndarray, targets: EvaluationTargets, ks: Sequence[int] = (10, 20)
) -> dict[str, np.ndarray]:
    """Per-target arrays [n] of every metric of the module docstring for each k in ``ks``;
    ``ranked`` [n, K >= max(ks)] holds vocabulary rows, best first, -1 where nothing is predicted."""
    n, width = len(targets), max(ks)
    ranked = _check_ranked(ranked, n, width, targets.n_products)[:, :width]
    # A ranked cell is a hit when (target, product) is among the target keys, found by binary search.
    keys = targets.item_owner * targets.n_products + targets.items
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    cell_keys = np.arange(n)[:, None] * targets.n_products + ranked
    found = np.minimum(np.searchsorted(sorted_keys, cell_keys), max(len(keys) - 1, 0))
    hit = (sorted_keys[found] == cell_keys) & (ranked != NO_PREDICTION)
    repeat_hit = hit & targets.item_is_repeat[order[found]]
    explore_hit = hit & ~repeat_hit

    size = targets.target_sizes.astype(np.float64)
    owner = targets.item_owner
    n_repeat = np.bincount(owner, weights=targets.item_is_repeat, minlength=n)
    n_explore = np.bincount(owner, weights=targets.items >= PRODUCT_SPECIALS, minlength=n) - n_repeat
    discount = 1.0 / np.log2(np.arange(width) + 2.0)
    ideal = np.cumsum(discount)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits = hit[:, :k].sum(axis=1).astype(np.float64)
        repeat_hits = repeat_hit[:, :k].sum(axis=1).astype(np.float64)
        explore_hits = explore_hit[:, :k].sum(axis=1).astype(np.float64)
        out[f"recall@{k}"] = hits / size
        out[f"precision@{k}"] = hits / k
        out[f"ndcg@{k}"] = (hit[:, :k] @ discount[:k]) / ideal[np.minimum(size, k).astype(np.int64) - 1]
        out[f"hit_rate@{k}"] = (hits > 0).astype(np.float64)
        out[f"repeat_hits@{k}"] = repeat_hits
        out[f"explore_hits@{k}"] = explore_hits
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"repeat_recall@{k}"] = np.where(n_repeat > 0, repeat_hits / n_repeat, np.nan)
            out[f"explore_recall@{k}"] = np.where(n_explore > 0, explore_hits / n_explore, np.nan)
    return out


def store_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-target ``top1``, ``top3``, ``mrr`` and ``log_loss`` [n] of store distributions
    ``probabilities`` [n, n_stores] for the visited store rows ``labels`` [n].

    The rank of the label counts the stores with more probability plus the tied ones of lower row, the
    order ``np.argmax`` and a stable sort give, so top-1 is "argmax == label". The log-loss clips
    probabilities at 1e-12 and renormalizes each row, so a zero on the label is a large finite loss."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities: shape {probabilities.shape}, expected (targets, stores)")
    n, n_stores = probabilities.shape
    if len(labels) != n or np.any((labels < 0) | (labels >= n_stores)):
        raise ValueError(f"labels: expected {n} store rows in [0, {n_stores})")
    rank = np.zeros(n, dtype=np.int64)
    log_loss = np.zeros(n)
    for start in range(0, n, STORE_BLOCK):  # [block, n_stores] float64 temporaries, not [n, n_stores]
        block = slice(start, start + STORE_BLOCK)
        p, label = probabilities[block].astype(np.float64), labels[block]
        bad = ~(np.isfinite(p) & (p >= 0)).all(axis=1)  # NaN would rank the label first and drop the loss
        if bad.any():
            row = start + int(np.argmax(bad))
            raise ValueError(f"probabilities: row {row} holds NaN, inf or a negative value ({probabilities[row].tolist()[:8]})")
        at = np.arange(len(label))
        label_p = p[at, label][:, None]
        lower_row = np.arange(n_stores)[None, :] < label[:, None]
        rank[block] = 1 + np.sum((p > label_p) | ((p == label_p) & lower_row), axis=1)
        clipped = np.clip(p, PROBABILITY_FLOOR, None)
        log_loss[block] = -np.log(clipped[at, label] / clipped.sum(axis=1))
    return {
        "top1": (rank == 1).astype(np.float64),
        "top3": (rank <= 3).astype(np.float64),
        "mrr": 1.0 / rank,
        "log_loss": log_loss,
    }


def mean_metrics(per_target: dict[str, np.ndarray]) -> dict[str, float]:
    """The mean of each per-target array, NaN entries (undefined for that target) skipped."""
    means = {}
    for name, values in per_target.items():
        defined = values[~np.isnan(values)]
        means[name] = float(defined.mean()) if len(defined) else float("nan")
    return means
