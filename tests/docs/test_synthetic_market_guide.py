"""The Python block of docs/synthetic_market.md runs as written (in a scratch directory: it writes a market)."""

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "synthetic_market.md"


def test_guide_block_runs(tmp_path, monkeypatch, capsys) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "guide"}
    exec(compile(block, f"{GUIDE.name}[block 0]", "exec"), namespace)
    assert (tmp_path / "runs" / "synthetic" / "time.csv").exists() and namespace["units"].shape == (10, 300)
    assert "lines in week 10" in capsys.readouterr().out
