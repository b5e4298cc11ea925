from pathlib import Path

import pytest

from retailsim.rundirs import replacing
from world_model.errors import RetailSimError


def _run(root: Path, name: str, text: str) -> Path:
    (root / name).mkdir()
    (root / name / "result").write_text(text)
    return root / name


def test_a_completed_block_replaces_the_old_directories(tmp_path) -> None:
    runs = [_run(tmp_path, "a", "old a"), _run(tmp_path, "b", "old b")]
    with replacing(runs):
        assert not any(run.exists() for run in runs)  # the block writes into empty places
        for run in runs[:1]:
            _run(tmp_path, run.name, "new")
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
            replacing([kept, tmp_path / "file"]):
        pass
    assert (kept / "result").read_text() == "old a"
