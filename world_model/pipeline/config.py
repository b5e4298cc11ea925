"""Configuration of ``retailsim pipeline run``: one frozen dataclass, recorded in every stage manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from world_model.response.config import ResponseConfig


@dataclass(frozen=True)
class PipelineConfig:
    """Parameters of the data-to-training pipeline. Changing one re-runs the stages that depend on it."""

    train_end: int = 80
    """Last normalized week index (1-based, see ``weeks.WeekIndex``) of the training split."""
    valid_end: int = 95
    """Last week index of the validation split; later weeks are the test split."""
    min_copurchase: int = 5
    """Minimum number of training baskets two products share for a co-purchase edge."""
    top_complements: int = 10
    """Edges kept per product: its strongest co-purchase partners."""
    base_price_window: int = 4
    """Weeks of the rolling maximum that defines the base (regular) price."""
    promo_threshold: float = 0.05
    """Discount depth above which a product-store-week counts as promoted."""
    memory_limit: str = "4GB"
    """DuckDB memory limit; larger intermediates spill to WORKDIR/.duckdb_tmp."""
    threads: int | None = None
    """DuckDB threads (None: one per core)."""
    progress: bool = True
    """Show progress bars."""
    response: ResponseConfig = field(default_factory=ResponseConfig)
    """Priors and rules of the price response (stage price_response). A config section: only the stages
    that name it in ``Stage.config_sections`` fingerprint it, so changing a prior re-runs those alone."""

    def __post_init__(self) -> None:
        if not 1 <= self.train_end < self.valid_end:
            raise ValueError(f"split must satisfy 1 <= train_end < valid_end, got {self.train_end},{self.valid_end}")

    def fitted_parameters(self, sections: tuple[str, ...] = ()) -> dict:
        """The parameters that change artifacts (progress and resources do not), with the config
        ``sections`` asked for (a stage's ``config_sections``)."""
        params = asdict(self)
        for key in ("memory_limit", "threads", "progress", *(s for s in CONFIG_SECTIONS if s not in sections)):
            params.pop(key)
        return params


CONFIG_SECTIONS = ("response",)
"""Nested parts of the config that only some stages read."""
