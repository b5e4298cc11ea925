"""The built wheel carries every module and the shipped scenario: ``pip install`` (not editable) must give a
``gym.make("RetailSim-v0")`` that works. An editable install reads the source tree, so only a real build
shows a module left out of ``packages.find`` or a scenario file out of ``package-data``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("retailsim", "retailsim_env", "world_model", "agents")


def _source_files() -> set[str]:
    """Every file of the four packages a wheel must hold (compiled caches aside), as wheel paths."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_wheel_holds_every_module_the_scenario_and_type_markers(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")  # the build backend; the [test] extra installs it
    source = tmp_path / "source"  # a copy: a build writes build/ and *.egg-info/ beside its sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("retailsim-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        entry_points = next(name for name in in_wheel if name.endswith(".dist-info/entry_points.txt"))
        console_scripts = archive.read(entry_points).decode()
    expected = _source_files()
    assert {f"{package}/py.typed" for package in PACKAGES} <= expected
    assert "retailsim_env/scenarios/default/scenario.json" in expected
    assert sorted(expected - in_wheel) == []
    assert "retailsim = retailsim.cli:main" in console_scripts
