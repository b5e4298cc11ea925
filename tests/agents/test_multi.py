import json
import math

import numpy as np
import pytest
import torch
from gymnasium.utils import seeding
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from world_model.errors import RetailSimError

from agents.envargs import EnvKwargsError
from agents.multi import (MultiAgentTrainConfig, evaluate_multi, historical_actions, initial_learners, market_for, play,
                          return_trend, train_multi)

from retailsim_env.core import BatchedRetailSim
from retailsim_env.multi_agent import MultiAgentView

ENV = {"propensities": "fixed", "products": 3, "episode_length": 4}


@pytest.mark.parametrize("mode,sharing", [("functions", "independent"), ("competition", "independent"), ("functions", "shared")])
def test_multi_agent_training_writes_every_agents_curve_and_evaluates(mode, sharing, tmp_path) -> None:
    config = MultiAgentTrainConfig(mode=mode, env_kwargs=ENV, timesteps=64, num_envs=2, n_steps=8, minibatch_size=8,
                                   n_epochs=1, sharing=sharing, report_episodes=2, progress=False)  # fmt: skip
    summary = train_multi(config, tmp_path)
    agents = ["pricing", "promo", "inventory"] if mode == "functions" else None
    assert summary["episode_rounds"] == 8 and summary["episodes"] == 16 and (agents is None or list(summary["agents"]) == agents)
    assert all(r["first_return"] is not None and isinstance(r["improved"], bool) for r in summary["agents"].values())
    accumulator = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.out.tfevents.*"))))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {f"charts/episodic_return/{a}" for a in summary["agents"]} <= tags and "charts/SPS" in tags
    report = evaluate_multi(tmp_path, episodes=2)
    assert set(report["modes"]) == {"learned", "oracle"}
    assert set(report["modes"]["learned"]) == set(summary["agents"])
    assert json.dumps(report)
    first = next(iter(report["modes"]["learned"].values()))
    assert {"trained", "untrained", "historical", "untrained_profit_lift_vs_historical"} <= set(first)
    assert first["untrained"]["profit"] != first["trained"]["profit"]  # training moved the policy
    view = MultiAgentView(market_for(config, 1).sim, mode)
    for agent, result in report["modes"]["learned"].items():
        assert list(result["historical"]["return_terms"]) == list(view.reward_terms(agent))


@pytest.mark.parametrize("mode", ["functions", "competition"])
def test_played_return_terms_sum_to_the_rewards_the_agents_earn(mode) -> None:
    """``play``'s per-term shares add up to the return, and the return is the sum of the weekly rewards
    the same episode pays through ``MultiAgentView.step``."""
    config = MultiAgentTrainConfig(mode=mode, env_kwargs=ENV, progress=False)
    view = market_for(config, 2)
    played = play(view, historical_actions, seed=5)
    view.sim.reset(np.arange(2), [seeding.np_random(5 + i)[0] for i in range(2)])
    earned = dict.fromkeys(view.agents, 0.0)
    for _ in range(view.sim.config.episode_length):
        rewards, _, _ = view.step(historical_actions(view))
        earned = {agent: earned[agent] + rewards[agent] for agent in view.agents}
    for agent in view.agents:
        assert played[agent]["return"] == pytest.approx(float(earned[agent].mean()))
        assert sum(played[agent]["return_terms"].values()) == pytest.approx(played[agent]["return"])
        assert played[agent]["return_terms"]["profit"] > 0


def test_return_trend_compares_the_first_and_last_episodes() -> None:
    assert return_trend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2) == {"first_return": 1.5, "last_return": 5.5, "improved": True}
    assert return_trend([3.0, 1.0], 1) == {"first_return": 3.0, "last_return": 1.0, "improved": False}
    assert return_trend([], 3) == {"first_return": None, "last_return": None, "improved": False}
    assert return_trend([5.0], 3) == {"first_return": None, "last_return": None, "improved": False}
    assert return_trend([1.0, 2.0, 4.0, 3.0, 5.0], 8) == {"first_return": 1.5, "last_return": 4.0, "improved": True}  # halves


def test_untrained_agents_are_the_runs_starting_point(tmp_path) -> None:
    """initial_learners seeds torch as train_multi does: two calls build the same networks, and one
    rollout-free training step's starting weights (n_epochs=0 updates nothing) equal them."""
    config = MultiAgentTrainConfig(mode="functions", env_kwargs=ENV, timesteps=8, num_envs=2, n_steps=4, n_epochs=0,
                                   minibatch_size=8, report_episodes=1, progress=False)  # fmt: skip
    train_multi(config, tmp_path)
    view = market_for(config, 1)
    saved = torch.load(tmp_path / "policies.pt", weights_only=True)["nets"]
    for learners in (initial_learners(view, config), initial_learners(view, config)):
        for agent, net in learners.nets.items():
            assert all(torch.equal(value, saved[agent][key]) for key, value in net.state_dict().items())


def test_a_one_sample_minibatch_leaves_the_weights_finite(tmp_path) -> None:
    """2 x 9 = 18 samples in minibatches of 17 leave one alone: its advantage has no spread to normalize by."""
    config = MultiAgentTrainConfig(mode="functions", env_kwargs=ENV, timesteps=18, num_envs=2, n_steps=9, n_epochs=2,
                                   minibatch_size=17, report_episodes=1, progress=False)  # fmt: skip
    train_multi(config, tmp_path)
    saved = torch.load(tmp_path / "policies.pt", weights_only=True)["nets"]
    assert all(torch.isfinite(value).all() for net in saved.values() for value in net.values())


def test_bad_mode_and_sharing_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        MultiAgentTrainConfig(mode="auction")
    with pytest.raises(ValueError, match="sharing"):
        MultiAgentTrainConfig(sharing="some")


@pytest.fixture(scope="module")
def started_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny functions run whose episodes start at data week 5 (``start_week``, a ``parallel_env`` argument)."""
    out = tmp_path_factory.mktemp("multi-run")
    config = MultiAgentTrainConfig(env_kwargs={**ENV, "start_week": 5}, timesteps=8, num_envs=2, n_steps=4,
                                   minibatch_size=8, n_epochs=1, progress=False)  # fmt: skip
    train_multi(config, out)
    return config, out


def test_start_week_is_honoured_in_training_and_evaluation(tmp_path, monkeypatch) -> None:
    """Every episode of the run, in training and in each policy's evaluation, starts at data week 5."""
    starts = []
    real_reset = BatchedRetailSim.reset

    def reset(self, copies, rngs, start_weeks=None):
        starts.append(None if start_weeks is None else list(start_weeks))
        return real_reset(self, copies, rngs, start_weeks)

    monkeypatch.setattr(BatchedRetailSim, "reset", reset)
    config = MultiAgentTrainConfig(env_kwargs={**ENV, "start_week": 5}, timesteps=16, num_envs=2, n_steps=4,
                                   minibatch_size=8, n_epochs=1, progress=False)  # fmt: skip
    train_multi(config, tmp_path)
    trained = len(starts)
    evaluate_multi(tmp_path, episodes=2)
    assert trained == 3 and len(starts) == 3 + 2 * 3  # two training episodes and the next one; 2 markets x 3 policies
    assert starts == [[5, 5]] * len(starts)


def test_profit_lift_is_nan_when_historical_profit_is_not_positive(started_run, monkeypatch) -> None:
    _, run = started_run
    zero = {"return": 0.0, "profit": 0.0}
    monkeypatch.setattr("agents.multi.play", lambda view, policy, seed, starts: {a: zero for a in view.agents})
    report = evaluate_multi(run, episodes=1)
    assert all(math.isnan(r["profit_lift_vs_historical"]) for mode in report["modes"].values() for r in mode.values())


@pytest.mark.parametrize("env_kwargs,message", [({"n_stores": 1}, "stores / n_stores: mode .competition. needs 2 or more"),
                                                ({"produts": 3}, "unknown 'produts'"),
                                                ({"render_mode": "ansi"}, "unknown 'render_mode'"),
                                                ({"start_week": 0}, "start_week must be a data week index >= 1")])  # fmt: skip
def test_bad_env_kwargs_are_rejected_before_the_run_directory_is_written(env_kwargs, message, tmp_path) -> None:
    config = MultiAgentTrainConfig(mode="competition", env_kwargs={**ENV, **env_kwargs}, timesteps=8, num_envs=2, n_steps=4,
                                   progress=False)  # fmt: skip
    with pytest.raises(EnvKwargsError, match=f"^env_kwargs: {message}"):
        train_multi(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_runs_store_count_follows_parallel_env(tmp_path) -> None:
    """``n_stores`` means what it means to ``parallel_env``: functions mode refuses a count other than one
    (it was forced to 1 while config.json kept the asked count), competition's null is its default 2."""
    functions = MultiAgentTrainConfig(mode="functions", env_kwargs={**ENV, "n_stores": 3}, timesteps=8, num_envs=2,
                                      n_steps=4, progress=False)  # fmt: skip
    with pytest.raises(EnvKwargsError, match="^env_kwargs: n_stores: mode 'functions' runs one store, got n_stores=3"):
        train_multi(functions, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    competition = MultiAgentTrainConfig(mode="competition", env_kwargs={**ENV, "n_stores": None})
    assert len(market_for(competition, 1).agents) == 2
    with pytest.raises(RetailSimError, match="n_stores: a store count, got '2'"):  # JSON's string: named, not a TypeError
        market_for(MultiAgentTrainConfig(mode="competition", env_kwargs={**ENV, "n_stores": "2"}), 1)
