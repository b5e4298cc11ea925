import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from world_model.errors import RetailSimError
from world_model.files import atomic_write, json_safe, recover_replaced, replacing, write_json_atomic


@pytest.mark.parametrize("durable", [False, True])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, durable) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, {"week": 1}, durable=durable)

    def half(handle):
        handle.write(b'{"we')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half, durable=durable)
    assert json.loads(target.read_text()) == {"week": 1} and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    write_json_atomic(target, {"week": 2}, indent=1, durable=durable)
    assert target.read_text() == '{\n "week": 2\n}\n'


def _run(root: Path, name: str, text: str) -> Path:
    (root / name).mkdir()
    (root / name / "result").write_text(text)
    return root / name


def test_a_completed_block_replaces_the_old_directories(tmp_path) -> None:
    runs = [_run(tmp_path, "a", "old a"), _run(tmp_path, "b", "old b")]
    with replacing(runs):
        assert not any(run.exists() for run in runs)  # the block writes into empty places
        _run(tmp_path, "a", "new")
    assert (tmp_path / "a" / "result").read_text() == "new" and not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no aside directories left


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_a_failed_block_puts_the_old_directories_back(tmp_path, error) -> None:
    runs = [_run(tmp_path, "a", "old a"), tmp_path / "absent"]
    with pytest.raises(error), replacing(runs):
        _run(tmp_path, "a", "half")
        _run(tmp_path, "absent", "half")
        raise error
    assert (tmp_path / "a" / "result").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_an_output_path_that_is_a_file_is_refused_before_anything_moves(tmp_path) -> None:
    (tmp_path / "file").write_text("not a run")
    kept = _run(tmp_path, "a", "old a")
    with pytest.raises(RetailSimError, match=r"--out: .*file exists and is not a directory"), \
            replacing([kept, tmp_path / "file"], flag="--out"):
        pass
    assert (kept / "result").read_text() == "old a"


@pytest.mark.parametrize("name", [".", ".."])
def test_the_working_directory_or_one_holding_it_is_refused_before_anything_moves(tmp_path, monkeypatch, name) -> None:
    kept, work = _run(tmp_path, "kept", "old"), _run(_run(tmp_path, "outer", "outer"), "work", "here")
    monkeypatch.chdir(work)
    with pytest.raises(RetailSimError, match=rf"^--out: {re.escape(name)} is the working directory or holds it"), \
            replacing([kept, Path(name)], flag="--out"):
        pass
    with pytest.raises(RetailSimError, match=rf"^{re.escape(name)}: is the working directory"):
        recover_replaced(Path(name))
    assert (kept / "result").read_text() == "old" and (work / "result").read_text() == "here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "outer"]


def test_a_symbolic_link_is_refused_and_what_it_names_kept(tmp_path) -> None:
    real = _run(tmp_path, "real", "old")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    with pytest.raises(RetailSimError, match=r"^--out: .*link is a symbolic link"), \
            replacing([tmp_path / "link"], flag="--out"):
        pass
    assert (tmp_path / "link" / "result").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_failure_while_moving_the_directories_aside_puts_back_those_moved(tmp_path, monkeypatch) -> None:
    first, second = _run(tmp_path, "a", "old a"), _run(tmp_path, "b", "old b")
    rename = os.replace

    def failing_on_b(source, destination):
        if Path(source) == second:
            raise PermissionError("b is busy")
        rename(source, destination)

    monkeypatch.setattr(os, "replace", failing_on_b)
    with pytest.raises(PermissionError), replacing([first, second]):
        pytest.fail("the block must not run")
    assert (first / "result").read_text() == "old a" and (second / "result").read_text() == "old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def _crash_inside(target: Path, after_block: bool = False) -> None:
    """A power cut inside ``replacing([target])``: a process that dies (``os._exit``) in the block, after
    writing half a new ``target``; with ``after_block`` it dies while the old directory is being deleted."""
    crash = "os._exit(3)"
    script = f"""
import os, shutil
from pathlib import Path
from world_model.files import replacing
target = Path({str(target)!r})
with replacing([target]):
    target.mkdir()
    (target / "result").write_text("half")
    if not {after_block}:
        {crash}
    shutil.rmtree = lambda path, **_: {crash}
"""
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 3


def test_a_hard_crash_inside_the_block_is_undone_on_the_next_run(tmp_path) -> None:
    target = _run(tmp_path, "a", "old a")
    _crash_inside(target)
    assert (target / "result").read_text() == "half" and (tmp_path / ".a.replaced" / "result").exists()
    assert recover_replaced(target) and (target / "result").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and not recover_replaced(target)


def test_a_hard_crash_while_deleting_the_old_directory_keeps_the_new_one(tmp_path) -> None:
    target = _run(tmp_path, "a", "old a")
    _crash_inside(target, after_block=True)
    assert (target / "result").read_text() == "half"  # the block had completed: this is the new output
    assert not recover_replaced(target) and (target / "result").read_text() == "half"
    with replacing([target]):  # the next run starts clean, from the completed one
        assert not target.exists() and not (tmp_path / ".a.discarded").exists()
        _run(tmp_path, "a", "next")
    assert (target / "result").read_text() == "next" and sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_json_safe_turns_every_non_finite_float_into_null_and_keeps_the_rest() -> None:
    payload = {"nan": float("nan"), "inf": [1.0, float("-inf"), np.float32("nan")], "nested": {"x": (np.float64(2.5), 3)},
               "kept": [True, None, "NaN", 0]}  # fmt: skip
    assert json_safe(payload) == {"nan": None, "inf": [1.0, None, None], "nested": {"x": [2.5, 3]},
                                  "kept": [True, None, "NaN", 0]}  # fmt: skip
    assert json.dumps(json_safe(payload), allow_nan=False)  # strict JSON
