"""Run pipeline stages in order, each once: manifests, skipping, atomic outputs and resume.

A stage writes its files into a scratch folder; only when it returns are they renamed into
``WORKDIR/<section>/`` and its manifest written, last. The manifest holds a fingerprint of everything
the outputs depend on (the ingested data's report, the fitted parameters, the stage's version, the
fingerprints of the stages it reads), so a re-run skips a stage whose fingerprint and outputs are
unchanged and a crashed run resumes at the first stage without a valid manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
from tqdm.auto import tqdm

from world_model.data.dataset import read_calendar_table, transactions_glob
from world_model.data.duckdb_util import connect, sql_string
from world_model.errors import RetailSimError
from world_model.files import write_json_atomic
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.weeks import WeekIndex

log = logging.getLogger("retailsim.pipeline")  # under the CLI's "retailsim" handler

MANIFESTS = "manifests"
REPORT = "pipeline_report.json"
SPILL = ".duckdb_tmp"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: reads the ingested data and upstream artifacts, writes ``outputs``."""

    name: str
    section: str
    """Folder of WORKDIR the outputs go to: "processed", "features" or "prepared"."""
    outputs: tuple[str, ...]
    run: Callable[["StageContext"], dict[str, int]]
    """Writes every output into ``ctx.out``; returns {output file: rows}."""
    depends_on: tuple[str, ...] = ()
    version: int = 1
    """Bump when the stage's logic changes, so old outputs are rebuilt."""
    config_sections: tuple[str, ...] = ()
    """Nested config sections (``PipelineConfig.response``, ...) the stage reads: part of its fingerprint."""


class StageContext:
    """What a stage may use: the ingested data through DuckDB views, upstream artifacts, the config."""

    def __init__(self, ingested: Path, workdir: Path, config: PipelineConfig, weeks: WeekIndex, out: Path) -> None:
        self.ingested, self.workdir, self.config, self.weeks, self.out = ingested, workdir, config, weeks, out

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection with views ``transactions`` (canonical rows + week_index + split) and
        ``train_transactions`` (training weeks only: everything fitted reads this one)."""
        con = connect(self.config.memory_limit, self.workdir / SPILL, self.config.threads)
        con.register("week_index_table", self.weeks.table())
        con.execute(
            f"""CREATE VIEW transactions AS
                SELECT t.*, w.week_index, w.split
                FROM read_parquet({sql_string(transactions_glob(self.ingested))}) t JOIN week_index_table w USING (SHOP_WEEK)"""
        )
        con.execute("CREATE VIEW train_transactions AS SELECT * FROM transactions WHERE split = 'train'")
        return con

    def artifact(self, section: str, name: str) -> Path:
        """Path of an upstream stage's output."""
        path = self.workdir / section / name
        if not path.exists():
            raise RetailSimError(f"{path}: missing upstream artifact (run its stage first)")
        return path


def run_pipeline(
    ingested: Path, workdir: Path, stages: list[Stage], config: PipelineConfig, only: list[str] | None = None
) -> dict:
    """Run ``stages`` (or the ``only`` ones and what they need) over ``ingested`` into ``workdir``."""
    connect(config.memory_limit).close()  # a bad --memory-limit fails now, before any stage starts
    report_path = ingested / "ingest_report.json"
    if not report_path.exists():
        raise RetailSimError(f"{ingested}: not an ingested directory (no ingest_report.json)")
    ingest_report = json.loads(report_path.read_text())
    if not ingest_report.get("rows_accepted"):
        raise RetailSimError(f"{ingested}: ingest accepted no rows (their reasons: {ingested / 'quarantine.parquet'})")
    weeks = WeekIndex.from_calendar(
        read_calendar_table(ingested),
        ingest_report["first_week"],
        ingest_report["last_week"],
        config.train_end,
        config.valid_end,
    )
    for split, end in (("validation", config.train_end), ("test", config.valid_end)):
        if end >= len(weeks.shop_weeks):  # training needs validation weeks (training.tasks says so)
            log.warning("--split %d,%d: the data has %d weeks, so the %s split is empty",
                        config.train_end, config.valid_end, len(weeks.shop_weeks), split)  # fmt: skip
    selected = _select(stages, only)
    (workdir / MANIFESTS).mkdir(parents=True, exist_ok=True)
    # A killed run leaves DuckDB's spill files behind and no later connection reuses them (GBs at scale);
    # one run owns the work directory, so whatever is there now is garbage.
    shutil.rmtree(workdir / SPILL, ignore_errors=True)
    data_fingerprint = _digest(report_path.read_bytes())
    fingerprints: dict[str, str] = {}
    results: dict[str, dict] = {}
    for stage in tqdm(selected, desc="pipeline", unit="stage", disable=not config.progress or None):
        upstream = {d: fingerprints[d] for d in stage.depends_on}
        fingerprint = _digest(
            json.dumps(
                {
                    "stage": stage.name,
                    "version": stage.version,
                    "data": data_fingerprint,
                    "parameters": config.fitted_parameters(stage.config_sections),
                    "upstream": upstream,
                },
                sort_keys=True,
            ).encode()
        )
        fingerprints[stage.name] = fingerprint
        manifest = _read_manifest(workdir, stage)
        if manifest and manifest["fingerprint"] == fingerprint and _outputs_exist(workdir, stage):
            results[stage.name] = {**manifest, "skipped": True}
            continue
        results[stage.name] = _run_stage(stage, ingested, workdir, config, weeks, fingerprint, upstream)
    report = {"ingested": str(ingested), "weeks": len(weeks.shop_weeks), "stages": results}
    write_json_atomic(workdir / REPORT, report)
    return report


def _select(stages: list[Stage], only: list[str] | None) -> list[Stage]:
    by_name = {s.name: s for s in stages}
    if not only:
        return stages
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise RetailSimError(f"--stages: unknown stage {unknown[0]} (known: {', '.join(by_name)})")
    wanted: set[str] = set()
    todo = list(only)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].depends_on)
    return [s for s in stages if s.name in wanted]


def _run_stage(
    stage: Stage, ingested: Path, workdir: Path, config: PipelineConfig, weeks: WeekIndex, fingerprint: str,
    upstream: dict[str, str],
) -> dict:
    scratch = workdir / stage.section / f".tmp-{stage.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.perf_counter()
    try:
        with PeakMemory() as memory:
            rows = stage.run(StageContext(ingested, workdir, config, weeks, scratch))
    except BaseException:  # a failed stage leaves nothing; a rerun starts it afresh anyway
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    missing = [name for name in stage.outputs if not (scratch / name).exists()]
    if missing:
        raise RuntimeError(f"stage {stage.name} did not write {missing}")
    # The outputs are replaced one by one: a crash between two would leave a mix of this run's and the
    # last one's, which the last manifest would then vouch for. Without a manifest the stage reruns.
    (workdir / MANIFESTS / f"{stage.name}.json").unlink(missing_ok=True)
    for name in stage.outputs:
        target = workdir / stage.section / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(scratch / name, target)
    shutil.rmtree(scratch)
    manifest = {
        "stage": stage.name,
        "fingerprint": fingerprint,
        "upstream": upstream,  # what it was built on: ``check_built_together``
        "outputs": rows,
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
        "skipped": False,
    }
    write_json_atomic(workdir / MANIFESTS / f"{stage.name}.json", manifest)
    return manifest


def _read_manifest(workdir: Path, stage: Stage | str) -> dict | None:
    path = workdir / MANIFESTS / f"{stage if isinstance(stage, str) else stage.name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def check_built_together(workdir: Path, stage: str) -> None:
    """RetailSimError unless ``stage``'s outputs and those of every stage under it come from one state of
    the pipeline: each has its manifest, and each was built on the fingerprints its upstream stages have
    now. A run stopped part-way (or ``--stages`` of an early stage alone) leaves later sections from the
    previous run beside earlier ones from the new: the price features of other products at the same
    vocabulary rows, a split that is not the tensors'. The next full run makes them consistent again. A
    directory without manifests (a scenario bundle's copy) is not checked."""
    if not (workdir / MANIFESTS).is_dir():
        return
    def manifest_of(name: str) -> dict:
        manifest = _read_manifest(workdir, name)
        if manifest is None:
            raise RetailSimError(f"{workdir}: stage {name} has no manifest (a pipeline run stopped before it "
                                 "finished); rerun 'retailsim pipeline run'")  # fmt: skip
        return manifest

    todo, seen = [stage], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for below, fingerprint in manifest_of(name).get("upstream", {}).items():  # older manifests: no record
            if manifest_of(below)["fingerprint"] != fingerprint:
                raise RetailSimError(f"{workdir}: stage {name}'s outputs were built on another state of stage "
                                     f"{below} than the one there now (a run stopped part-way, or --stages ran "
                                     "it alone); rerun 'retailsim pipeline run'")  # fmt: skip
            todo.append(below)


def _outputs_exist(workdir: Path, stage: Stage) -> bool:
    return all((workdir / stage.section / name).exists() for name in stage.outputs)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class PeakMemory:
    """Samples this process's resident memory every 50 ms while the block runs (Linux /proc)."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            try:
                with open("/proc/self/statm") as handle:
                    self.peak_bytes = max(self.peak_bytes, int(handle.read().split()[1]) * page)
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
