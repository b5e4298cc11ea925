"""Week-level checks: duplicates are confirmed on values, never on the hash alone."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from world_model.data.row_checks import late_reasons, later_exact_copies
from world_model.data.schema import Reason


def test_only_later_exact_copies_are_flagged_even_when_hashes_collide() -> None:
    values = [("a", 1), ("b", 2), ("a", 1), ("c", 3), ("a", 1)]
    hashes = np.array([7, 7, 7, 9, 7], dtype=np.uint64)  # rows 0, 1, 2, 4 collide; 1 differs in value
    loaded = []

    def load(positions: np.ndarray) -> list[tuple]:
        loaded.append(positions.tolist())
        return [values[i] for i in positions]

    assert later_exact_copies(hashes, load).tolist() == [False, False, True, False, True]
    assert loaded == [[0, 1, 2, 4]]  # only candidates are loaded


def test_no_candidates_loads_nothing() -> None:
    def load(positions: np.ndarray) -> list[tuple]:
        raise AssertionError("should not load rows without hash candidates")

    assert not later_exact_copies(np.arange(5, dtype=np.uint64), load).any()


def test_date_outside_week_wins_over_duplicate_and_unknown_week_rejects_all() -> None:
    dates = pa.chunked_array([pa.array([date(2006, 4, 10), date(2006, 4, 17), date(2006, 4, 17)])])
    hashes = np.array([1, 2, 2], dtype=np.uint64)
    rows = [("x",), ("y",), ("y",)]
    reasons = late_reasons(dates, hashes, (date(2006, 4, 10), date(2006, 4, 16)), lambda p: [rows[i] for i in p])
    assert reasons.tolist() == [None, Reason.DATE_OUTSIDE_WEEK, Reason.DATE_OUTSIDE_WEEK]
    same_week = late_reasons(dates, hashes, (date(2006, 4, 10), date(2006, 4, 17)), lambda p: [rows[i] for i in p])
    assert same_week.tolist() == [None, None, Reason.DUPLICATE_LINE]
    unknown = late_reasons(dates, hashes, None, lambda p: [rows[i] for i in p])
    assert set(unknown.tolist()) == {Reason.DATE_OUTSIDE_WEEK}


def test_integers_must_be_plain_digits_and_spend_finite() -> None:
    import duckdb

    from tests.conftest import lgsr_row
    from world_model.data.duckdb_util import fetch_arrow
    from world_model.data.row_checks import row_check_sql

    cases = {
        "1": None, "-0": Reason.NONPOSITIVE_QUANTITY, "1.5": Reason.UNPARSEABLE_NUMBER,
        "0x10": Reason.UNPARSEABLE_NUMBER, "1_000": Reason.UNPARSEABLE_NUMBER, " 1": Reason.UNPARSEABLE_NUMBER,
        "+1": Reason.UNPARSEABLE_NUMBER, "99999999999": Reason.UNPARSEABLE_NUMBER, "": Reason.UNPARSEABLE_NUMBER,
    }
    rows = [lgsr_row(QUANTITY=q) for q in cases] + [lgsr_row(SPEND="nan"), lgsr_row(SPEND="inf"), lgsr_row(SPEND="1e2")]
    table = pa.Table.from_pylist(rows).append_column("_line", pa.array(range(len(rows)), pa.int64()))
    con = duckdb.connect()
    con.register("chunk", table)
    checked = fetch_arrow(con, row_check_sql("seg"))
    expected = list(cases.values()) + [Reason.UNPARSEABLE_NUMBER, Reason.UNPARSEABLE_NUMBER, None]
    assert checked.column("reason").to_pylist() == expected
    assert checked.column("_line").to_pylist() == list(range(len(rows)))  # input order is kept
    assert checked.column("SPEND").to_pylist()[-1] == 100.0
