"""The agent and environment example scripts run with tiny step counts."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_random_rollout() -> None:
    assert "total profit over 2 random weeks" in run("random_rollout.py", "--weeks", "2")
    assert "week" in run("random_rollout.py", "--weeks", "1", "--demand", "oracle")


def test_ppo_training_and_reading_its_curves(tmp_path) -> None:
    out = run("train_ppo.py", "--timesteps", "64", "--episodes", "1", "--out", str(tmp_path))
    assert "myopic_greedy" in out and "ppo" in out
    curves = run("read_tensorboard.py", str(tmp_path / "run"), "--out", str(tmp_path / "curves.png"))
    assert "charts/episodic_return" in curves and (tmp_path / "curves.png").exists()


def test_multi_agent_loop() -> None:
    out = run("multi_agent_loop.py", "--weeks", "2")
    assert "functions:" in out and "competition" in out
