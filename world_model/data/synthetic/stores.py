"""Stores: code, format (LS/MS/SS/XLS), region (E01..W03) and a true price index.

Formats follow the real LGSR proportions (330/236/167/28 of 761) and differ in how strongly they
attract customers; the price index (default 0.95..1.05, convenience formats dearer) scales every
shelf price of the store and, through the customers' store-choice price sensitivity, its traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import MarketConfig

FORMAT_NAMES: tuple[str, ...] = ("LS", "MS", "SS", "XLS")
REGION_NAMES: tuple[str, ...] = tuple(f"{z}0{k}" for z in "ENSW" for k in (1, 2, 3))
# Price index offsets by format: small convenience stores dearer, hypermarkets cheaper.
_FORMAT_PRICE_OFFSET = np.array([0.0, 0.01, 0.025, -0.02])


@dataclass(frozen=True)
class Stores:
    """Store attributes (index = STORE_CODE order)."""

    code: np.ndarray  # [S] str STORE00001...
    format: np.ndarray  # [S] int, index into FORMAT_NAMES
    region: np.ndarray  # [S] int, index into REGION_NAMES
    price_index: np.ndarray  # [S] float
    traffic: np.ndarray  # [S] float, relative attraction (from the format)

    @property
    def n_stores(self) -> int:
        return len(self.code)


def _format_counts(n: int, shares: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(shares, dtype=float)
    share = n * w / w.sum()
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def build_stores(config: MarketConfig, rng: np.random.Generator) -> Stores:
    """Draw the stores of ``config`` from ``rng``."""
    n = config.stores
    fmt = rng.permutation(np.repeat(np.arange(len(FORMAT_NAMES)), _format_counts(n, config.format_shares)))
    region = rng.permutation(np.arange(n) % len(REGION_NAMES))
    lo, hi = config.store_price_index_range
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    index = mid + _FORMAT_PRICE_OFFSET[fmt] * (half / 0.05) + rng.uniform(-0.6, 0.6, size=n) * half
    index = np.round(np.clip(index, lo, hi), 4)
    return Stores(
        code=np.array([f"STORE{i + 1:05d}" for i in range(n)]),
        format=fmt,
        region=region,
        price_index=index,
        traffic=np.asarray(config.format_traffic, dtype=float)[fmt],
    )
