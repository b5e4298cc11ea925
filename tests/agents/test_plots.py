import json
from pathlib import Path

import pytest

from agents.plots import REPORT_PLOTS, plot_multi_report, plot_report, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _single_report() -> dict:
    policy = {"profit_lift_vs_historical": 0.1, "edge_share": 0.2, "promo_share": 0.3}
    return {"modes": {"learned": {"historical": dict(policy, profit_lift_vs_historical=0.0), "ppo": policy}},
            "weekly_profit": {"learned": {"historical": [1.0, 2.0], "ppo": [1.5, 2.5]}}}  # fmt: skip


def _multi_report() -> dict:
    agent = {"trained": {"return": 45.0}, "untrained": {"return": 43.0}, "historical": {"return": 44.0},
             "profit_lift_vs_historical": 0.05}  # fmt: skip
    return {"mode": "competitive", "modes": {"learned": {"store_0": agent, "store_1": agent}}}


def test_each_report_writes_its_plots_as_whole_pngs_and_removes_the_other_kinds(tmp_path) -> None:
    write_report(_multi_report(), tmp_path, plot_multi_report)
    assert (tmp_path / "agent_returns.png").read_bytes().startswith(PNG_MAGIC)
    (tmp_path / "notes.txt").write_text("kept")  # --out may be shared with the user's own files

    write_report(_single_report(), tmp_path, plot_report)
    report = json.loads((tmp_path / "report.json").read_text())
    drawn = {Path(p).name for p in report["plots"]}
    assert drawn == {"profit_lift.png", "weekly_profit.png", "pricing_behaviour.png"}
    assert all((tmp_path / name).read_bytes().startswith(PNG_MAGIC) for name in drawn)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(drawn | {"report.json", "notes.txt"})

    write_report(_multi_report(), tmp_path, plot_multi_report)
    assert {p.name for p in tmp_path.iterdir()} & set(REPORT_PLOTS) == {"agent_returns.png"}


def test_a_multi_agent_report_with_return_terms_also_plots_them(tmp_path) -> None:
    report = _multi_report()
    for agent in report["modes"]["learned"].values():
        for policy, profit in (("trained", 46.0), ("untrained", 43.5), ("historical", 44.0)):
            agent[policy]["return_terms"] = {"profit": profit, "boundary_penalty": -1.0 if policy == "trained" else 0.0}
    write_report(report, tmp_path, plot_multi_report)
    drawn = {Path(p).name for p in json.loads((tmp_path / "report.json").read_text())["plots"]}
    assert drawn == {"agent_returns.png", "return_terms.png"}
    assert (tmp_path / "return_terms.png").read_bytes().startswith(PNG_MAGIC)


def test_a_report_that_fails_to_plot_leaves_no_report_json_describing_the_old_plots(tmp_path) -> None:
    write_report(_single_report(), tmp_path, plot_report)

    def failing_plot(report: dict, out: Path) -> list[str]:
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(_single_report(), tmp_path, failing_plot)
    assert not (tmp_path / "report.json").exists()
    assert not list(tmp_path.glob("*.tmp"))


def _strict_json(text: str) -> dict:
    """``json.loads`` refusing NaN and Infinity, as jq and JSON.parse do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_lift_without_a_positive_reference_is_null_in_strict_json(tmp_path) -> None:
    report = _single_report()
    report["modes"]["learned"]["ppo"]["profit_lift_vs_historical"] = float("nan")  # historical profit <= 0
    write_report(report, tmp_path, plot_report)
    written = _strict_json((tmp_path / "report.json").read_text())
    assert written["modes"]["learned"]["ppo"]["profit_lift_vs_historical"] is None
    assert written["modes"]["learned"]["historical"]["profit_lift_vs_historical"] == 0.0
