"""Vectorized sampling helpers: many categorical draws from many distributions without Python loops."""

from __future__ import annotations

import numpy as np


def row_cumsum(weights: np.ndarray) -> np.ndarray:
    """Row-normalized cumulative sums of a [n, k] non-negative weight matrix, shifted by the row index.

    Row ``i`` occupies ``(i, i + 1]``, so one ``searchsorted`` on the flattened result draws from
    every row at once (see ``draw_rows``). Rows of zeros get a uniform distribution.
    """
    cum = np.cumsum(np.asarray(weights, dtype=np.float64), axis=1)
    total = cum[:, -1:].copy()
    empty = total[:, 0] <= 0
    if empty.any():  # uniform over the columns of all-zero rows
        cum[empty] = np.arange(1, cum.shape[1] + 1, dtype=np.float64)
        total[empty] = cum.shape[1]
    cum /= total
    cum[:, -1] = 1.0
    cum += np.arange(cum.shape[0], dtype=np.float64)[:, None]
    return cum


def draw_rows(cum: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from the categorical distribution of each requested row of ``row_cumsum`` output.

    ``rows`` may repeat (several draws from the same row). Returns the column index of each draw.
    Zero-weight columns are never drawn.
    """
    n_rows, k = cum.shape
    rows = np.asarray(rows, dtype=np.int64)
    u = rng.random(len(rows))
    flat = np.searchsorted(cum.ravel(), rows + u, side="right")
    col = flat - rows * k
    return np.clip(col, 0, k - 1)


def draw_categorical(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from one categorical distribution ``probs``."""
    cum = np.cumsum(np.asarray(probs, dtype=np.float64))
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def gumbel_top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Per row, ``k`` column indices drawn without replacement proportionally to exp(log_weights).

    Columns come back in the order they would have been drawn (Gumbel-top-k trick). Columns with
    weight 0 (log weight -inf) come last; callers cap ``k`` by the number of positive weights.
    """
    keys = log_weights + rng.gumbel(size=log_weights.shape)
    k = min(k, log_weights.shape[1])
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k] if k < keys.shape[1] else np.tile(
        np.arange(keys.shape[1]), (keys.shape[0], 1)
    )
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
