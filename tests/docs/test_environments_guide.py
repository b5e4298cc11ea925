"""Every Python block of docs/environments.md runs as written (the guide's examples cannot rot)."""

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "environments.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_guide_has_an_example_for_each_entry_point() -> None:
    text = "\n".join(BLOCKS)
    for entry in ("Scenario(", 'gym.make("RetailSim-v0"', "DictActionWrapper", "oracle",
                  "make_vec", "RetailSimVecEnv", "parallel_env", "retailsim_env.env("):  # fmt: skip
        assert entry in text, entry


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_guide_block_runs(index: int, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # what a block writes stays in the test's folder
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3"))  # SB3's default logger folder, else the system temp dir
    exec(compile(BLOCKS[index], f"{GUIDE.name}[block {index}]", "exec"), {"__name__": "guide"})
    assert capsys.readouterr().out.strip()  # every block prints what it shows
