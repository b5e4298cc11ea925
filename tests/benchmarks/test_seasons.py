"""``benchmarks/seasons.py`` and ``benchmarks/seasonal_stockouts.py`` run and report what the docs quote.
The shipped default's training weeks cover a year, so its index must beat no index on them and put the
December peak into the learned market (its season shape closer to the oracle's with seasons on)."""

from pathlib import Path

from agents.train import PPOTrainConfig, train_ppo

from tests.benchmarks.test_gpu_check_scripts import run


def test_the_shipped_index_beats_none_and_brings_the_december_peak() -> None:
    (report,) = run("seasons.py", "--products", "4", "--weeks", "52")
    training = report["index"]["training_weeks"]
    assert training["index"] < training["none"]
    shape = report["shape"]
    assert shape["seasons_on"]["december"] < 0.5 * shape["seasons_off"]["december"]
    (short,) = run("seasons.py", "--products", "2", "--weeks", "20")  # April-August: no December
    assert short["shape"]["seasons_on"]["december"] is None


def test_seasonal_stockouts_reports_both_periods_per_policy_and_market(tmp_path: Path) -> None:
    env_kwargs = {"propensities": "fixed", "products": 3, "episode_length": 12, "start_week": 30}
    train_ppo(PPOTrainConfig(env_kwargs=env_kwargs, timesteps=32, num_envs=2, n_steps=16, batch_size=16, n_epochs=1,
                             progress=False), tmp_path / "run")  # fmt: skip
    (report,) = run("seasonal_stockouts.py", str(tmp_path / "run"), "--episodes", "2")
    assert set(report["lost_demand"]) == {"learned", "oracle"}
    for market in report["lost_demand"].values():
        assert set(market) == {"ppo", "s_S_inventory"}
        for shares in market.values():  # weeks 30-41: Oct 30 (October), Nov 6 - Dec 25 (8), Jan 1-15 (3)
            assert shares["nov_dec_weeks"] == 2 * 8 and shares["other_weeks"] == 2 * 4
            assert 0.0 <= shares["nov_dec"] <= 1.0 and 0.0 <= shares["other"] <= 1.0
