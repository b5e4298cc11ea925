"""The command line: help at every level, one-line user errors, and the demo on a tiny market."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from retailsim import cli
from retailsim.cli import build_parser, main
from retailsim.demo import DataDemoConfig, run_data_demo


def _subcommand_paths(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommand_paths(sub, prefix + (name,))


def test_help_at_every_level(capsys) -> None:
    paths = [()] + list(_subcommand_paths(build_parser()))
    assert ("data", "ingest") in paths and ("data", "generate") in paths and ("demo",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: retailsim" in capsys.readouterr().out


def test_console_script_reports_a_user_error_in_one_line(tmp_path: Path, capsys) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "retailsim", "data", "ingest", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"retailsim: error: {tmp_path / 'none'}: does not exist"
    (tmp_path / "empty").mkdir()  # the same one line in process, without a second interpreter
    assert main(["data", "ingest", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"retailsim: error: {tmp_path / 'empty'}: no input files (*.csv, *.csv.gz, *.parquet)"


def test_generate_then_ingest_through_the_cli(tmp_path: Path, capsys) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    args = ["data", "generate", "--out", str(raw), "--customers", "40", "--products", "50", "--stores", "3"]
    assert main([*args, "--weeks", "2", "--dirty", "0.05", "--quiet"]) == 0
    generated = json.loads(capsys.readouterr().out)
    assert main(["data", "ingest", str(raw), "--out", str(out), "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_read"] == generated["rows"]
    assert report["rows_quarantined"] == sum(generated["defects"].values())
    assert main(["data", "facts", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == report["rows_accepted"]
    assert main([*args, "--weeks", "2", "--quiet"]) == 2  # exists: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_data_demo_generates_ingests_and_reports(tmp_path: Path, capsys) -> None:
    report = run_data_demo(tmp_path, DataDemoConfig(customers=60, products=80, stores=3, weeks=3, dirty_rate=0.02), progress=False)
    printed = capsys.readouterr().out
    assert report["rows_quarantined"] > 0
    assert (tmp_path / "ingested" / "ingest_report.json").exists()
    assert "size-independent facts" in printed and "items_per_basket" in printed
    again = run_data_demo(tmp_path, DataDemoConfig(customers=60, products=80, stores=3, weeks=3, dirty_rate=0.02), progress=False)
    assert again["rows_read"] == report["rows_read"]  # reruns replace the previous demo


@pytest.mark.parametrize("part", ["raw", "ingested"])
def test_data_demo_refuses_to_replace_what_no_data_demo_wrote(part, tmp_path: Path, capsys) -> None:
    """OUT/raw of the user's own transaction files was deleted by the demo's generate step."""
    (tmp_path / part).mkdir()
    (tmp_path / part / "transactions_200601.csv").write_text("the user's own")
    assert main(["data", "demo", "--out", str(tmp_path), "--quiet"]) == 2
    assert f"--out: {tmp_path / part} exists and is not a" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [part]
    assert (tmp_path / part / "transactions_200601.csv").read_text() == "the user's own"


def test_example_script_runs(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "ingest_and_query.py"
    result = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--customers", "60"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "top products by revenue" in result.stdout and "true elasticity" in result.stdout


def test_help_shows_generate_defaults_and_literal_percent_signs(capsys) -> None:
    for path in (["data", "generate"], ["whatif"]):
        with pytest.raises(SystemExit):
            main([*path, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("customers", 5000), ("products", 5000), ("stores", 760), ("weeks", 94), ("format", "csv")):
        assert re.search(f"--{option} \\S+ [^(-]*\\(default: {default}\\)", text), option
    assert "--set PRD0900001=+10% --promo DEP00003=20% --weeks 4" in text and "%%" not in text


def test_training_result_is_printed_by_rank_0_only(tmp_path, monkeypatch, capsys) -> None:
    from retailsim.cli import _print_training

    summary = {"epochs_run": 2, "monitor": "top1", "best_value": 0.5, "best_epoch": 1}
    monkeypatch.setenv("RANK", "1")
    _print_training(summary, tmp_path)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    _print_training(summary, tmp_path)
    assert "epochs run: 2, best top1 = 0.5000" in capsys.readouterr().out


@pytest.mark.parametrize("command, handler, then", [
    (["pipeline", "run", "in", "--out", "w"], "_cmd_pipeline_run", "; rerun the same command to resume"),
    (["train", "world-model", "w", "--out", "c"], "_cmd_train_world_model", "; rerun with --resume to continue from OUT/last.pt"),
    (["agents", "train", "--out", "r"], "_cmd_agents_train", "; nothing of this run was kept; a previous one in --out is as it was"),
    (["data", "facts", "d"], "_cmd_data_facts", ""),
])  # fmt: skip
def test_an_interrupt_says_what_the_command_left(command, handler, then, monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, handler, interrupted)
    assert main(command) == 130
    assert capsys.readouterr().err == f"retailsim: interrupted{then}\n"


def test_the_learning_rate_floor_is_an_option() -> None:
    """docs/world_models.md: the masked objective's design phases are --lr 5e-5 --min-lr-ratio 0.2."""
    args = build_parser().parse_args(["train", "world-model", "w", "--out", "o", "--lr", "5e-5", "--min-lr-ratio", "0.2"])
    config = cli._train_config(args)
    assert config.lr * config.min_lr_ratio == pytest.approx(1e-5)
    assert cli._train_config(build_parser().parse_args(["train", "store-visit", "w", "--out", "o"])).min_lr_ratio == 0.1


def test_a_reader_of_stdout_that_leaves_ends_the_command_quietly(tmp_path: Path) -> None:
    """``retailsim ... | head -1``: the pipe's reader is gone before the command prints; exit 141 (as a
    shell's SIGPIPE), no traceback. The handler's flush succeeded there, so it re-raised."""
    command = [sys.executable, "-m", "retailsim", "data", "generate", "--out", str(tmp_path / "m"), "--customers", "30",
               "--products", "30", "--stores", "2", "--weeks", "2", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader leaves first
    err = process.stderr.read().decode()
    assert process.wait() == 141 and "Traceback" not in err, err


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "/data/out"),
                                   IsADirectoryError(21, "Is a directory", "m.json.tmp", None, "m.json")])  # fmt: skip
def test_a_path_the_system_refuses_is_one_line_naming_it_and_verbose_keeps_the_trace(error, monkeypatch, capsys) -> None:
    def refused(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_data_generate", refused)
    assert main(["data", "generate", "--out", "x"]) == 2
    err = capsys.readouterr().err
    paths = f"{error.filename}{f' -> {error.filename2}' if error.filename2 else ''}"
    assert err == f"retailsim: error: {paths}: {error.strerror} (rerun with -v for the trace)\n"
    with pytest.raises(type(error)):
        main(["-v", "data", "generate", "--out", "x"])


def test_a_corrupt_data_file_or_a_ctrl_c_inside_duckdb_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import duckdb

    (tmp_path / "part.parquet").write_bytes(b"PAR1 not really")

    def reads(args):
        duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path / 'part.parquet'}')").fetchall()

    monkeypatch.setattr(cli, "_cmd_data_facts", reads)
    assert main(["data", "facts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("retailsim: error: a data file could not be read (") and err.count("\n") == 1

    def buggy(args):  # a ProgrammingError of the code, not of the data: its traceback stays
        duckdb.execute("SELECT ?", [1, 2])

    monkeypatch.setattr(cli, "_cmd_data_facts", buggy)
    with pytest.raises(duckdb.InvalidInputException):
        main(["data", "facts", str(tmp_path)])

    def interrupted(args):
        raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")

    monkeypatch.setattr(cli, "_cmd_data_facts", interrupted)
    assert main(["data", "facts", str(tmp_path)]) == 130
    assert capsys.readouterr().err.startswith("retailsim: interrupted")


@pytest.mark.parametrize("out,message", [("DIR", "is a directory; name the file to write"), ("", "'' is not a file name"),
                                         ("FILE/m.json", "is a file, so")])  # fmt: skip
def test_evaluate_refuses_an_unwritable_out_before_any_work(out, message, tmp_path: Path, capsys) -> None:
    (tmp_path / "FILE").write_text("x")
    out = out.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "FILE"))
    for command in (["evaluate", str(tmp_path / "no-work")], ["evaluate-response", str(tmp_path / "no-work"),
                                                             "--world-model", "w", "--store-visit", "s"]):  # fmt: skip
        assert main([*command, "--out", out]) == 2
        assert message in capsys.readouterr().err


def test_an_ingest_that_accepts_no_row_exits_2_and_keeps_its_report(tmp_path: Path, capsys) -> None:
    from tests.conftest import lgsr_row, write_lgsr

    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(QUANTITY="0")])
    assert main(["data", "ingest", str(source), "--out", str(tmp_path / "ingested"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no row accepted; every row's reason is in" in err and err.count("\n") == 1
    assert json.loads((tmp_path / "ingested" / "ingest_report.json").read_text())["rows_quarantined"] == 1


def test_an_option_that_does_not_parse_names_the_kind_of_value_it_needs(capsys) -> None:
    for argv, message in ((["train", "store-visit", "w", "--out", "o", "--epochs", "abc"], "invalid positive integer value: 'abc'"),
                          (["agents", "train", "--out", "o", "--gamma", "x"], "invalid number value: 'x'")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
