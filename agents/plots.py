"""The evaluation report's PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    paths.append(str(out / "profit_lift.png"))
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 4))
    for name, weekly in report["weekly_profit"][modes[0]].items():
        axis.plot(np.arange(1, len(weekly) + 1), weekly, label=name)
    axis.set_xlabel("episode week")
    axis.set_ylabel(f"mean weekly profit ({modes[0]} market)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    paths.append(str(out / "weekly_profit.png"))
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    results = report["modes"][modes[0]]
    for axis, key, label in ((axes[0], "edge_share", "prices within 5% of a bound"), (axes[1], "promo_share", "product-weeks on promotion")):
        axis.bar(policies, [100 * results[p][key] for p in policies], color="tab:orange" if key == "edge_share" else "tab:blue")
        axis.set_ylabel(f"{label} (%)")
        axis.tick_params(axis="x", rotation=30)
    axes[0].axhline(10, color="red", linestyle="--", linewidth=0.8)
    figure.suptitle(f"Pricing behaviour ({modes[0]} market)")
    figure.tight_layout()
    paths.append(str(out / "pricing_behaviour.png"))
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)
    return paths


def plot_multi_report(report: dict, out: Path) -> list[str]:
    """Write agent_returns.png for a multi-agent report (``agents.multi.evaluate_multi``): per market, each
    agent's mean episode return trained and untrained, less its historical counterpart's (returns are
    40-50 a 52-week episode and differ by a few: as differences they are visible), with the trained
    agents' profit lift over historical pricing in the agent's label; return its path."""
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
    path = str(out / "agent_returns.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return [path]
