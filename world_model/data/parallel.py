"""Run independent jobs of a data pass on a pool of processes, one per core, in order, with a progress bar.

Fork is used where the platform has it: the caller's script is not re-imported (no ``__main__`` guard
needed) and workers start at no cost. That is safe because callers open no DuckDB connection in the
parent while a pool runs, and Arrow resets its thread pools after a fork. Elsewhere, spawn.
Each process keeps one DuckDB connection for all its jobs (opening one costs ~20 ms).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import duckdb
from tqdm.auto import tqdm

from world_model.data.duckdb_util import connect

Job = TypeVar("Job")
Result = TypeVar("Result")

_CONNECTIONS: dict[tuple, duckdb.DuckDBPyConnection] = {}


def resolve_workers(requested: int | None, jobs: int) -> int:
    """Worker processes for ``jobs`` jobs: ``requested`` or one per core, never more than the jobs."""
    return max(1, min(jobs, requested or os.cpu_count() or 1))


def run_jobs(
    fn: Callable[[Job], Result], jobs: list[Job], workers: int, bar: tqdm | None = None
) -> Iterator[Result]:
    """Yield ``fn(job)`` for each job, in order; inline when ``workers`` is 1."""
    pool = None
    if workers > 1:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    outcomes: Iterable[Result] = pool.map(fn, jobs) if pool else map(fn, jobs)
    try:
        for outcome in outcomes:
            if bar is not None:
                bar.update(1)
            yield outcome
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        close_worker_connections()


def worker_connection(memory_limit: str, temp_directory: Path, threads: int | None) -> duckdb.DuckDBPyConnection:
    """This process's DuckDB connection; keyed by process id so a forked worker never reuses its parent's."""
    key = (os.getpid(), memory_limit, str(temp_directory), threads)
    if key not in _CONNECTIONS:
        _CONNECTIONS[key] = connect(memory_limit, temp_directory, threads)
    return _CONNECTIONS[key]


def close_worker_connections() -> None:
    """Close this process's cached connections (the parent's, after an inline run)."""
    for key in [k for k in _CONNECTIONS if k[0] == os.getpid()]:
        _CONNECTIONS.pop(key).close()
