"""``retailsim data ingest``: raw LGSR files -> canonical parquet by week, a quarantine and a report.

Every input row ends in exactly one of two places: the canonical dataset
(``DIR/transactions/<week>/part-f<file>.parquet``, see :mod:`world_model.data.dataset`) or
``DIR/quarantine.parquet`` with its original text, source file, line and a reason code. The report
checks ``rows_read == rows_accepted + rows_quarantined`` before anything is published.

Three passes keep memory bounded whatever the input size (nothing ever holds all rows):

1. *stage* (streaming, per file): parse blocks of text, type and check each row on its own
   (numbers, dates, required codes, ranges, weekday) in DuckDB, and spill accepted rows to staging
   parquet partitioned by week. A finished file leaves a marker, so a crashed run resumes there.
2. *global* (DuckDB over staging, spills to disk): the calendar (``time.csv`` or inferred) and the
   set of destroyed basket ids: ids in scientific notation (``9.94E+14``, a spreadsheet's doing) or
   one id across several stores, dates or customers, which no real basket can be.
3. *finalize* (per week): rows dated outside their week and exact duplicate lines go to quarantine;
   destroyed ids are rebuilt from :data:`schema.BASKET_REBUILD_KEY`; the week is written in input order.

All output goes to ``DIR.partial`` and is renamed to ``DIR`` at the end, so ``DIR`` never holds a
half-written dataset; rerunning the same command after a crash resumes from ``DIR.partial``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from world_model.data.calendar import CALENDAR_SCHEMA, complete_inferred_calendar, lgsr_weeks_between, read_calendar
from world_model.data.dataset import CALENDAR_FILE, PART_WRITE_OPTIONS, TRANSACTIONS, transactions_glob, week_dir
from world_model.data.duckdb_util import connect, fetch_arrow, sql_string
from world_model.data.reader import DEFAULT_BLOCK_BYTES, file_fingerprint, iter_chunks, read_header
from world_model.data.parallel import resolve_workers, run_jobs, worker_connection
from world_model.data.quarantine import (
    QUARANTINE_SCHEMA,
    QuarantineWriter,
    malformed_rows,
    quarantine_rows,
    reread_rows,
)
from world_model.data.row_checks import ROW_ID_SCHEMA, canonical_rows, late_reasons, row_check_sql
from world_model.data.schema import (
    BASKET_REBUILD_KEY,
    CANONICAL_SCHEMA,
    LAYOUT_SEGMENT_COLUMNS,
    Reason,
    detect_layout,
    layout_columns,
)
from world_model.errors import RetailSimError, check_output_dir
from world_model.files import atomic_write, recover_replaced, replacing, write_json_atomic

log = logging.getLogger("retailsim")

INPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet")
SCIENTIFIC_ID_PATTERN = r"^[0-9.]+[eE][+-]?[0-9]+$"
# Rows of one file and week summarized in memory while staging (~20 bytes a row); a larger part (a
# whole-dataset single file) is summarized by reading it back in finalize instead.
SUMMARY_MAX_ROWS = 5_000_000
LATE_REJECTION_SCHEMA = pa.schema([("file", pa.int32()), ("line", pa.int64()), ("reason", pa.string())])


@dataclass(frozen=True)
class IngestConfig:
    """Options of one ingest run."""

    calendar: Path | None = None
    """``time.csv`` to check dates against; None looks for ``time.csv`` beside the input, else infers."""
    overwrite: bool = False
    """Replace an existing output directory (only after the new one is complete)."""
    block_bytes: int = DEFAULT_BLOCK_BYTES
    """Size of the text blocks parsed at a time; bounds the memory of the streaming pass."""
    memory_limit: str = "2GB"
    """DuckDB's memory limit; larger intermediate results spill to ``DIR.partial/_duckdb_tmp``."""
    threads: int | None = None
    """DuckDB threads of the global passes, and of every pass when ``workers`` is 1 (None: one per core)."""
    workers: int | None = None
    """Processes for the per-file and per-week passes (None: one per core; 1 runs inline)."""
    progress: bool = True
    """Show progress bars."""


def discover_inputs(spec: str | Path) -> tuple[list[Path], Path | None]:
    """Resolve INPUT (a file, a directory or a glob) to sorted transaction files and a ``time.csv``."""
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        candidates = [p for p in path.iterdir() if p.is_file()]
        base = path
    elif path.is_file():
        candidates, base = [path], path.parent
    else:
        candidates = [Path(p) for p in glob.glob(spec) if Path(p).is_file()]
        base = Path(os.path.dirname(spec) or ".")
    files = sorted(p for p in candidates if p.name != "time.csv" and p.name.endswith(INPUT_SUFFIXES))
    if not files and not path.exists() and not any(c in spec for c in "*?["):  # a path, not a pattern
        raise RetailSimError(f"{spec}: does not exist")
    if not files:
        raise RetailSimError(f"{spec}: no input files (*.csv, *.csv.gz, *.parquet)")
    calendar = base / "time.csv"
    return files, calendar if calendar.is_file() else None


def ingest(input_spec: str | Path, out_dir: str | Path, config: IngestConfig | None = None) -> dict:
    """Ingest LGSR files into ``out_dir`` and return the report (also written as ``ingest_report.json``)."""
    config = config or IngestConfig()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    recover_replaced(out_dir)  # a crash while publishing the last ingest left its output aside
    check_output_dir(out_dir, config.overwrite)
    connect(config.memory_limit).close()  # a bad --memory-limit fails now, not after the first pass
    files, found_calendar = discover_inputs(input_spec)
    calendar_path = config.calendar or found_calendar
    layouts = _check_headers(files)
    calendar = read_calendar(calendar_path) if calendar_path else None
    work = out_dir.with_name(out_dir.name + ".partial")
    _prepare_workdir(work, files, calendar_path, config)

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    staged = _stage_files(files, layouts, work, config)
    lap("stage")
    if sum(f["rows_read"] for f in staged) == 0:
        shutil.rmtree(work)
        raise RetailSimError(f"{input_spec}: input holds no data rows")
    # The parent opens DuckDB only between the pools, so forked workers never inherit a connection.
    con = connect(config.memory_limit, work / "_duckdb_tmp", config.threads)
    try:
        calendar, calendar_source = _resolve_calendar(con, calendar, work)
        destroyed = _find_destroyed_basket_ids(con, work)
    finally:
        con.close()
    lap("global")
    if destroyed:
        log.warning(
            "%d basket ids are destroyed (scientific notation or one id across several stores, dates or "
            "customers): their baskets were rebuilt from %s",
            destroyed,
            ", ".join(BASKET_REBUILD_KEY),
        )
    weekly = _finalize_weeks(work, files, staged, calendar, destroyed > 0, config)
    _quarantine_late_rejections(work, files, config)
    lap("finalize")
    con = connect(config.memory_limit, work / "_duckdb_tmp", config.threads)
    try:
        report = _build_report(con, work, files, layouts, staged, weekly, calendar, calendar_source, destroyed)
    finally:
        con.close()
    lap("report")
    report["seconds_by_pass"] = timings
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["rows_per_second"] = round(report["rows_read"] / max(report["seconds"], 1e-9))
    report["parameters"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    _write_parquet_atomic(calendar, work / CALENDAR_FILE)  # downstream maps weeks to 1..N through it
    _publish(work, out_dir, report)
    return report


def _check_headers(files: list[Path]) -> list[str]:
    """Fail early, naming the file and the column, when a file lacks a column of either layout.

    Returns each file's layout."""
    layouts = []
    for path in files:
        header = read_header(path)
        layout = detect_layout(header)
        if layout is None:
            present = set(header)
            missing = [c for c in LAYOUT_SEGMENT_COLUMNS["seg"] if c not in present]
            alt = [c for c in LAYOUT_SEGMENT_COLUMNS["cust"] if c not in present]
            raise RetailSimError(
                f"{path}: missing required column {missing[0]} (layout 'seg'; or {alt[0]} for layout 'cust')"
            )
        missing = [c for c in layout_columns(layout) if c not in header]
        if missing:
            raise RetailSimError(f"{path}: missing required column {missing[0]}")
        layouts.append(layout)
    return layouts


# --------------------------------------------------------------------------------------------- work dir


def ingest_is_current(input_spec: str | Path, out_dir: Path) -> bool:
    """``out_dir`` holds a finished ingest of exactly these inputs: the same transaction files and calendar,
    none changed since (by size and modification time), none added or removed."""
    report_path = out_dir / "ingest_report.json"
    if not report_path.exists():
        return False
    report = json.loads(report_path.read_text())
    files, found_calendar = discover_inputs(input_spec)
    calendar = file_fingerprint(found_calendar) if found_calendar else None
    return report.get("inputs") == [file_fingerprint(p) for p in files] and report.get("calendar", calendar) == calendar


def _prepare_workdir(work: Path, files: list[Path], calendar: Path | None, config: IngestConfig) -> None:
    """Reuse ``work`` from a crashed run of the same inputs, else start it afresh."""
    state = {
        "inputs": [file_fingerprint(p) for p in files],
        "calendar": file_fingerprint(calendar) if calendar else None,
        "block_bytes": config.block_bytes,
    }
    state_file = work / "_state" / "inputs.json"
    if state_file.exists() and json.loads(state_file.read_text()) == state:
        log.warning("resuming the unfinished ingest in %s", work)
        return
    if work.exists():
        shutil.rmtree(work)
    for sub in ("_state", "_staging", "_quarantine", TRANSACTIONS):
        (work / sub).mkdir(parents=True)
    write_json_atomic(state_file, state)


def _write_parquet_atomic(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda handle: pq.write_table(table, handle, compression="zstd"))


# ----------------------------------------------------------------------------------- pass 1: stage


def _stage_files(files: list[Path], layouts: list[str], work: Path, config: IngestConfig) -> list[dict]:
    """Pass 1: stream every file into week-partitioned staged parts; returns per-file counts.

    Files are independent here, so a pool of processes stages them, one file per job.
    """
    results = {i: json.loads(_stage_marker(work, i).read_text()) for i in range(len(files)) if _stage_marker(work, i).exists()}
    todo = [i for i in range(len(files)) if i not in results]
    workers = resolve_workers(config.workers, len(todo))
    jobs = [(files[i], i, layouts[i], work, replace(config, workers=workers)) for i in todo]
    bar = tqdm(total=len(files), initial=len(results), desc="ingest: read", unit="file", disable=not config.progress or None)
    with bar:
        for index, outcome in zip(todo, run_jobs(_stage_job, jobs, workers, bar)):
            results[index] = outcome
    return [results[i] for i in range(len(files))]


def _stage_marker(work: Path, index: int) -> Path:
    return work / "_state" / f"staged-{index:05d}.json"


def _stage_job(job: tuple[Path, int, str, Path, IngestConfig]) -> dict:
    """Stage one file (in a worker process or inline) and leave its marker."""
    path, index, layout, work, config = job
    _remove_partial_file_outputs(work, index)
    result = _stage_one_file(_worker_connection(work, config), path, index, layout, work, config)
    write_json_atomic(_stage_marker(work, index), result)
    return result


def _worker_connection(work: Path, config: IngestConfig) -> duckdb.DuckDBPyConnection:
    """Single-threaded when jobs run in parallel processes; the configured threads when inline (the
    jobs' ``config.workers`` is the pool's resolved size)."""
    threads = config.threads if config.workers == 1 else 1
    return worker_connection(config.memory_limit, work / "_duckdb_tmp", threads)


def _staged_part(work: Path, week: int | str, index: int | str) -> Path:
    """Canonical rows of one input file and week, before the week-level checks."""
    return week_dir(work, week) / f"staged-f{index}.parquet"


def _row_ids_part(work: Path, week: int | str, index: int | str) -> Path:
    """Hash and line of each row of the matching staged part, in the same order."""
    return work / "_staging" / str(week) / f"f{index}.parquet"


def _final_part(work: Path, week: int | str, index: int | str) -> Path:
    return week_dir(work, week) / f"part-f{index}.parquet"


def _remove_partial_file_outputs(work: Path, index: int) -> None:
    for pattern in (_staged_part(work, "*", f"{index:05d}"), _row_ids_part(work, "*", f"{index:05d}")):
        for stale in glob.glob(str(pattern) + "*"):
            os.remove(stale)
    for stale in (work / "_quarantine").glob(f"file-{index:05d}.parquet*"):
        stale.unlink()


class _WeekPartWriters:
    """Per week, a staged canonical part and its row-ids part, written in step and renamed on close.

    Also summarizes each part (rows, distinct baskets, whether any two rows share a duplicate hash), so
    finalize can publish a clean single-part week without reading it again.
    """

    def __init__(self, work: Path, index: int) -> None:
        self.work, self.index = work, f"{index:05d}"
        self.writers: dict[int, tuple[pq.ParquetWriter, pq.ParquetWriter]] = {}
        self.rows: dict[int, int] = {}
        self.hashes: dict[int, list[np.ndarray]] = {}
        self.basket_ids: dict[int, list[pa.Array]] = {}

    def write(self, rows: pa.Table, row_ids: pa.Table) -> None:
        weeks = rows.column("SHOP_WEEK")
        distinct = pc.unique(weeks).to_pylist()
        for week in distinct:
            mask = None if len(distinct) == 1 else pc.equal(weeks, week)
            if week not in self.writers:
                canonical = _staged_part(self.work, week, self.index)
                ids = _row_ids_part(self.work, week, self.index)
                canonical.parent.mkdir(exist_ok=True)
                ids.parent.mkdir(exist_ok=True)
                self.writers[week] = (
                    pq.ParquetWriter(f"{canonical}.tmp", CANONICAL_SCHEMA, **PART_WRITE_OPTIONS),
                    pq.ParquetWriter(f"{ids}.tmp", ROW_ID_SCHEMA, compression="lz4"),
                )
                self.hashes[week], self.basket_ids[week] = [], []
            part = rows if mask is None else rows.filter(mask)
            part_ids = (row_ids if mask is None else row_ids.filter(mask)).cast(ROW_ID_SCHEMA)
            canonical_writer, row_id_writer = self.writers[week]
            canonical_writer.write_table(part)
            row_id_writer.write_table(part_ids)
            self.rows[week] = self.rows.get(week, 0) + part.num_rows
            if self.rows[week] > SUMMARY_MAX_ROWS:  # too big to summarize in memory: finalize reads it
                self.hashes[week], self.basket_ids[week] = [], []
            else:
                self.hashes[week].append(part_ids.column("_hash").to_numpy())
                self.basket_ids[week].append(pc.unique(part.column("BASKET_ID")))

    def summaries(self) -> dict[str, dict | None]:
        """{week: {rows, baskets, duplicate_candidates}} of the parts written (None where too big)."""
        result: dict[str, dict | None] = {}
        for week, chunks in self.hashes.items():
            if self.rows[week] > SUMMARY_MAX_ROWS:
                result[str(week)] = None
                continue
            hashes = np.concatenate(chunks)
            result[str(week)] = {
                "rows": len(hashes),
                "baskets": pc.count_distinct(pa.chunked_array(self.basket_ids[week], pa.string())).as_py(),
                "duplicate_candidates": bool(len(np.unique(hashes)) < len(hashes)),
            }
        return result

    def close(self, publish: bool) -> None:
        for week, pair in self.writers.items():
            for writer in pair:
                writer.close()
            if publish:
                for path in (_staged_part(self.work, week, self.index), _row_ids_part(self.work, week, self.index)):
                    os.replace(f"{path}.tmp", path)


def _stage_one_file(
    con: duckdb.DuckDBPyConnection, path: Path, index: int, layout: str, work: Path, config: IngestConfig
) -> dict:
    header = read_header(path)
    wanted = list(layout_columns(layout))
    sql = row_check_sql(layout)
    parts = _WeekPartWriters(work, index)
    quarantine = QuarantineWriter(work / "_quarantine" / f"file-{index:05d}.parquet")
    rows_read = 0
    reasons: Counter[str] = Counter()
    done = False
    try:
        for chunk in iter_chunks(path, wanted if path.suffix == ".parquet" else header, config.block_bytes):
            rows_read += chunk.table.num_rows + len(chunk.malformed)
            if chunk.malformed:
                quarantine.write(malformed_rows(chunk.malformed, str(path)))
                reasons[Reason.MALFORMED_LINE] += len(chunk.malformed)
            if chunk.table.num_rows == 0:
                continue
            raw = chunk.table.select(wanted)
            con.register("chunk", raw.append_column("_line", pa.array(chunk.lines)))
            checked = fetch_arrow(con, sql)
            con.unregister("chunk")
            if not np.array_equal(checked.column("_line").to_numpy(), chunk.lines):  # rows pair up by position
                raise RuntimeError(f"{path}: DuckDB returned the rows of a block out of order")
            bad = pc.is_valid(checked.column("reason"))
            if pc.any(bad).as_py():
                rejected_reasons = checked.column("reason").filter(bad)
                reasons.update(rejected_reasons.to_pylist())
                lines = chunk.lines[bad.to_numpy(zero_copy_only=False)]
                quarantine.write(quarantine_rows(raw.filter(bad), lines, rejected_reasons, str(path)))
                good = pc.invert(bad)
                raw, checked = raw.filter(good), checked.filter(good)
            parts.write(canonical_rows(raw, checked), checked.select(ROW_ID_SCHEMA.names))
        done = True
    finally:
        parts.close(publish=done)
        quarantine.close(publish=done)
    return {
        "file": str(path),
        "layout": layout,
        "rows_read": rows_read,
        "rows_staged": rows_read - sum(reasons.values()),
        "quarantine_reasons": dict(reasons),
        "parts": parts.summaries(),
    }


# ---------------------------------------------------------------------------------- pass 2: global


def _staged_glob(work: Path) -> str:
    return str(_staged_part(work, "*", "*"))


def _staged_weeks(work: Path) -> list[int]:
    weeks = {int(p.parent.name) for p in (work / "_staging").glob("*/f*.parquet")}
    return sorted(weeks)


def _resolve_calendar(
    con: duckdb.DuckDBPyConnection, calendar: pa.Table | None, work: Path
) -> tuple[pa.Table, str]:
    """The given calendar, or one inferred per staged week (its rows' most common Monday), completed with
    the weeks between that have no data (``calendar.complete_inferred_calendar``)."""
    if calendar is not None:
        con.register("calendar", calendar)
        return calendar, "time.csv"
    path = work / "_state" / "calendar.parquet"
    if not path.exists():
        table = CALENDAR_SCHEMA.empty_table()
        if _staged_weeks(work):
            table = fetch_arrow(
                con,
                f"""
                SELECT CAST(SHOP_WEEK AS INTEGER) AS shop_week, date_from, CAST(date_from + 6 AS DATE) AS date_to
                FROM (SELECT SHOP_WEEK, monday AS date_from,
                             row_number() OVER (PARTITION BY SHOP_WEEK ORDER BY count(*) DESC, monday) AS rank
                      FROM (SELECT SHOP_WEEK, SHOP_DATE - CAST(isodow(SHOP_DATE) - 1 AS INTEGER) AS monday
                            FROM read_parquet({sql_string(_staged_glob(work))}))
                      GROUP BY SHOP_WEEK, monday)
                WHERE rank = 1 ORDER BY 1
                """,
            ).cast(CALENDAR_SCHEMA)
            table = complete_inferred_calendar(table)
        _write_parquet_atomic(table, path)
    calendar = pq.read_table(path)
    con.register("calendar", calendar)
    return calendar, "inferred"


def _destroyed_ids_path(work: Path) -> Path:
    return work / "_state" / "destroyed_basket_ids.parquet"


def _find_destroyed_basket_ids(con: duckdb.DuckDBPyConnection, work: Path) -> int:
    """Materialize the basket ids no single basket can own (a resumed run reuses them); returns how many."""
    path = _destroyed_ids_path(work)
    if not path.exists():
        table = pa.table({"BASKET_ID": pa.array([], pa.string())})
        if _staged_weeks(work):
            table = fetch_arrow(
                con,
                f"""
                SELECT BASKET_ID FROM read_parquet({sql_string(_staged_glob(work))}) s
                JOIN calendar c ON s.SHOP_WEEK = c.shop_week AND s.SHOP_DATE BETWEEN c.date_from AND c.date_to
                GROUP BY BASKET_ID
                HAVING min(STORE_CODE) <> max(STORE_CODE) OR min(SHOP_DATE) <> max(SHOP_DATE)
                    OR min(coalesce(CUST_CODE, '')) <> max(coalesce(CUST_CODE, ''))
                    OR regexp_full_match(BASKET_ID, '{SCIENTIFIC_ID_PATTERN}')
                ORDER BY BASKET_ID
                """,
            )
        _write_parquet_atomic(table, path)
    return pq.read_metadata(path).num_rows


# -------------------------------------------------------------------------------- pass 3: finalize


def _finalize_weeks(
    work: Path, files: list[Path], staged: list[dict], calendar: pa.Table, rebuild: bool, config: IngestConfig
) -> dict[int, dict]:
    """Pass 3: per week, find late rejections, rebuild destroyed ids, publish the parts.

    Weeks are independent, so a pool of processes finalizes them. A week first writes everything it
    changes under temporary names, then its marker, then commits (renames); a week with a marker is
    only committed again, so a crash at any point resumes to the same result.
    """
    spans = {w: (a, b) for w, a, b in zip(*(calendar.column(c).to_pylist() for c in calendar.column_names))}
    summaries: dict[int, dict[str, dict | None]] = {}
    for index, result in enumerate(staged):
        for week, summary in result["parts"].items():
            summaries.setdefault(int(week), {})[f"{index:05d}"] = summary
    weeks = _staged_weeks(work)
    weekly = {w: json.loads(_week_marker(work, w).read_text()) for w in weeks if _week_marker(work, w).exists()}
    for week in weekly:
        _commit_week(work, week)
    todo = [w for w in weeks if w not in weekly]
    workers = resolve_workers(config.workers, len(todo))
    jobs = [(work, w, spans.get(w), summaries.get(w, {}), rebuild, replace(config, workers=workers)) for w in todo]
    bar = tqdm(total=len(weeks), initial=len(weekly), desc="ingest: finalize", unit="week", disable=not config.progress or None)
    with bar:
        for week, outcome in zip(todo, run_jobs(_finalize_job, jobs, workers, bar)):
            weekly[week] = outcome
    return weekly


def _dates_in_span_by_statistics(staged: list[Path], span: tuple | None) -> bool:
    """True when the parts' SHOP_DATE min/max statistics alone prove every date lies in ``span``."""
    if span is None:
        return False
    for path in staged:
        metadata = pq.read_metadata(path)
        column = metadata.schema.names.index("SHOP_DATE")
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max or stats.min < span[0] or stats.max > span[1]:
                return False
    return True


def _week_marker(work: Path, week: int) -> Path:
    return work / "_state" / f"week-{week}.json"


def _late_rejections_part(work: Path, week: int) -> Path:
    """(file, line, reason) of a week's late rejections; their text is read back once per file at the end.
    Kept in ``_state`` until the ingest is published: outside ``_quarantine``, so never merged as they
    are, and never deleted before that, so a resumed ingest reads them all again."""
    return work / "_state" / f"late-week-{week}.parquet"


def _week_parts(work: Path, week: int) -> list[str]:
    return sorted(p.stem[1:] for p in (work / "_staging" / str(week)).glob("f*.parquet"))


def _finalize_job(job: tuple) -> dict:
    work, week, span, summaries, rebuild, config = job
    for pending in week_dir(work, week).glob("*.pending"):  # left by a crash before this week's marker
        pending.unlink()
    result = None if rebuild else _clean_week_result(work, week, span, summaries)
    if result is None:
        result = _finalize_week(work, week, span, rebuild, config)
    write_json_atomic(_week_marker(work, week), result)
    _commit_week(work, week)
    return result


def _clean_week_result(work: Path, week: int, span: tuple | None, summaries: dict[str, dict | None]) -> dict | None:
    """The common case, decided without reading any rows: one staged part, no duplicate candidates and
    every date in the week by the part's statistics. None when the week needs the full pass."""
    if len(summaries) != 1:
        return None
    (index, summary), = summaries.items()
    if summary is None or summary["duplicate_candidates"]:
        return None
    if not _dates_in_span_by_statistics([_staged_part(work, week, index)], span):
        return None
    return {"rows_accepted": summary["rows"], "baskets": summary["baskets"], "quarantine_reasons": {}}


def _finalize_week(work: Path, week: int, span: tuple | None, rebuild: bool, config: IngestConfig) -> dict:
    indices = _week_parts(work, week)
    row_ids = [pq.read_table(_row_ids_part(work, week, i)) for i in indices]
    staged = [_staged_part(work, week, i) for i in indices]
    hashes = np.concatenate([t.column("_hash").to_numpy() for t in row_ids])
    dates = None
    if not _dates_in_span_by_statistics(staged, span):
        dates = pa.chunked_array([pq.read_table(p, columns=["SHOP_DATE"]).column(0).combine_chunks() for p in staged])

    def load_rows(positions: np.ndarray) -> list[tuple]:
        week_rows = pa.concat_tables([pq.read_table(p) for p in staged])
        return [tuple(r.values()) for r in week_rows.take(pa.array(positions)).to_pylist()]

    reasons = late_reasons(dates, hashes, span, load_rows)
    destroyed = _destroyed_ids(work) if rebuild else pa.array([], pa.string())
    offsets = np.cumsum([0] + [t.num_rows for t in row_ids])
    late = {"file": [], "line": [], "reason": []}
    basket_ids: list[pa.Array] = []
    for i, index in enumerate(indices):
        part_reasons = reasons[offsets[i] : offsets[i + 1]]
        rejected = np.flatnonzero(part_reasons != None)  # noqa: E711 - object array of str/None
        late["file"] += [int(index)] * len(rejected)
        late["line"] += row_ids[i].column("_line").to_numpy()[rejected].tolist()
        late["reason"] += part_reasons[rejected].tolist()
        basket_ids.append(_prepare_part(work, week, index, part_reasons == None, destroyed, config))  # noqa: E711
    _write_parquet_atomic(pa.table(late, schema=LATE_REJECTION_SCHEMA), _late_rejections_part(work, week))
    accepted = pa.chunked_array(basket_ids, pa.string())
    return {
        "rows_accepted": len(accepted),
        "baskets": pc.count_distinct(accepted).as_py(),
        "quarantine_reasons": dict(Counter(late["reason"])),
    }


def _prepare_part(
    work: Path, week: int, index: str, keep: np.ndarray, destroyed: pa.Array, config: IngestConfig
) -> pa.Array:
    """Write the part's final content as ``.pending`` when it changes (commit renames it); returns its
    accepted basket ids."""
    staged = _staged_part(work, week, index)
    if keep.all() and len(destroyed) == 0:
        return pq.read_table(staged, columns=["BASKET_ID"]).column(0).combine_chunks()
    rows = pq.read_table(staged).filter(pa.array(keep))
    rows = _with_rebuilt_basket_ids(_worker_connection(work, config), rows, destroyed)
    pending = _final_part(work, week, index).with_name(f"part-f{index}.parquet.pending")
    pq.write_table(rows, pending, **PART_WRITE_OPTIONS)
    return rows.column("BASKET_ID").combine_chunks()


def _commit_week(work: Path, week: int) -> None:
    """Publish a week whose marker is written: idempotent, so it can be repeated after a crash."""
    for index in _week_parts(work, week):
        staged, final = _staged_part(work, week, index), _final_part(work, week, index)
        pending = final.with_name(f"part-f{index}.parquet.pending")
        if pending.exists():
            os.replace(pending, final)
            staged.unlink(missing_ok=True)
        elif staged.exists():
            os.replace(staged, final)


def _destroyed_ids(work: Path) -> pa.Array:
    return pq.read_table(_destroyed_ids_path(work)).column("BASKET_ID").combine_chunks()


def _quarantine_late_rejections(work: Path, files: list[Path], config: IngestConfig) -> None:
    """Read the original text of every late rejection back from its source, each file once. Idempotent:
    every ``late-f`` file is rebuilt from all the weeks' parts, so a crash here loses nothing; a marker
    written when all are done spares a resumed ingest the re-reading."""
    done = work / "_state" / "late-rejections-done.json"
    parts = sorted((work / "_state").glob("late-week-*.parquet"))
    if not parts or done.exists():
        return
    late = pa.concat_tables([pq.read_table(p) for p in parts])
    for index in pc.unique(late.column("file")).to_pylist():
        mine = late.filter(pc.equal(late.column("file"), index))
        table = reread_rows(files[index], mine.column("line").to_numpy(), mine.column("reason").to_pylist(), config.block_bytes)
        _write_parquet_atomic(table, work / "_quarantine" / f"late-f{index:05d}.parquet")
    write_json_atomic(done, {"parts": len(parts)})


def _with_rebuilt_basket_ids(con: duckdb.DuckDBPyConnection, rows: pa.Table, destroyed: pa.Array) -> pa.Table:
    """Replace destroyed BASKET_IDs by a stable id made from the trip's key columns, and flag them."""
    if len(destroyed) == 0:
        return rows
    flag = pc.is_in(rows.column("BASKET_ID"), value_set=destroyed)
    if not pc.any(flag).as_py():
        return rows
    con.register("rebuild_rows", rows.select(list(BASKET_REBUILD_KEY)))
    key = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in BASKET_REBUILD_KEY)
    rebuilt = fetch_arrow(con, f"SELECT 'R' || substr(md5(concat_ws('|', {key})), 1, 16) AS id FROM rebuild_rows")
    con.unregister("rebuild_rows")
    rows = rows.set_column(
        rows.schema.get_field_index("BASKET_ID"), "BASKET_ID", pc.if_else(flag, rebuilt.column("id"), rows.column("BASKET_ID"))
    )
    return rows.set_column(rows.schema.get_field_index("BASKET_ID_REBUILT"), "BASKET_ID_REBUILT", flag)


# ----------------------------------------------------------------------------------- report


def _build_report(
    con: duckdb.DuckDBPyConnection,
    work: Path,
    files: list[Path],
    layouts: list[str],
    staged: list[dict],
    weekly: dict[int, dict],
    calendar: pa.Table,
    calendar_source: str,
    destroyed: int,
) -> dict:
    state = json.loads((work / "_state" / "inputs.json").read_text())
    reasons: Counter[str] = Counter()
    for part in staged + list(weekly.values()):
        reasons.update(part["quarantine_reasons"])
    rows_read = sum(f["rows_read"] for f in staged)
    rows_accepted = sum(w["rows_accepted"] for w in weekly.values())
    rows_quarantined = sum(reasons.values())
    if rows_read != rows_accepted + rows_quarantined:
        raise RuntimeError(f"ingest lost rows: read {rows_read}, accepted {rows_accepted}, quarantined {rows_quarantined}")
    weeks = sorted(w for w, v in weekly.items() if v["rows_accepted"])
    customers = products = stores = anonymous = 0
    if weeks:
        customers, products, stores, anonymous = con.execute(
            f"""SELECT count(DISTINCT CUST_CODE), count(DISTINCT PROD_CODE), count(DISTINCT STORE_CODE),
                       count(*) FILTER (CUST_CODE IS NULL)
                FROM read_parquet({sql_string(transactions_glob(work))})"""
        ).fetchone()
    missing: list[int] = []
    if weeks:  # weeks of the calendar (or of LGSR numbering, when it was inferred) without a row
        expected = (
            sorted(calendar.column("shop_week").to_pylist())
            if calendar_source == "time.csv"
            else lgsr_weeks_between(weeks[0], weeks[-1])
        )
        present = set(weeks)
        missing = [w for w in expected if weeks[0] <= w <= weeks[-1] and w not in present]
    return {
        "layout": layouts[0] if len(set(layouts)) == 1 else "mixed",
        "files": len(files),
        "rows_read": rows_read,
        "rows_accepted": rows_accepted,
        "rows_quarantined": rows_quarantined,
        "quarantine_reasons": {r: reasons[r] for r in Reason.ALL if reasons[r]},
        "weeks": len(weeks),
        "first_week": weeks[0] if weeks else None,
        "last_week": weeks[-1] if weeks else None,
        "missing_weeks": missing,
        "calendar_source": calendar_source,
        "customers": customers,
        "products": products,
        "stores": stores,
        "baskets": sum(w["baskets"] for w in weekly.values()),
        "anonymous_rows": anonymous,
        "basket_ids_reconstructed": destroyed > 0,
        "destroyed_basket_ids": destroyed,
        **{key: state[key] for key in ("inputs", "calendar")},
    }


def _publish(work: Path, out_dir: Path, report: dict) -> None:
    """Merge the quarantine parts, write the report, drop scratch files, rename into place."""
    parts = sorted((work / "_quarantine").glob("*.parquet"))
    target = work / "quarantine.parquet"
    if parts:
        con = connect()
        sources = ", ".join(sql_string(p) for p in parts)
        con.execute(
            f"COPY (SELECT * FROM read_parquet([{sources}]) ORDER BY source_file, line) "
            f"TO {sql_string(target)} (FORMAT parquet, COMPRESSION zstd)"
        )
        con.close()
    else:
        pq.write_table(QUARANTINE_SCHEMA.empty_table(), target)
    written = pq.read_metadata(target).num_rows  # the report counts reasons; the file must hold every row
    if written != report["rows_quarantined"]:
        raise RuntimeError(f"ingest lost quarantined rows: the report counts {report['rows_quarantined']}, "
                           f"{target.name} holds {written}")  # fmt: skip
    (work / "_state" / "inputs.json").unlink()  # first: an interrupted clean-up must not look resumable
    for scratch in ("_staging", "_quarantine", "_duckdb_tmp", "_state"):
        shutil.rmtree(work / scratch, ignore_errors=True)
    write_json_atomic(work / "ingest_report.json", report)
    with replacing([out_dir]):
        os.replace(work, out_dir)


def iter_report_lines(report: dict) -> Iterable[str]:
    """A short human summary of a report, for the CLI."""
    yield f"layout {report['layout']}, {report['files']} files, weeks {report['first_week']}..{report['last_week']}"
    yield (
        f"rows read {report['rows_read']:,} = accepted {report['rows_accepted']:,} "
        f"+ quarantined {report['rows_quarantined']:,}"
    )
    for reason, count in report["quarantine_reasons"].items():
        yield f"  {reason}: {count:,}"
    yield (
        f"{report['customers']:,} customers, {report['products']:,} products, {report['stores']:,} stores, "
        f"{report['baskets']:,} baskets"
    )
    if report["missing_weeks"]:
        yield f"missing weeks: {', '.join(map(str, report['missing_weeks']))}"
    if report["basket_ids_reconstructed"]:
        yield f"basket ids rebuilt for {report['destroyed_basket_ids']:,} destroyed ids"
    yield f"{report['seconds']:.1f} s, {report['rows_per_second']:,} rows/s"
