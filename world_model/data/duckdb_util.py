"""Small shims over DuckDB: one way to open a bounded connection and to fetch Arrow across versions."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa


def connect(memory_limit: str = "2GB", temp_directory: Path | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection whose large intermediates spill to ``temp_directory`` past ``memory_limit``."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit}'")
    if temp_directory is not None:
        con.execute(f"SET temp_directory='{temp_directory}'")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run ``sql`` and return an Arrow table (``to_arrow_table`` since DuckDB 1.4/2, ``arrow`` before)."""
    relation = con.sql(sql)
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()
