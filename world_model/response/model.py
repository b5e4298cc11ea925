"""The fitted price and promotion response: what the simulator multiplies learned demand by.

For product p of category c at a store, with shelf price ``price`` against the reference (regular)
price ``ref`` and a promotion switch:

    units multiplier = (price / ref) ** elasticity_c * lift_c ** [promoted]

and a shopper's store probabilities are tilted by the store's price level (``StoreResponse``). The
elasticity is clipped to <= ``max_elasticity`` (0) and the lift to >= ``min_lift`` (1), so demand never
rises with price and a promotion never lowers it, whatever the data or the neural propensities say.
Saved as ``price_response.json`` next to the other pipeline artifacts and copied into scenarios.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from world_model.errors import RetailSimError
from world_model.files import write_text_atomic
from world_model.response.config import ResponseConfig

RESPONSE_FILE = "price_response.json"
FORMAT_VERSION = 1


@dataclass
class CategoryResponse:
    """A category's response: the values used, the raw estimates and what identified them."""

    category: str
    elasticity: float
    """Own-price elasticity used by the simulator (posterior mean, clipped)."""
    lift: float
    """Promotion lift used by the simulator (exp of the posterior mean log lift, clipped)."""
    elasticity_estimate: float = math.nan
    """Fixed-effects Poisson estimate (nan: not identified)."""
    elasticity_se: float = math.inf
    lift_estimate: float = math.nan
    log_lift_se: float = math.inf
    elasticity_data_weight: float = 0.0
    """Weight of the data against the prior, prior_sd^2 / (prior_sd^2 + se^2): 0 = all prior."""
    lift_data_weight: float = 0.0
    products: int = 0
    groups: int = 0
    """Product x pricing-zone series in the regression (observed often enough)."""
    series_total: int = 0
    """Product x pricing-zone series of the category."""
    weeks: int = 0
    units: float = 0.0
    price_variation: float = 0.0
    """Standard deviation of log price net of group and week effects."""
    promo_share: float = 0.0
    """Share of zone-weeks on promotion."""
    converged: bool = True
    elasticity_rejected: bool = False
    """The estimate had the wrong sign (> max_elasticity) and the prior is used instead."""
    lift_rejected: bool = False
    """The estimated lift was below min_lift and the prior is used instead."""


@dataclass
class StoreResponse:
    """Store choice: a store's visits respond to its price level with ``elasticity``.

    The simulator tilts each shopper's store probabilities ``q_s`` to ``q_s * level_s^-choice_sensitivity``
    (renormalized), ``level_s`` the revenue-weighted geometric mean of price / reference price at s;
    ``choice_sensitivity = -elasticity / (1 - loyalty)`` makes the aggregate elasticity equal ``elasticity``."""

    elasticity: float
    choice_sensitivity: float
    estimate: float = math.nan
    se: float = math.inf
    data_weight: float = 0.0
    loyalty: float = 0.0
    stores: int = 0
    weeks: int = 0
    level_variation: float = 0.0
    """Standard deviation of the log price level net of store and week effects."""
    rejected: bool = False
    """The estimate was positive (visits rising with price) and the prior is used instead."""


@dataclass
class PriceResponse:
    categories: dict[str, CategoryResponse]
    product_category: dict[str, str]
    """PROD_CODE -> category (PROD_CODE_20) of every training product."""
    store: StoreResponse
    config: ResponseConfig = field(default_factory=ResponseConfig)

    def prior(self) -> CategoryResponse:
        """The response of a category the training data never saw."""
        return CategoryResponse("(prior)", min(self.config.prior_elasticity, self.config.max_elasticity),
                                max(self.config.prior_lift, self.config.min_lift))  # fmt: skip

    def parameters(self, product_codes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(elasticity [P], lift [P]) of each product; unknown products get the prior."""
        prior = self.prior()
        rows = [self.categories.get(self.product_category.get(code, ""), prior) for code in product_codes]
        return (np.array([r.elasticity for r in rows], dtype=np.float64),
                np.array([r.lift for r in rows], dtype=np.float64))  # fmt: skip

    # ------------------------------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.config),
            "store": asdict(self.store),
            "categories": [asdict(c) for c in self.categories.values()],
            "product_category": self.product_category,
        }

    @classmethod
    def from_dict(cls, payload: dict) -> PriceResponse:
        categories = {c["category"]: CategoryResponse(**c) for c in payload["categories"]}
        return cls(categories, dict(payload["product_category"]), StoreResponse(**payload["store"]),
                   ResponseConfig(**payload["config"]))  # fmt: skip

    def save(self, path: Path | str) -> None:
        """Write atomically (``world_model.files``)."""
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> PriceResponse:
        """From a ``price_response.json``, or a work directory holding ``processed/price_response.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / "processed" / RESPONSE_FILE
        if not path.exists():
            raise RetailSimError(f"{path}: missing; run 'retailsim pipeline run' (stage price_response) first")
        payload = json.loads(path.read_text())
        if payload.get("format_version") != FORMAT_VERSION:
            raise RetailSimError(f"{path}: price response format {payload.get('format_version')}, expected {FORMAT_VERSION}")
        return cls.from_dict(payload)


def demand_multiplier(price_ratio: np.ndarray, promoted: np.ndarray, elasticity: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """``price_ratio ** elasticity * lift ** promoted``, broadcast over the last (product) axis."""
    ratio = np.asarray(price_ratio, dtype=np.float64)
    if np.any(~np.isfinite(ratio)) or np.any(ratio <= 0):
        raise ValueError("price ratios must be finite and > 0")
    return np.exp(elasticity * np.log(ratio)) * np.where(np.asarray(promoted, dtype=bool), lift, 1.0)
