"""Read raw LGSR files as chunks of text columns, keeping the physical line number of every row.

Why not a plain ``pyarrow.csv.open_csv``: the streaming reader does not report where a malformed row
was, and the quarantine must name the source line of every rejected row. So the file is cut into
blocks at newline boundaries here, each block is parsed serially (which makes pyarrow report the row
number of each invalid row), and the line numbers of the valid rows follow from the invalid ones.
Values stay text: typing and validation happen later, so nothing is lost to a failed conversion.

Limitation, documented: a quoted field holding a newline is not supported (LGSR has none); such a
record is split into malformed lines, which are quarantined, not lost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from world_model.errors import RetailSimError

DEFAULT_BLOCK_BYTES = 1 << 24


@dataclass
class Chunk:
    """One block of a raw file.

    ``table`` holds the well-formed rows as text columns (empty string for a missing value),
    ``lines`` the 1-based physical line of each of them, ``malformed`` (line, text) of rows whose
    field count was wrong.
    """

    table: pa.Table
    lines: np.ndarray
    malformed: list[tuple[int, str]] = field(default_factory=list)


def read_header(path: Path) -> list[str]:
    """Column names of a raw file (CSV header or parquet schema); clear error if unreadable or empty."""
    if path.suffix == ".parquet":
        try:
            return list(pq.read_schema(path).names)
        except (OSError, pa.ArrowInvalid) as exc:
            raise RetailSimError(f"{path}: cannot read parquet schema ({exc})") from None
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 16)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RetailSimError(f"{path}: cannot read file ({exc})") from None
    if not head.strip():
        raise RetailSimError(f"{path}: file is empty (no header line)")
    first = re.split(rb"\r\n?|\n", head, maxsplit=1)[0]  # LF, CRLF or a lone CR (old Mac spreadsheets)
    try:
        text = first.decode("utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        raise RetailSimError(f"{path}: header is not UTF-8 text") from None
    return [name.strip().strip('"') for name in text.split(",")]


def iter_chunks(path: Path, columns: list[str], block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Chunk]:
    """Yield the rows of ``path`` in order as :class:`Chunk` objects of text columns ``columns``. A file
    that breaks off after its header (a truncated gzip stream, a damaged parquet page) is a one-line
    error naming it, wherever the damage lies."""
    try:
        if path.suffix == ".parquet":
            yield from _iter_parquet(path, columns)
        else:
            yield from _iter_csv(path, columns, block_bytes)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RetailSimError(f"{path}: cannot read file ({exc})") from None


def _iter_csv(path: Path, columns: list[str], block_bytes: int) -> Iterator[Chunk]:
    with pa.input_stream(str(path), compression="detect") as stream:
        buffered = b""
        while (header_end := _first_line_end(buffered)) < 0:
            more = stream.read(block_bytes)
            if not more:  # header only, no data line
                return
            buffered += more
        pending = buffered[header_end:]
        next_line = 2
        while True:
            more = stream.read(block_bytes)
            if more:
                cut = _last_line_end(more)
                if cut == 0:  # no line ends in this block: keep reading
                    pending += more
                    continue
                data, pending = b"".join((pending, memoryview(more)[:cut])), more[cut:]  # one copy
            else:
                data, pending = pending, b""
            if data:
                chunk = _parse_block(path, data, columns, next_line)
                next_line += _count_lines(data)
                if chunk.table.num_rows or chunk.malformed:
                    yield chunk
            if not more:
                return


def _first_line_end(data: bytes) -> int:
    """Index just past the first line's end (LF, CRLF or a lone CR); -1 while none is sure (none yet, or
    a CR as the last byte, which may be half of a CRLF)."""
    lf, cr = data.find(b"\n"), data.find(b"\r")
    if cr < 0 or 0 <= lf < cr:
        return lf + 1 if lf >= 0 else -1
    if cr + 1 == len(data):
        return -1
    return cr + 2 if data[cr + 1] == ord("\n") else cr + 1


def _last_line_end(block: bytes) -> int:
    """Index just past the block's last sure line end, 0 if it has none: its last LF, else (a file that
    ends lines with a lone CR) its last CR but a final one, which may be half of a CRLF."""
    lf = block.rfind(b"\n")
    return lf + 1 if lf >= 0 else block.rfind(b"\r", 0, len(block) - 1) + 1


def _count_lines(data: bytes) -> int:
    """Physical lines as pyarrow's parser sees them: ended by LF, CRLF or a lone CR."""
    lines = data.count(b"\n")
    if b"\r" in data:
        lines += data.count(b"\r") - data.count(b"\r\n")
    return lines + (0 if not data or data.endswith((b"\n", b"\r")) else 1)


def _parse_block(path: Path, data: bytes, columns: list[str], first_line: int) -> Chunk:
    malformed: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append((first_line + row.number - 1, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(use_threads=False, column_names=columns),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise RetailSimError(f"{path}: cannot parse CSV near line {first_line} ({exc})") from None
    total = _count_lines(data)
    bad = np.array(sorted(line for line, _ in malformed), dtype=np.int64)
    good = np.ones(total, dtype=bool)
    good[bad[bad < first_line + total] - first_line] = False
    lines = np.flatnonzero(good).astype(np.int64) + first_line
    if len(lines) != table.num_rows or len(bad) and bad[-1] >= first_line + total:  # a quoted newline
        raise RetailSimError(
            f"{path}: lines {first_line}..{first_line + total - 1} hold {table.num_rows} records for "
            f"{len(lines)} well-formed lines (quoted newlines are not supported)"
        )
    return Chunk(table=table, lines=lines, malformed=malformed)


def _iter_parquet(path: Path, columns: list[str]) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RetailSimError(f"{path}: cannot read parquet ({exc})") from None
    row = 1
    for batch in parquet.iter_batches(batch_size=1 << 20, columns=columns):
        arrays = [_as_text(batch.column(name)) for name in columns]
        table = pa.Table.from_arrays(arrays, names=columns)
        yield Chunk(table=table, lines=np.arange(row, row + batch.num_rows, dtype=np.int64))
        row += batch.num_rows


def _as_text(array: pa.Array) -> pa.Array:
    """Parquet columns may be typed; validation works on LGSR's text, with '' for a missing value.

    Dates become yyyymmdd and whole-number floats integers (a float BASKET_ID 9.941001e14 is the id
    994100100398294, not a destroyed one) where every one is exact in a float (below 2**53; 1e20 as a
    QUANTITY stays "1e+20", which the row checks quarantine); other values are cast as they are.
    """
    if pa.types.is_date(array.type) or pa.types.is_timestamp(array.type):
        array = pc.strftime(array, format="%Y%m%d")
    elif pa.types.is_floating(array.type):
        valid = pc.drop_null(array)
        if (len(valid) and pc.all(pc.equal(pc.floor(valid), valid)).as_py()
                and pc.max(pc.abs(valid)).as_py() < 2.0**53):  # fmt: skip
            array = pc.cast(array, pa.int64())
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    return pc.fill_null(array, "")


def file_fingerprint(path: Path) -> dict:
    """Identity of an input file for manifests and resume checks (size and mtime; hashing is too slow)."""
    stat = os.stat(path)
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
