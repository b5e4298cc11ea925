"""A run directory that is incomplete, hand-edited or from another market: one line naming the file."""

import json
import shutil
from pathlib import Path

import pytest

from agents.multi import MultiAgentTrainConfig, train_multi
from retailsim.cli import main
from tests.agents.conftest import TINY_ENV


def _evaluate_error(run: Path, out: Path, capsys) -> str:
    assert main(["agents", "evaluate", str(run), "--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.rsplit("\r", 1)[-1]  # what a terminal shows: a cleared progress bar is gone
    assert err.count("\n") == 1 and not out.joinpath("report.json").exists()
    return err


@pytest.mark.parametrize("damage,message", [
    (lambda run: (run / "config.json").unlink(), "not a complete training run (missing config.json)"),
    (lambda run: (run / "vecnormalize.pkl").unlink(), "not a complete training run (missing vecnormalize.pkl)"),
    (lambda run: (run / "config.json").write_text("{"), "config.json: not a readable run config (Expecting"),
    (lambda run: (run / "config.json").write_text("[]"), "config.json: a run config is a JSON object, got list"),
    (lambda run: (run / "config.json").write_text('{"env_kwargs": 3}'), "env_kwargs is int, not an object"),
    (lambda run: (run / "config.json").write_text("{}"), "config.json: not this version's run config (KeyError('env_kwargs'))"),
    (lambda run: (run / "vecnormalize.pkl").write_bytes(b"not a pickle"), "vecnormalize.pkl: cannot be loaded (UnpicklingError"),
    (lambda run: (run / "model.zip").write_bytes(b"PK"), "model.zip: cannot be loaded ("),
])  # fmt: skip
def test_a_damaged_ppo_run_is_refused_naming_the_file(damage, message, tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    damage(run)
    assert message in _evaluate_error(run, tmp_path / "report", capsys)


def test_a_ppo_run_evaluated_in_another_market_names_the_shapes(tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["env_kwargs"]["products"] = 4  # trained on 3 managed products
    (run / "config.json").write_text(json.dumps(config))
    err = _evaluate_error(run, tmp_path / "report", capsys)
    assert "the policy was trained on observations of shape (" in err and "(its scenario or env_kwargs differ)" in err


def test_a_damaged_multi_agent_run_is_refused_naming_the_file(tmp_path, capsys) -> None:
    run = tmp_path / "multi"
    config = MultiAgentTrainConfig(env_kwargs={**TINY_ENV, "episode_length": 4}, timesteps=8, num_envs=2, n_steps=4,
                                   progress=False)  # fmt: skip
    train_multi(config, run)
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "env_kwargs": {**saved["env_kwargs"], "products": 4}}))
    assert "policies.pt: the saved agents do not fit this market (RuntimeError: " in _evaluate_error(run, tmp_path / "r", capsys)
    (run / "config.json").write_text(json.dumps({**saved, "learning_rat": 1e-3}))
    assert "config.json: not this version's run config (TypeError(" in _evaluate_error(run, tmp_path / "r", capsys)
    (run / "config.json").unlink()
    assert "not a complete training run (missing config.json)" in _evaluate_error(run, tmp_path / "r", capsys)


def test_evaluating_a_run_a_kill_left_half_written_evaluates_the_previous_one(tiny_run, tmp_path, caplog) -> None:
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)  # the killed run's start: no model yet
    shutil.copytree(tiny_run, tmp_path / ".run.replaced")  # the previous run, moved aside until the new one was complete
    assert main(["agents", "evaluate", str(run), "--episodes", "1", "--out", str(tmp_path / "report")]) == 0
    assert "put back the previous output, which an interrupted run had moved aside" in caplog.text
    assert (run / "model.zip").exists() and not (tmp_path / ".run.replaced").exists()


def test_env_kwargs_the_environment_refuses_name_the_runs_config(tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "env_kwargs": {**config["env_kwargs"], "products": 10**6}}))
    err = _evaluate_error(run, tmp_path / "report", capsys)
    assert err.startswith(f"retailsim: error: {run / 'config.json'}: env_kwargs: products: 1000000 managed products asked")


def test_an_older_functions_run_that_recorded_several_stores_is_evaluated_on_its_one(tmp_path, caplog) -> None:
    """``train-multi`` forced one store in functions mode and kept the asked n_stores in config.json."""
    from agents.multi import evaluate_multi

    run = tmp_path / "multi"
    train_multi(MultiAgentTrainConfig(env_kwargs={**TINY_ENV, "episode_length": 4}, timesteps=8, num_envs=2, n_steps=4,
                                      progress=False), run)  # fmt: skip
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "env_kwargs": {**saved["env_kwargs"], "n_stores": 2}}))
    report = evaluate_multi(run, episodes=1)
    assert list(report["modes"]["learned"]) == ["pricing", "promo", "inventory"]
    assert "n_stores 2 ignored, as it was in training" in caplog.text
