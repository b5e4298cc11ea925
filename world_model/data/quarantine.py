"""The quarantine: rejected rows with their original text, source file, line and reason code.

Rows rejected while streaming are written from the text just parsed. Rows rejected later (dated
outside their week, duplicate lines) were already typed, so their original text is read back from
the source file by line number: the quarantine always holds what the file said, not a re-rendering.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from world_model.data.reader import iter_chunks, read_header
from world_model.data.schema import LAYOUT_SEGMENT_COLUMNS, Reason, layout_columns

RAW_COLUMNS: tuple[str, ...] = layout_columns("seg") + LAYOUT_SEGMENT_COLUMNS["cust"]
QUARANTINE_SCHEMA = pa.schema(
    [(c, pa.string()) for c in RAW_COLUMNS]
    + [("raw_line", pa.string()), ("source_file", pa.string()), ("line", pa.int64()), ("reason", pa.string())]
)


def quarantine_rows(raw: pa.Table, lines: np.ndarray, reasons: pa.Array, source: str) -> pa.Table:
    """Rows of a raw text table (any layout) as quarantine records; absent columns are null."""
    n = raw.num_rows
    columns = {c: raw.column(c) if c in raw.column_names else pa.nulls(n, pa.string()) for c in RAW_COLUMNS}
    columns["raw_line"] = pa.nulls(n, pa.string())
    columns["source_file"] = pa.array(np.full(n, source, dtype=object), pa.string())
    columns["line"] = pa.array(lines, pa.int64())
    columns["reason"] = reasons
    return pa.table(columns, schema=QUARANTINE_SCHEMA)


def malformed_rows(malformed: list[tuple[int, str]], source: str) -> pa.Table:
    """Lines with the wrong number of fields: only their text is known."""
    n = len(malformed)
    columns = {c: pa.nulls(n, pa.string()) for c in RAW_COLUMNS}
    columns["raw_line"] = pa.array([text for _, text in malformed], pa.string())
    columns["source_file"] = pa.array([source] * n, pa.string())
    columns["line"] = pa.array([line for line, _ in malformed], pa.int64())
    columns["reason"] = pa.array([Reason.MALFORMED_LINE] * n, pa.string())
    return pa.table(columns, schema=QUARANTINE_SCHEMA)


def reread_rows(path: Path, lines: np.ndarray, reasons: list[str], block_bytes: int) -> pa.Table:
    """Read the original text of ``lines`` (sorted, with one reason each) back from ``path``."""
    order = np.argsort(lines, kind="stable")
    lines, reason_by_line = lines[order], np.asarray(reasons, dtype=object)[order]
    header = read_header(path)
    columns = [c for c in header if c in RAW_COLUMNS] if path.suffix == ".parquet" else header
    parts = []
    for chunk in iter_chunks(path, columns, block_bytes):
        hit = np.isin(chunk.lines, lines)
        if hit.any():
            taken = chunk.table.filter(pa.array(hit))
            at = np.searchsorted(lines, chunk.lines[hit])
            parts.append(quarantine_rows(taken, lines[at], pa.array(reason_by_line[at], pa.string()), str(path)))
    table = pa.concat_tables(parts) if parts else QUARANTINE_SCHEMA.empty_table()
    if table.num_rows != len(lines):
        raise RuntimeError(f"{path}: could not read back {len(lines) - table.num_rows} quarantined lines")
    return table


class QuarantineWriter:
    """Appends quarantine records to one parquet file, published atomically on :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, QUARANTINE_SCHEMA, compression="zstd")
        self._writer.write_table(table)

    def close(self, publish: bool = True) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if publish:
                os.replace(self._tmp, self.path)
