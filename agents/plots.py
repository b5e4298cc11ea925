"""The evaluation reports' files: report.json and its PNG plots (matplotlib, Agg backend: no display needed).

``write_report`` keeps a report directory consistent, which matters because ``--out`` may be a directory
shared with other files (even ``.``), so it is never replaced whole: the previous report.json goes first
and the new one is written last, so a report.json found there always describes the plots beside it; each
plot is written atomically; and report plots the new report did not draw (a single-agent report written
where a multi-agent one was, or the reverse) are removed rather than left to be taken for its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from world_model.files import atomic_write, json_safe, write_json_atomic

REPORT_FILE = "report.json"
REPORT_PLOTS = ("profit_lift.png", "weekly_profit.png", "pricing_behaviour.png", "agent_returns.png", "return_terms.png")
TERM_COLORS = {"profit": "tab:green", "boundary_penalty": "tab:red", "violation_penalty": "tab:orange",
               "diversity_bonus": "tab:purple", "inventory_alignment": "tab:cyan"}  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(report: dict, out: Path, plot: Callable[[dict, Path], list[str]]) -> None:
    """Write ``plot(report, out)``'s plots (recorded as ``report["plots"]``), then ``out``/report.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).unlink(missing_ok=True)
    report["plots"] = plot(report, out)
    drawn = {Path(path).name for path in report["plots"]}
    for name in REPORT_PLOTS:
        if name not in drawn:
            (out / name).unlink(missing_ok=True)
    write_json_atomic(out / REPORT_FILE, json_safe(report), indent=1)  # a NaN lift (no positive reference) as null


def _save(plt, figure, path: Path) -> str:
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
    return str(path)


def plot_report(report: dict, out: Path) -> list[str]:
    """Write profit_lift.png, weekly_profit.png and pricing_behaviour.png; return their paths."""
    plt = _pyplot()
    modes = list(report["modes"])
    policies = list(report["modes"][modes[0]])
    paths = []

    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        lifts = [100 * report["modes"][mode][p]["profit_lift_vs_historical"] for p in policies]
        axis.bar(np.arange(len(policies)) + i * width, lifts, width, label=f"{mode} market")
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(np.arange(len(policies)) + width * (len(modes) - 1) / 2, policies, rotation=20)
    axis.set_ylabel("profit lift vs historical pricing (%)")
    axis.set_title("Profit lift: learned market vs the generator's truth (oracle)")
    axis.legend()
    figure.tight_layout()
    paths.append(_save(plt, figure, out / "profit_lift.png"))

    figure, axis = plt.subplots(figsize=(8, 4))
    for name, weekly in report["weekly_profit"][modes[0]].items():
        axis.plot(np.arange(1, len(weekly) + 1), weekly, label=name)
    axis.set_xlabel("episode week")
    axis.set_ylabel(f"mean weekly profit ({modes[0]} market)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    paths.append(_save(plt, figure, out / "weekly_profit.png"))

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    results = report["modes"][modes[0]]
    for axis, key, label in ((axes[0], "edge_share", "prices within 5% of a bound"), (axes[1], "promo_share", "product-weeks on promotion")):
        axis.bar(policies, [100 * results[p][key] for p in policies], color="tab:orange" if key == "edge_share" else "tab:blue")
        axis.set_ylabel(f"{label} (%)")
        axis.tick_params(axis="x", rotation=30)
    axes[0].axhline(10, color="red", linestyle="--", linewidth=0.8)
    figure.suptitle(f"Pricing behaviour ({modes[0]} market)")
    figure.tight_layout()
    paths.append(_save(plt, figure, out / "pricing_behaviour.png"))
    return paths


def plot_multi_report(report: dict, out: Path) -> list[str]:
    """Write the plots of a multi-agent report (``agents.multi.evaluate_multi``); return their paths.

    agent_returns.png: per market, each agent's mean episode return trained and untrained, less its
    historical counterpart's (returns are 40-50 a 52-week episode and differ by a few: as differences
    they are visible), with the trained agents' profit lift over historical pricing in the agent's label.
    return_terms.png: the same differences term by term (``return_terms``), stacked: above the axis the
    terms that gained on the historical counterpart, below those that lost, so the bar's net is the
    return's difference and the colours say where it came from."""
    plt = _pyplot()
    modes = list(report["modes"])
    figure, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    policies = (("trained", "tab:blue"), ("untrained", "tab:gray"))
    for axis, mode in zip(axes[0], modes):
        results = report["modes"][mode]
        agents = list(results)
        width = 0.8 / len(policies)
        for i, (policy, color) in enumerate(policies):
            gains = [results[a][policy]["return"] - results[a]["historical"]["return"] for a in agents]
            axis.bar(np.arange(len(agents)) + i * width, gains, width, label=policy, color=color)
        axis.axhline(0, color="black", linewidth=0.8)
        labels = [f"{a}\n{100 * results[a]['profit_lift_vs_historical']:+.1f}% profit" for a in agents]
        axis.set_xticks(np.arange(len(agents)) + width * (len(policies) - 1) / 2, labels, fontsize=8)
        axis.set_ylabel("episode return - historical counterpart's")
        axis.set_title(f"{mode} market")
        axis.legend(fontsize=8)
    figure.suptitle(f"Multi-agent ({report['mode']}): return over each agent's historical counterpart")
    figure.tight_layout()
    paths = [_save(plt, figure, out / "agent_returns.png")]
    if all("return_terms" in r[p] for results in report["modes"].values() for r in results.values()
           for p in ("trained", "untrained", "historical")):  # fmt: skip
        paths.append(_plot_return_terms(plt, report, out / "return_terms.png"))
    return paths


def _plot_return_terms(plt, report: dict, path: Path) -> str:
    modes = list(report["modes"])
    figure, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    policies = ("trained", "untrained")
    for axis, mode in zip(axes[0], modes):
        results = report["modes"][mode]
        labelled = set()
        for i, agent in enumerate(results):
            base = results[agent]["historical"]["return_terms"]
            for j, policy in enumerate(policies):
                x, above, below = i + (j - 0.5) * 0.4, 0.0, 0.0
                for term, value in results[agent][policy]["return_terms"].items():
                    gain = value - base[term]
                    label = None if term in labelled else term
                    labelled.add(term)
                    axis.bar(x, gain, 0.38, bottom=above if gain >= 0 else below, color=TERM_COLORS.get(term, "tab:gray"),
                             label=label, edgecolor="black" if policy == "trained" else "white", linewidth=0.5)  # fmt: skip
                    above, below = (above + gain, below) if gain >= 0 else (above, below + gain)
                axis.plot([x - 0.19, x + 0.19], [above + below] * 2, color="black", linewidth=1.5)  # the net
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(np.arange(len(results)), [f"{a}\n(trained | untrained)" for a in results], fontsize=8)
        axis.set_ylabel("return term - historical counterpart's")
        axis.set_title(f"{mode} market (black line: net)")
        axis.legend(fontsize=7)
    figure.suptitle(f"Multi-agent ({report['mode']}): where each return's difference comes from")
    figure.tight_layout()
    return _save(plt, figure, path)
