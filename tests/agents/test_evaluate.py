import json

import pytest

from agents.evaluate import evaluate_policies, evaluate_run, format_report
from agents.policies import HistoricalPricing, RandomPolicy
from tests.agents.conftest import TINY_ENV


def test_report_covers_every_policy_in_both_markets_with_plots(tiny_run, tmp_path) -> None:
    report = evaluate_run(tiny_run, tmp_path, episodes=2, baselines=("historical", "random"))
    assert set(report["modes"]) == {"learned", "oracle"}
    for mode in report["modes"].values():
        assert set(mode) == {"historical", "random", "ppo"}
        assert mode["historical"]["profit_lift_vs_historical"] == 0.0
        assert {"revenue_wow_variance", "price_violations", "edge_share", "promo_share"} <= set(mode["ppo"])
    assert all((tmp_path / name).stat().st_size > 0 for name in ("profit_lift.png", "weekly_profit.png", "pricing_behaviour.png"))
    assert json.loads((tmp_path / "report.json").read_text())["plots"]
    assert "ppo" in format_report(report)


def test_common_seeds_make_evaluation_reproducible() -> None:
    first = evaluate_policies([RandomPolicy(seed=1)], TINY_ENV, episodes=2, modes=("learned",))
    again = evaluate_policies([RandomPolicy(seed=1)], TINY_ENV, episodes=2, modes=("learned",))
    assert first["modes"]["learned"] == again["modes"]["learned"]
    random = first["modes"]["learned"]["random"]
    assert random["price_violations"] > 0 and random["profit_lift_vs_historical"] < 0  # random prices lose money
    assert first["modes"]["learned"]["historical"]["price_violations"] == 0


def test_historical_is_added_as_the_reference() -> None:
    report = evaluate_policies([RandomPolicy()], TINY_ENV, episodes=1, modes=("learned",))
    assert HistoricalPricing.name in report["modes"]["learned"]
    with pytest.raises(Exception):
        evaluate_policies([RandomPolicy()], {**TINY_ENV, "products": -1}, episodes=1, modes=("learned",))
