"""Configuration of the price and promotion response: priors, the promotion rule, the placebo."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResponseConfig:
    """Parameters of ``world_model.response.estimate``. Part of ``PipelineConfig`` (stage price_response).

    Priors: meta-analyses of grocery own-price elasticities centre between -1.5 and -2.6 (Tellis 1988;
    Bijmolt, van Heerde and Pieters 2005), so a category whose data say little gets about -2. The
    promotion lift is the demand multiplier of being on promotion beyond the discount's own price effect
    (display, feature), which the same literature puts at tens of percent.
    """

    prior_elasticity: float = -2.0
    """Mean of the normal prior of a category's own-price elasticity."""
    prior_elasticity_sd: float = 0.75
    """Its standard deviation: an estimate with this standard error gets half the weight."""
    prior_lift: float = 1.3
    """Prior promotion lift (the prior is normal on log lift, centred at log(prior_lift))."""
    prior_log_lift_sd: float = 0.3
    """Standard deviation of the log-lift prior."""
    prior_store_elasticity: float = -2.0
    """Prior elasticity of a store's weekly visits to its own price level."""
    prior_store_elasticity_sd: float = 1.0
    max_loyalty: float = 0.9
    """Loyalty the store-choice sensitivity ``-elasticity / (1 - loyalty)`` is derived with, at most: near 1
    the formula grows without bound (0.98 turned -2 into 100, a 1% dearer store losing 63% of its
    visits). The real sample's is 0.81, the shipped scenario's 0.73."""
    max_elasticity: float = 0.0
    """Upper bound of the elasticity used by the simulator: demand never rises with price."""
    min_lift: float = 1.0
    """Lower bound of the lift used by the simulator: a promotion never lowers demand."""
    zone: str = "region"
    """Pricing zone the stores are aggregated into: "region" (STORE_REGION) or "format_region"."""
    min_observed_share: float = 0.8
    """A product-zone series enters the regression when its price is observed (it sold) in at least
    this share of the training weeks (see ``panel.Panel``)."""
    regular_window: int = 9
    """Weeks of the centred running median that defines a product's regular price. Centred, so a
    permanent price change is regular from its first week on, and a promotion shorter than half the
    window is not."""
    promo_threshold: float = 0.05
    """A zone-week whose price is more than this below the regular price is promoted."""
    placebo_share: float = 0.1
    """Share of the unpromoted, unchanged-price zone-weeks given a fake promotion flag by the placebo."""
    seed: int = 0
    """Seed of the placebo's fake flags."""

    def __post_init__(self) -> None:
        if self.regular_window < 1 or self.regular_window % 2 == 0:
            raise ValueError(f"regular_window must be an odd number >= 1, got {self.regular_window}")
        if self.zone not in ("region", "format_region"):
            raise ValueError(f"zone must be 'region' or 'format_region', got {self.zone!r}")
        if not 0.0 <= self.min_observed_share <= 1.0:
            raise ValueError(f"min_observed_share must be in [0, 1], got {self.min_observed_share}")
        if not 0.0 <= self.promo_threshold < 1.0:
            raise ValueError(f"promo_threshold must be in [0, 1), got {self.promo_threshold}")
        if not 0.0 <= self.max_loyalty < 1.0:
            raise ValueError(f"max_loyalty must be in [0, 1), got {self.max_loyalty}")
        if min(self.prior_elasticity_sd, self.prior_log_lift_sd, self.prior_store_elasticity_sd) <= 0:
            raise ValueError("prior standard deviations must be > 0")
        if self.prior_lift <= 0:
            raise ValueError(f"prior_lift must be > 0, got {self.prior_lift}")
        if not 0.0 < self.placebo_share < 1.0:
            raise ValueError(f"placebo_share must be in (0, 1), got {self.placebo_share}")
