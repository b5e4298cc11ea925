"""The evaluate-response figure."""

from __future__ import annotations

from pathlib import Path

from world_model.response.plots import plot_response


def test_the_figure_is_written_when_no_category_was_estimated(tmp_path: Path) -> None:
    """Every category on its prior (no estimate to set against the truth): the recovery panels say so
    instead of failing on an empty range."""
    row = {"category": "C1", "elasticity_estimate": None, "elasticity_se": None, "true_elasticity": -2.1,
           "elasticity_data_weight": 0.0, "lift_estimate": None, "log_lift_se": None, "true_lift": 1.4,
           "lift_data_weight": 0.0, "price_variation": 0.0}  # fmt: skip
    report = {"categories": [row],
              "recovery": {"median_abs_rel_error": {"elasticity_estimate": float("nan"), "lift_estimate": float("nan")}},
              "stores": {"S1": {"demand_curves": {"ratios": [0.9, 1.0], "categories": {}}}}}  # fmt: skip
    plot_response(report, tmp_path / "response.png")
    assert (tmp_path / "response.png").read_bytes()[:4] == b"\x89PNG"
