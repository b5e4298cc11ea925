"""The block reader: physical line numbers survive any block size, malformed rows keep their text."""

from __future__ import annotations

from pathlib import Path

import pytest

from world_model.data.reader import iter_chunks, read_header

TEXT = "a,b,c\n1,2,3\n4,5\n\n6,7,8\n9,10,11,12\n13,14,15"  # no newline at the end


@pytest.mark.parametrize("block_bytes", [1, 3, 4, 8, 13, 1 << 20])
@pytest.mark.parametrize("line_end", ["\n", "\r", "\r\n"])
def test_lines_and_malformed_rows_do_not_depend_on_block_size_or_line_ends(tmp_path: Path, block_bytes: int,
                                                                            line_end: str) -> None:  # fmt: skip
    """A lone CR ends lines in an old Mac spreadsheet's CSV (its header was read as the whole file)."""
    path = tmp_path / "x.csv"
    path.write_bytes(line_end.join(TEXT.split("\n")).encode())
    columns = read_header(path)
    values, lines, malformed = [], [], []
    for chunk in iter_chunks(path, columns, block_bytes):
        values += chunk.table.column("a").to_pylist()
        lines += chunk.lines.tolist()
        malformed += chunk.malformed
    assert columns == ["a", "b", "c"]
    assert values == ["1", "", "6", "13"]  # the blank line 4 is read as a row of empty fields
    assert lines == [2, 4, 5, 7]
    assert sorted(malformed) == [(3, "4,5"), (6, "9,10,11,12")]


def test_gzip_and_crlf(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "x.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        handle.write("a,b\r\n1,2\r\n3,4\r\n")
    chunks = list(iter_chunks(path, read_header(path)))
    assert chunks[0].table.column("b").to_pylist() == ["2", "4"]
    assert chunks[0].lines.tolist() == [2, 3]


def test_a_gzip_cut_off_after_its_header_is_a_one_line_error(tmp_path: Path) -> None:
    import gzip
    import random

    from world_model.errors import RetailSimError

    rng = random.Random(0)  # incompressible digits: the stream breaks off well after the first block
    body = "".join(f"{rng.randrange(10**9)},{rng.randrange(10**9)}\n" for _ in range(40_000))
    whole = gzip.compress(("a,b\n" + body).encode())
    path = tmp_path / "x.csv.gz"
    path.write_bytes(whole[: int(len(whole) * 0.9)])
    assert read_header(path) == ["a", "b"]
    with pytest.raises(RetailSimError, match=r"x.csv.gz: cannot read file \("):
        for _ in iter_chunks(path, ["a", "b"], block_bytes=1 << 16):
            pass


def test_float_columns_become_integers_only_where_a_float_holds_them_exactly(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"ids": [9.941001e14, 3.0], "quantity": [2.0, 1e20]}), path)
    (chunk,) = iter_chunks(path, ["ids", "quantity"])
    assert chunk.table.column("ids").to_pylist() == ["994100100000000", "3"]
    assert chunk.table.column("quantity").to_pylist() == ["2", "1e+20"]  # the row checks quarantine the second
