import json
from pathlib import Path

import pytest

from world_model.errors import RetailSimError
from retailsim.cli import main
from retailsim.demo import DemoConfig, run_demo
from tests.agents.conftest import TINY_ENV


def test_train_evaluate_and_train_multi_commands(tmp_path, capsys) -> None:
    env = json.dumps(TINY_ENV)
    assert main(["agents", "train", "--env-kwargs", env, "--timesteps", "32", "--num-envs", "2", "--n-steps", "16",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0  # fmt: skip
    assert main(["agents", "evaluate", str(tmp_path / "run"), "--episodes", "1", "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.json").exists()
    assert main(["agents", "train-multi", "--mode", "competition", "--env-kwargs", json.dumps({**TINY_ENV, "episode_length": 4}),
                 "--timesteps", "16", "--num-envs", "2", "--n-steps", "4", "--out", str(tmp_path / "multi"), "--quiet"]) == 0  # fmt: skip
    assert main(["agents", "evaluate", str(tmp_path / "multi"), "--episodes", "1", "--out", str(tmp_path / "mreport")]) == 0
    report = json.loads((tmp_path / "mreport" / "report.json").read_text())
    assert report["plots"] == [str(tmp_path / "mreport" / name) for name in ("agent_returns.png", "return_terms.png")]
    assert all(open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for path in report["plots"])
    out = capsys.readouterr().out
    assert "ppo" in out and "store_" in out
    assert "historical  return terms: profit +" in out and "boundary_penalty" in out  # each return term by term


def test_user_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["agents", "train", "--env-kwargs", "{nope", "--out", str(tmp_path)]) == 2
    assert main(["agents", "evaluate", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--env-kwargs: not JSON" in err and "not a training run" in err


def test_demo_trains_evaluates_and_reports(tmp_path, capsys) -> None:
    (tmp_path / "ppo" / "tensorboard" / "ppo_1").mkdir(parents=True)  # a previous demo's run: replaced, not joined
    (tmp_path / "ppo" / "config.json").write_text("{}")
    report = run_demo(tmp_path, DemoConfig(timesteps=64, episodes=1, products=3), progress=False)
    assert [p.name for p in (tmp_path / "ppo" / "tensorboard").iterdir()] == ["ppo_1"]
    assert any((tmp_path / "ppo" / "tensorboard" / "ppo_1").iterdir())
    printed = capsys.readouterr().out
    assert "ppo" in report["modes"]["learned"] and "oracle" in report["modes"]
    assert (tmp_path / "report" / "profit_lift.png").exists() and (tmp_path / "ppo" / "tensorboard").exists()
    assert "TensorBoard" in printed and "myopic_greedy" in printed


def test_an_interrupted_demo_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    import retailsim.demo

    for part, marker in (("ppo", "config.json"), ("report", "report.json")):
        (tmp_path / part).mkdir()
        (tmp_path / part / marker).write_text("the last demo")

    def interrupted(run, report_dir, config, progress):
        run.mkdir()
        (run / "model.zip").write_text("half a run")
        raise KeyboardInterrupt

    monkeypatch.setattr(retailsim.demo, "_train_and_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path, DemoConfig(timesteps=64, episodes=1, products=3), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppo", "report"]
    assert [p.name for p in (tmp_path / "ppo").iterdir()] == ["config.json"]
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["report.json"]


@pytest.mark.parametrize("part", ["ppo", "report"])
def test_a_demo_refuses_to_replace_what_no_demo_wrote(part, tmp_path, capsys) -> None:
    (tmp_path / part).mkdir()
    (tmp_path / part / "notes.txt").write_text("the user's own")
    assert main(["demo", "--out", str(tmp_path), "--timesteps", "8", "--quiet"]) == 2
    assert f"{tmp_path / part} exists and is not a" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [part] and (tmp_path / part / "notes.txt").read_text() == "the user's own"


@pytest.mark.parametrize("command", [["agents", "train", "--quiet"], ["agents", "train-multi", "--mode", "competition"],
                                     ["agents", "evaluate", "RUN"], ["demo", "--quiet"]])  # fmt: skip
def test_an_out_path_that_is_a_file_is_a_one_line_error(command, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("not a directory")
    args = [str(tmp_path) if a == "RUN" else a for a in command]
    assert main([*args, "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"retailsim: error: --out: {tmp_path / 'file'} exists and is not a directory\n"


@pytest.mark.parametrize("command", [["train"], ["train-multi"], ["evaluate", "RUN"]])
def test_a_negative_seed_is_an_argument_error(command, tmp_path, capsys) -> None:
    args = [str(tmp_path) if a == "RUN" else a for a in command]
    with pytest.raises(SystemExit) as exit_info:
        main(["agents", *args, "--seed", "-1", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--seed: must be a non-negative integer, got -1" in capsys.readouterr().err


def test_a_rollout_too_small_for_ppo_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["agents", "train", "--num-envs", "1", "--n-steps", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "batch_size and num_envs x n_steps must be 2 or more" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train"], ["train-multi", "--mode", "competition"]])
@pytest.mark.parametrize("env_kwargs,message", [('{"produts": 3}', "--env-kwargs: unknown 'produts' (known: scenario, "),
                                                ('{"demand": "foo"}', "--env-kwargs: demand must be one of"),
                                                ('{"config": "seasons"}', "--env-kwargs: config: an EnvConfig or a dict"),
                                                ('{"n_stores": "2"}', "--env-kwargs: n_stores: a store count, got '2'")])  # fmt: skip
def test_bad_env_kwargs_are_one_line_errors_and_write_no_run(command, env_kwargs, message, tmp_path, capsys) -> None:
    assert main(["agents", *command, "--env-kwargs", env_kwargs, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"retailsim: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_negative_checkpoint_interval_is_an_argument_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["agents", "train", "--checkpoint-every", "-5", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and "--checkpoint-every: must be a non-negative integer" in capsys.readouterr().err


def test_ppo_options_reach_the_run_config_and_their_help_gives_the_configs_defaults(tmp_path, capsys) -> None:
    from agents.multi import MultiAgentTrainConfig
    from agents.train import PPOTrainConfig

    from retailsim.cli import PPO_OPTIONS

    for flag, _, default, _ in PPO_OPTIONS:  # the help's defaults are the configs' own
        field = flag[2:].replace("-", "_")
        assert getattr(PPOTrainConfig(), field) == getattr(MultiAgentTrainConfig(), field) == default
    for command, config, epochs in ((["train"], PPOTrainConfig(), 10), (["train-multi"], MultiAgentTrainConfig(), 5)):
        with pytest.raises(SystemExit):
            main(["agents", *command, "--help"])
        assert config.n_epochs == epochs and f"passes over each rollout (default {epochs})" in capsys.readouterr().out
    options = ["--learning-rate", "1e-3", "--gamma", "0.9", "--gae-lambda", "1", "--clip-range", "0.1", "--ent-coef",
               "0.01", "--n-epochs", "2"]  # fmt: skip
    for command in (["train"], ["train-multi", "--mode", "functions"]):
        run = tmp_path / command[0]
        assert main(["agents", *command, *options, "--env-kwargs", json.dumps({**TINY_ENV, "episode_length": 4}),
                     "--timesteps", "8", "--num-envs", "2", "--n-steps", "4", "--out", str(run), "--quiet"]) == 0  # fmt: skip
        saved = json.loads((run / "config.json").read_text())
        assert {k: saved[k] for k in ("learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef", "n_epochs")} == {
            "learning_rate": 1e-3, "gamma": 0.9, "gae_lambda": 1.0, "clip_range": 0.1, "ent_coef": 0.01, "n_epochs": 2}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["agents", "train", "--gamma", "1.5", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "--gamma: must be in [0, 1], got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["agents", "train", "--learning-rate", "0", "--out", str(tmp_path / "bad")])
    assert "--learning-rate: must be in (0, 1], got 0" in capsys.readouterr().err


def test_agent_help_says_what_is_written_and_the_env_kwargs_default(capsys) -> None:
    for command in (["train"], ["train-multi"], ["evaluate"]):
        with pytest.raises(SystemExit):
            main(["agents", *command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.count('merged into the default {"propensities": "fixed"}') == 2
    assert "For an 'agents train-multi' run: write REPORT_DIR/report.json, agent_returns.png and return_terms.png" in text


def test_a_run_directory_in_use_needs_overwrite_and_survives_a_failed_one(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.zip").write_text("the previous run")
    assert main(["agents", "train", "--out", str(run), "--quiet"]) == 2
    assert "--out: " in capsys.readouterr().err and (run / "model.zip").read_text() == "the previous run"
    assert main(["agents", "train", "--env-kwargs", '{"produts": 3}', "--out", str(run), "--overwrite", "--quiet"]) == 2
    assert (run / "model.zip").read_text() == "the previous run" and sorted(tmp_path.iterdir()) == [run]
    assert main(["agents", "train", "--env-kwargs", json.dumps(TINY_ENV), "--timesteps", "16", "--num-envs", "2",
                 "--n-steps", "8", "--out", str(run), "--overwrite", "--quiet"]) == 0  # fmt: skip
    assert (run / "model.zip").read_bytes()[:2] == b"PK" and sorted(tmp_path.iterdir()) == [run]


def test_a_run_that_fails_leaves_nothing_half_written(tmp_path) -> None:
    """A new run that fails is removed; with --overwrite the old run comes back. After a hard kill (the
    old run aside, half a new one in its place) the next command puts the old run back first, so
    without --overwrite it refuses the previous run, not the half one."""
    from retailsim.cli import _train_run

    def failing(config, out):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "partial").write_text("half a run")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train_run(failing, None, str(tmp_path / "new"), overwrite=False)
    assert not (tmp_path / "new").exists()
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.zip").write_text("the previous run")
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            _train_run(failing, None, str(run), overwrite=True)
        assert [p.name for p in run.iterdir()] == ["model.zip"] and (run / "model.zip").read_text() == "the previous run"
    run.rename(tmp_path / ".run.replaced")  # what a kill -9 during a replacing run leaves
    (run / "partial").parent.mkdir()
    (run / "partial").write_text("half a run")
    with pytest.raises(RetailSimError, match=r"^--out: .*run output directory exists and is not empty"):
        _train_run(failing, None, str(run), overwrite=False)
    assert [p.name for p in run.iterdir()] == ["model.zip"] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_evaluation_shows_a_progress_bar_unless_quiet(tiny_run, tmp_path, capsys) -> None:
    assert main(["agents", "evaluate", str(tiny_run), "--episodes", "1", "--out", str(tmp_path / "a")]) == 0
    assert "evaluate: 100%" in capsys.readouterr().err  # 6 policies x 2 markets: about a minute at the demo's size
    assert main(["agents", "evaluate", str(tiny_run), "--episodes", "1", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "evaluate:" not in capsys.readouterr().err
