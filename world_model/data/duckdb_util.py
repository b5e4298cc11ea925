"""Small shims over DuckDB: one way to open a bounded connection and to fetch Arrow across versions."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from world_model.errors import RetailSimError


def sql_string(value: object) -> str:
    """``value`` as a quoted SQL string literal (a path with a ' in it must not break the statement)."""
    return "'" + str(value).replace("'", "''") + "'"


def connect(memory_limit: str = "2GB", temp_directory: Path | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection whose large intermediates spill to ``temp_directory`` past ``memory_limit``."""
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit={sql_string(memory_limit)}")
    except duckdb.Error:
        con.close()
        raise RetailSimError(f"--memory-limit: {memory_limit!r} is not a size DuckDB understands (e.g. 2GB)") from None
    if temp_directory is not None:
        con.execute(f"SET temp_directory={sql_string(temp_directory)}")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run ``sql`` and return an Arrow table (``to_arrow_table`` since DuckDB 1.4/2, ``arrow`` before)."""
    relation = con.sql(sql)
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()
