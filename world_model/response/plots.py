"""The figure of ``retailsim evaluate-response``: recovery (or identifiability) and demand curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from world_model.files import atomic_write  # noqa: E402


def _values(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)


def _recovery_panel(ax, rows: list[dict], estimate: str, se: str, truth: str, weight: str, label: str,
                    log_se: bool = False) -> None:  # fmt: skip
    est, err, true, w = (_values(rows, k) for k in (estimate, se, truth, weight))
    err = est * np.expm1(err) if log_se else err  # a log-scale SE is shown as the lift's own scale
    ok = np.isfinite(est) & np.isfinite(true)
    if not ok.any():  # no category estimated (every one on its prior): nothing to set against the truth
        ax.text(0.5, 0.5, f"no {label} estimated", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"true {label}")
        return
    ax.errorbar(true[ok], est[ok], yerr=np.where(np.isfinite(err[ok]), np.abs(err[ok]), 0), fmt="none",
                ecolor="0.75", zorder=1)  # fmt: skip
    points = ax.scatter(true[ok], est[ok], c=w[ok], cmap="viridis", vmin=0, vmax=1, s=18, zorder=2)
    lo, hi = np.nanmin(np.r_[true[ok], est[ok]]), np.nanmax(np.r_[true[ok], est[ok]])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"estimated {label}")
    plt.colorbar(points, ax=ax, label="data weight")


def _identifiability_panel(ax, rows: list[dict], estimate: str, weight: str, label: str) -> None:
    variation, w, est = _values(rows, "price_variation"), _values(rows, weight), _values(rows, estimate)
    points = ax.scatter(variation, w, c=np.where(np.isfinite(est), est, np.nan), cmap="coolwarm", s=18)
    ax.set_xlabel("price variation (sd of log price net of fixed effects)")
    ax.set_ylabel(f"{label}: data weight vs prior")
    plt.colorbar(points, ax=ax, label=f"estimated {label}")


def plot_response(report: dict, path: Path | str) -> Path:
    """Write the PNG (atomically) and return its path."""
    path = Path(path)
    rows = report["categories"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
    if "recovery" in report:
        _recovery_panel(axes[0, 0], rows, "elasticity_estimate", "elasticity_se", "true_elasticity",
                        "elasticity_data_weight", "elasticity")  # fmt: skip
        _recovery_panel(axes[0, 1], rows, "lift_estimate", "log_lift_se", "true_lift", "lift_data_weight",
                        "promotion lift", log_se=True)  # fmt: skip
        errors = report["recovery"]["median_abs_rel_error"]
        axes[0, 0].set_title(f"elasticity: median abs rel error {errors['elasticity_estimate']:.1%}")
        axes[0, 1].set_title(f"lift: median abs rel error {errors['lift_estimate']:.1%}")
    else:
        _identifiability_panel(axes[0, 0], rows, "elasticity_estimate", "elasticity_data_weight", "elasticity")
        _identifiability_panel(axes[0, 1], rows, "lift_estimate", "lift_data_weight", "lift")
        axes[0, 0].set_title("elasticity identifiability per category")
        axes[0, 1].set_title("promotion lift identifiability per category")
    store, result = next(iter(report["stores"].items()))
    curves = result["demand_curves"]
    ratios = np.asarray(curves["ratios"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, entry) in enumerate(curves["categories"].items()):
        color = colors[i % len(colors)]
        axes[1, 0].plot(ratios, entry["simulated"], "-o", ms=3, color=color, label=f"{name} ({entry['elasticity']:.2f})")
        if "true" in entry:
            axes[1, 0].plot(ratios, entry["true"], "--", color=color)
    axes[1, 0].set_xlabel("category price / reference price")
    axes[1, 0].set_ylabel("units / units at reference")
    axes[1, 0].set_title(f"simulated demand curves at {store}" + (" (dashed: truth)" if "recovery" in report else ""))
    if axes[1, 0].get_legend_handles_labels()[0]:  # no curves when no category was measured
        axes[1, 0].legend(fontsize=7)
    weights = _values(rows, "elasticity_data_weight")
    axes[1, 1].hist([weights[np.isfinite(weights)], _values(rows, "lift_data_weight")], bins=10, range=(0, 1),
                    label=["elasticity", "lift"])  # fmt: skip
    axes[1, 1].set_xlabel("data weight (0 = prior only, 1 = data only)")
    axes[1, 1].set_ylabel("categories")
    axes[1, 1].set_title("how much each category leans on the prior")
    axes[1, 1].legend()
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
    return path
