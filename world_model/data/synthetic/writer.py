"""LGSR text encoding of a simulated week: string columns, CSV bytes and all-string parquet.

The CSV mirrors the real files: a header row in "seg" order, no quotes except for empty values, which
are written ``""`` (as in the LGSR sample), SPEND printed like Python's ``repr`` of the amount
(``1.3``, ``2.0``, ``0.93``). Lines are assembled column-wise with Arrow string kernels, so a week is
encoded without a Python loop over its lines; malformed lines (one field too few or too many) are
made at this level because a CSV writer cannot produce them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import layout_columns

StrColumns = dict[str, pa.Array]
_EMPTY_CSV = '""'


def format_spend(cents: np.ndarray) -> pa.Array:
    """Amounts in cents as strings the way LGSR prints them: 1.3, 2.0, 0.93."""
    cents = np.asarray(cents, dtype=np.int64)
    whole = pa.array(np.abs(cents) // 100).cast(pa.string())
    frac = np.abs(cents) % 100
    frac_str = pc.if_else(
        pa.array(frac % 10 == 0),
        pa.array(frac // 10).cast(pa.string()),
        pc.utf8_lpad(pa.array(frac).cast(pa.string()), 2, "0"),
    )
    sign = pa.array(np.where(cents < 0, "-", ""))
    return pc.binary_join_element_wise(sign, pc.binary_join_element_wise(whole, frac_str, "."), "")


def string_columns(table: pa.Table) -> StrColumns:
    """Every column of a typed week table as strings, missing values as empty strings."""
    cols: StrColumns = {}
    for name in layout_columns("seg"):
        col = table.column(name).combine_chunks()
        if name == "SPEND":
            cents = np.round(col.to_numpy(zero_copy_only=False) * 100).astype(np.int64)
            cols[name] = format_spend(cents)
        elif pa.types.is_string(col.type):
            cols[name] = pc.fill_null(col, "")
        else:
            cols[name] = col.cast(pa.string())
    return cols


def _join(columns: list[pa.Array]) -> pa.Array:
    quoted = [pc.if_else(pc.equal(c, ""), _EMPTY_CSV, c) for c in columns]
    return pc.binary_join_element_wise(*quoted, ",")


def csv_lines(cols: StrColumns, too_few: np.ndarray, too_many: np.ndarray) -> pa.Array:
    """One CSV line per row (no newline); rows in ``too_few``/``too_many`` lose/gain a field."""
    names = list(layout_columns("seg"))
    lines = _join([cols[n] for n in names])
    bad = np.concatenate([too_few, too_many])
    if len(bad) == 0:
        return lines
    few_idx, many_idx = pa.array(too_few), pa.array(too_many)
    few = _join([cols[n].take(few_idx) for n in names[:-1]])
    many = _join([cols[n].take(many_idx) for n in names + names[-1:]])
    order = np.argsort(bad, kind="stable")
    replacements = pa.concat_arrays([few, many]).take(pa.array(order))
    mask = np.zeros(len(lines), dtype=bool)
    mask[bad] = True
    return pc.replace_with_mask(lines, pa.array(mask), replacements)


def csv_bytes(lines: pa.Array) -> bytes:
    """Header plus the lines, newline-terminated, as one bytes object."""
    header = ",".join(layout_columns("seg")) + "\n"
    if len(lines) == 0:
        return header.encode()
    with_nl = pc.binary_join_element_wise(lines, "", "\n")
    arr = pa.concat_arrays([with_nl]).cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    return header.encode() + memoryview(data)[offsets[0]: offsets[-1]].tobytes()


def string_table(cols: StrColumns) -> pa.Table:
    """All-string table in "seg" order (for parquet output)."""
    return pa.table({n: cols[n] for n in layout_columns("seg")})
