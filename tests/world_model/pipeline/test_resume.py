"""A killed ``retailsim pipeline run`` resumes without redoing finished stages (issue 3, Done-when).

The CLI runs in its own process group and gets SIGKILL while a later stage (``product_embeddings``, the
longest one on a small market) is running, i.e. after several stages have published their outputs and
manifests. Everything asserted is what the test saw when the process died: which manifests existed and
what they held, which scratch folders were left. The rerun must skip exactly the stages whose manifest
existed, leave their files untouched, run the others, clean the scratch up, and end with the same
artifacts as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from world_model.pipeline.stages import ALL_STAGES

REPO = Path(__file__).resolve().parents[3]
KILL_INSIDE = "product_embeddings"
"""The stage the kill lands in: its scratch folder exists and the stages before it have manifests."""
STAGE = {s.name: s for s in ALL_STAGES}
EARLIER = [s.name for s in ALL_STAGES[: [s.name for s in ALL_STAGES].index(KILL_INSIDE)]]
VOLATILE_KEYS = {"seconds"}
"""Keys of JSON artifacts that measure the run rather than describe the data."""
FLOAT_TOLERANCE = {np.float64: {"rtol": 1e-9, "atol": 1e-12}, np.float32: {"rtol": 1e-5, "atol": 1e-6}}
"""Two uninterrupted runs already differ in the last bits of some floats: DuckDB's parallel sum() adds
in thread-scheduling order (product_graph_nodes.mean_unit_price, the store normalizers). Everything
else (text, integers, booleans, shapes, dtypes) must be identical."""


def pipeline_command(ingested: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "retailsim", "pipeline", "run", str(ingested), "--out", str(workdir),
            "--split", "8,10", "--quiet"]


def start(ingested: Path, workdir: Path) -> subprocess.Popen:
    # Own session = own process group: the kill reaches DuckDB's and torch's threads and any child.
    return subprocess.Popen(pipeline_command(ingested, workdir), cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def manifests(workdir: Path) -> dict[str, bytes]:
    folder = workdir / "manifests"
    return {p.stem: p.read_bytes() for p in folder.glob("*.json")} if folder.is_dir() else {}


def stage_files(workdir: Path, name: str) -> dict[str, tuple[int, str]]:
    """Each output of a stage: (inode, sha256). A rewrite (scratch file renamed over it) changes the inode."""
    stage = STAGE[name]
    files = {}
    for output in stage.outputs:
        path = workdir / stage.section / output
        files[output] = (path.stat().st_ino, hashlib.sha256(path.read_bytes()).hexdigest())
    return files


def scratch_left(workdir: Path) -> list[str]:
    """Scratch folders of the runner (``.tmp-<stage>``) and half-written JSON (``*.tmp``)."""
    found = [*workdir.rglob(".tmp-*"), *workdir.rglob("*.tmp")]
    return sorted(str(p.relative_to(workdir)) for p in found)


def kill_inside_stage(process: subprocess.Popen, workdir: Path) -> bool:
    """Poll until the stages before KILL_INSIDE have manifests and KILL_INSIDE's scratch folder exists,
    then SIGKILL the process group. Returns whether the process was still running when killed."""
    scratch = workdir / STAGE[KILL_INSIDE].section / f".tmp-{KILL_INSIDE}"
    while process.poll() is None:
        if scratch.is_dir() and set(EARLIER) <= set(manifests(workdir)):
            alive = process.poll() is None
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return alive
        time.sleep(0.002)  # the target stage lasts seconds on the small market; a poll takes microseconds
    return False


def same_values(a, b, path: str = "") -> list[str]:
    """Where two JSON values differ: exact, except floats within FLOAT_TOLERANCE, volatile keys ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        a = {k: v for k, v in a.items() if k not in VOLATILE_KEYS}
        b = {k: v for k, v in b.items() if k not in VOLATILE_KEYS}
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in same_values(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same_values(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        close = isinstance(a, (int, float)) and isinstance(b, (int, float)) and np.isclose(a, b, **FLOAT_TOLERANCE[np.float64])
        return [] if close else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def same_arrays(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.allclose(a, b, equal_nan=True, **FLOAT_TOLERANCE[a.dtype.type]))
    return bool(np.array_equal(a, b))


def artifacts(workdir: Path) -> dict[str, Path]:
    """Every published file under the stages' sections (scratch and DuckDB's spill folder are hidden)."""
    found = {}
    for section in sorted({s.section for s in ALL_STAGES}):
        for path in sorted((workdir / section).rglob("*")):
            relative = path.relative_to(workdir)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                found[str(relative)] = path
    return found


def same_content(a: Path, b: Path) -> bool:
    """Parquet: same schema, every non-float column equal, float columns within FLOAT_TOLERANCE;
    npy likewise; JSON by value; anything else byte for byte."""
    if a.suffix == ".parquet":
        x, y = pq.read_table(a), pq.read_table(b)
        if x.schema != y.schema or x.num_rows != y.num_rows:
            return False
        for name in x.column_names:
            u, v = x[name], y[name]
            if pa.types.is_floating(u.type):
                if not same_arrays(u.to_numpy(zero_copy_only=False), v.to_numpy(zero_copy_only=False)):
                    return False
            elif not u.equals(v):
                return False
        return True
    if a.suffix == ".npy":
        return same_arrays(np.load(a), np.load(b))
    if a.suffix == ".json":
        return same_values(json.loads(a.read_text()), json.loads(b.read_text())) == []
    return a.read_bytes() == b.read_bytes()


def test_a_killed_run_resumes_without_redoing_finished_stages(ingested_market: Path, tmp_path: Path) -> None:
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    reference = start(ingested_market, reference_dir)  # uninterrupted, alongside
    victim = start(ingested_market, killed_dir)
    was_running = kill_inside_stage(victim, killed_dir)
    _, victim_err = victim.communicate()

    # What the kill left behind, observed after the process is gone.
    at_kill = manifests(killed_dir)
    finished = sorted(at_kill)
    files_at_kill = {name: stage_files(killed_dir, name) for name in finished}
    scratch_at_kill = scratch_left(killed_dir)
    assert was_running and victim.returncode == -signal.SIGKILL, (
        f"the run was not caught inside {KILL_INSIDE} (exit {victim.returncode}): {victim_err[-2000:]}"
    )
    assert set(EARLIER) <= set(finished) and KILL_INSIDE not in finished
    assert not (killed_dir / "pipeline_report.json").exists()  # the run did not get to the end
    assert any(f".tmp-{KILL_INSIDE}" in p for p in scratch_at_kill)  # it died with the stage half-written

    resumed = subprocess.run(pipeline_command(ingested_market, killed_dir), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _, reference_err = reference.communicate()
    assert reference.returncode == 0, reference_err[-2000:]

    report = json.loads((killed_dir / "pipeline_report.json").read_text())["stages"]
    assert list(report) == [s.name for s in ALL_STAGES]
    for name, stage in report.items():
        if name in at_kill:
            recorded = json.loads(at_kill[name])
            assert stage["skipped"] is True, name
            assert stage["fingerprint"] == recorded["fingerprint"], name
            assert stage["outputs"] == recorded["outputs"], name
            assert (killed_dir / "manifests" / f"{name}.json").read_bytes() == at_kill[name], name
            assert stage_files(killed_dir, name) == files_at_kill[name], f"{name}: finished outputs rewritten"
        else:
            assert stage["skipped"] is False, name
    # The stages that ran again got the fingerprints an uninterrupted run computes (same inputs, same config).
    reference_report = json.loads((reference_dir / "pipeline_report.json").read_text())["stages"]
    assert {n: s["fingerprint"] for n, s in report.items()} == {n: s["fingerprint"] for n, s in reference_report.items()}
    assert {n: s["outputs"] for n, s in report.items()} == {n: s["outputs"] for n, s in reference_report.items()}

    assert scratch_left(killed_dir) == []
    resumed_files, reference_files = artifacts(killed_dir), artifacts(reference_dir)
    assert sorted(resumed_files) == sorted(reference_files)
    assert all((killed_dir / s.section / output).exists() for s in ALL_STAGES for output in s.outputs)
    differing = [name for name, path in resumed_files.items() if not same_content(path, reference_files[name])]
    assert differing == []
