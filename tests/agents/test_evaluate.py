import json
import math

import numpy as np
import pytest
from world_model.errors import RetailSimError

import agents.evaluate as evaluate_module
from agents.evaluate import evaluate_policies, evaluate_run, format_report, profit_lift, run_episodes, summarize
from agents.policies import BASELINES, HistoricalPricing, RandomPolicy
from retailsim_env import RetailSimVectorEnv
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
    terms = random["return_terms"]  # the shaped return, term by term
    assert list(terms) == ["profit", "boundary_penalty", "diversity_bonus", "inventory_alignment"]
    assert sum(terms.values()) == pytest.approx(random["shaped_return"])
    assert terms["boundary_penalty"] < 0 < terms["diversity_bonus"]  # random prices hit bounds and spread
    assert first["modes"]["learned"]["historical"]["price_violations"] == 0


def test_historical_is_added_as_the_reference() -> None:
    report = evaluate_policies([RandomPolicy()], TINY_ENV, episodes=1, modes=("learned",))
    assert HistoricalPricing.name in report["modes"]["learned"]
    with pytest.raises(RetailSimError, match="^env_kwargs: products: -1 managed products asked"):
        evaluate_policies([RandomPolicy()], {**TINY_ENV, "products": -1}, episodes=1, modes=("learned",))


def test_the_shared_random_baseline_draws_the_same_actions_in_every_run() -> None:
    random = BASELINES["random"]  # one instance, as evaluate_run uses it for every mode and every call
    venv = RetailSimVectorEnv(2, **TINY_ENV)
    first, again = run_episodes(random, venv, seed=3), run_episodes(random, venv, seed=3)
    assert all(np.array_equal(first[key], again[key]) for key in first)
    reports = [evaluate_policies([random], TINY_ENV, episodes=2, modes=("learned",)) for _ in range(2)]
    assert reports[0]["modes"] == reports[1]["modes"]


def test_profit_lift_needs_a_positive_reference() -> None:
    assert profit_lift(15.0, 10.0) == pytest.approx(0.5)
    assert math.isnan(profit_lift(5.0, 0.0)) and math.isnan(profit_lift(5.0, -10.0))


def test_summary_figures_are_their_definitions() -> None:
    """Profit: the episode's sum, averaged over episodes; week-on-week revenue variance per episode, averaged;
    stock-out share: lost units over demanded units, all weeks pooled."""
    weekly = {
        "profit": np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]]), "revenue": np.array([[10.0, 20.0, 10.0], [10.0, 10.0, 10.0]]),
        "price_violations": np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), "edge_share": np.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.25]]),
        "promo_share": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), "stockout_units": np.array([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]]),
        "demand": np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 0.0]]), "reward": np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]),
    }  # fmt: skip
    summary = summarize(weekly)
    assert summary["profit"] == pytest.approx(4.5) and summary["profit_sd"] == pytest.approx(1.5)
    assert summary["revenue"] == pytest.approx(35.0)
    assert summary["revenue_wow_variance"] == pytest.approx(np.var([1.0, -0.5]) / 2)  # the second episode is flat
    assert summary["price_violations"] == pytest.approx(1.0) and summary["edge_share"] == pytest.approx(0.125)
    assert summary["promo_share"] == pytest.approx(1 / 6) and summary["stockout_share"] == pytest.approx(4 / 50)
    assert summary["shaped_return"] == pytest.approx(1.25) and summary["return_terms"] == {}
    summary = summarize({**weekly, "term_profit": np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 1.0]])})
    assert summary["return_terms"] == {"profit": pytest.approx(1.75)}  # summed over weeks, averaged over episodes
    one_week = summarize({key: value[:, :1] for key, value in weekly.items()})  # no change to take a variance of
    assert one_week["revenue_wow_variance"] is None and one_week["profit"] == pytest.approx(0.5)


def test_every_policy_plays_the_same_episodes(monkeypatch) -> None:
    """The lifts compare policies on the same start weeks (and the same generators' seeds)."""
    starts = {}

    def recorded(policy, venv, seed):
        weekly = run_episodes(policy, venv, seed)
        starts[policy.name] = (venv.batch.sim.market.week - venv.batch.sim.config.episode_length).tolist()
        return weekly

    monkeypatch.setattr(evaluate_module, "run_episodes", recorded)
    evaluate_policies([RandomPolicy(seed=1), BASELINES["cost_plus"]], TINY_ENV, episodes=3, modes=("learned",))
    assert set(starts) == {"historical", "random", "cost_plus"}
    assert len({tuple(weeks) for weeks in starts.values()}) == 1 and len(set(starts["random"])) > 1
