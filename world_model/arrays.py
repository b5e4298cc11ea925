"""Small vectorized numpy helpers shared across packages."""

from __future__ import annotations

import numpy as np


def gather_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(start, stop)`` for every pair, vectorized: [sum(stops - starts)] int64.
    This is how a batch's baskets and items are gathered from CSR offsets without a Python loop."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(stops, dtype=np.int64) - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
    return shift + np.arange(total, dtype=np.int64)
