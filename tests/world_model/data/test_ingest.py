"""Ingest: every row accepted or quarantined with its reason, line and original text; atomic; resumable."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from retailsim.cli import main
from tests.conftest import CALENDAR_200607_200609, lgsr_row, write_calendar, write_lgsr
from world_model.data import ingest as ingest_module
from world_model.data.dataset import read_calendar_table, read_transactions
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.schema import CANONICAL_SCHEMA, Reason
from world_model.errors import RetailSimError
from world_model.pipeline.weeks import WeekIndex

QUIET = IngestConfig(progress=False, workers=1)


def read_output(out: Path) -> pa.Table:
    return read_transactions(out)


def test_every_defect_is_quarantined_with_reason_line_and_original_text(tmp_path: Path) -> None:
    good = lgsr_row()
    rows = [
        good,  # line 2
        lgsr_row(PROD_CODE="PRD0900097", SPEND="1.03"),  # 3
        lgsr_row(QUANTITY="abc"),  # 4
        lgsr_row(SHOP_DATE="20061345"),  # 5
        lgsr_row(PROD_CODE=""),  # 6
        lgsr_row(STORE_CODE=""),  # 7
        lgsr_row(BASKET_ID=""),  # 8
        lgsr_row(QUANTITY="0"),  # 9
        lgsr_row(SPEND="-1.0"),  # 10
        lgsr_row(SHOP_HOUR="25"),  # 11
        lgsr_row(SHOP_WEEKDAY="3"),  # 12
        lgsr_row(SHOP_DATE="20060424", SHOP_WEEKDAY="2", SPEND="0.930"),  # 13: a Monday of week 200609
        dict(good),  # 14: exact duplicate of line 2
        lgsr_row(CUST_CODE="", seg_1="", seg_2="", PROD_CODE="PRD0900121", BASKET_ID="2"),  # 15: anonymous
        lgsr_row(QUANTITY="1.5"),  # 16
    ]
    source = write_lgsr(tmp_path / "in" / "transactions_200607.csv", rows, extra_lines=["1,2,3", ""])
    write_calendar(tmp_path / "in" / "time.csv", CALENDAR_200607_200609)

    report = ingest(tmp_path / "in", tmp_path / "out", QUIET)

    assert report["rows_read"] == 17
    assert report["rows_accepted"] == 3
    assert report["rows_quarantined"] == 14
    assert report["quarantine_reasons"] == {
        Reason.MALFORMED_LINE: 2,
        Reason.UNPARSEABLE_NUMBER: 2,
        Reason.INVALID_DATE: 1,
        Reason.MISSING_PROD_CODE: 1,
        Reason.MISSING_STORE_CODE: 1,
        Reason.MISSING_BASKET_ID: 1,
        Reason.NONPOSITIVE_QUANTITY: 1,
        Reason.NEGATIVE_SPEND: 1,
        Reason.HOUR_OUT_OF_RANGE: 1,
        Reason.WEEKDAY_MISMATCH: 1,
        Reason.DATE_OUTSIDE_WEEK: 1,
        Reason.DUPLICATE_LINE: 1,
    }
    quarantine = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pylist()
    by_line = {r["line"]: r for r in quarantine}
    assert {line: r["reason"] for line, r in by_line.items()} == {
        4: Reason.UNPARSEABLE_NUMBER,
        5: Reason.INVALID_DATE,
        6: Reason.MISSING_PROD_CODE,
        7: Reason.MISSING_STORE_CODE,
        8: Reason.MISSING_BASKET_ID,
        9: Reason.NONPOSITIVE_QUANTITY,
        10: Reason.NEGATIVE_SPEND,
        11: Reason.HOUR_OUT_OF_RANGE,
        12: Reason.WEEKDAY_MISMATCH,
        13: Reason.DATE_OUTSIDE_WEEK,
        14: Reason.DUPLICATE_LINE,
        16: Reason.UNPARSEABLE_NUMBER,
        17: Reason.MALFORMED_LINE,
        18: Reason.MALFORMED_LINE,
    }
    assert by_line[4]["QUANTITY"] == "abc"
    assert by_line[13]["SPEND"] == "0.930"  # a late rejection still carries the file's own text
    assert by_line[14]["BASKET_ID"] == good["BASKET_ID"]
    assert by_line[17]["raw_line"] == "1,2,3" and by_line[17]["PROD_CODE"] is None
    assert all(r["source_file"] == str(source) for r in quarantine)

    accepted = read_output(tmp_path / "out")
    assert accepted.schema.remove_metadata() == CANONICAL_SCHEMA
    assert sorted(accepted.column("PROD_CODE").to_pylist()) == ["PRD0900033", "PRD0900097", "PRD0900121"]
    assert accepted.column("CUST_CODE").null_count == 1
    assert report["anonymous_rows"] == 1
    assert report["basket_ids_reconstructed"] is False  # the off-week row did not poison its basket
    assert json.loads((tmp_path / "out" / "ingest_report.json").read_text())["rows_read"] == 17


def test_cust_layout_with_destroyed_basket_ids_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    destroyed = "9.94E+14"
    trips = [
        dict(CUST_CODE="CUST01", STORE_CODE="STORE00001", SHOP_DATE="20060415", SHOP_WEEKDAY="7"),
        dict(CUST_CODE="CUST02", STORE_CODE="STORE00002", SHOP_DATE="20060415", SHOP_WEEKDAY="7"),
        dict(CUST_CODE="CUST01", STORE_CODE="STORE00001", SHOP_DATE="20060416", SHOP_WEEKDAY="1"),
    ]
    rows = [
        lgsr_row(BASKET_ID=destroyed, PROD_CODE=f"PRD{t}{p}", **trip)
        for t, trip in enumerate(trips)
        for p in range(2)
    ]
    write_lgsr(tmp_path / "transactions_200607.csv", rows, layout="cust")

    with caplog.at_level(logging.WARNING, logger="retailsim"):
        report = ingest(tmp_path / "transactions_200607.csv", tmp_path / "out", QUIET)

    assert report["layout"] == "cust"
    assert report["basket_ids_reconstructed"] is True
    assert report["baskets"] == 3
    assert report["calendar_source"] == "inferred"
    assert any("basket ids are destroyed" in r.getMessage() for r in caplog.records)
    out = read_output(tmp_path / "out").to_pylist()
    assert all(r["BASKET_ID_REBUILT"] and r["BASKET_ID"].startswith("R") for r in out)
    assert len({(r["CUST_CODE"], r["STORE_CODE"], r["SHOP_DATE"], r["BASKET_ID"]) for r in out}) == 3
    assert all(r["CUST_PRICE_SENSITIVITY"] == "MM" and r["seg_1"] is None for r in out)


def test_one_basket_id_in_two_stores_is_rebuilt_but_sound_ids_are_kept(tmp_path: Path) -> None:
    rows = [
        lgsr_row(BASKET_ID="111", STORE_CODE="STORE00001"),
        lgsr_row(BASKET_ID="111", STORE_CODE="STORE00002", PROD_CODE="PRD2"),
        lgsr_row(BASKET_ID="222", PROD_CODE="PRD3"),
    ]
    write_lgsr(tmp_path / "transactions_200607.csv", rows)
    report = ingest(tmp_path / "transactions_200607.csv", tmp_path / "out", QUIET)
    out = read_output(tmp_path / "out").to_pylist()
    assert report["destroyed_basket_ids"] == 1
    assert [r["BASKET_ID_REBUILT"] for r in out] == [True, True, False]
    assert out[2]["BASKET_ID"] == "222"
    assert out[0]["BASKET_ID"] != out[1]["BASKET_ID"]


def test_missing_required_column_fails_with_one_line_and_no_output(tmp_path: Path, capsys) -> None:
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row()])
    table = pacsv.read_csv(source)
    pacsv.write_csv(table.drop_columns(["SPEND"]), source)

    with pytest.raises(RetailSimError, match=r"transactions_200607\.csv: missing required column SPEND"):
        ingest(source, tmp_path / "out", QUIET)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()

    assert main(["data", "ingest", str(source), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing required column SPEND" in err[0] and "Traceback" not in err[0]


def test_empty_inputs_fail_cleanly(tmp_path: Path) -> None:
    empty = tmp_path / "transactions_200607.csv"
    empty.write_text("")
    with pytest.raises(RetailSimError, match="file is empty"):
        ingest(empty, tmp_path / "out", QUIET)
    write_lgsr(empty, [])
    with pytest.raises(RetailSimError, match="no data rows"):
        ingest(empty, tmp_path / "out", QUIET)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    with pytest.raises(RetailSimError, match="no input files"):
        ingest(tmp_path / "nothing_*.csv", tmp_path / "out", QUIET)


def test_a_crash_leaves_no_output_and_a_rerun_resumes_to_the_same_result(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_lgsr(src / "transactions_200607.csv", [lgsr_row(), lgsr_row(PROD_CODE="PRD2"), lgsr_row(QUANTITY="x")])
    write_lgsr(
        src / "transactions_200609.csv",
        [lgsr_row(SHOP_WEEK="200609", SHOP_DATE="20060424", SHOP_WEEKDAY="2", BASKET_ID="5")] * 2,
    )
    write_calendar(src / "time.csv", CALENDAR_200607_200609)
    expected = ingest(src, tmp_path / "fresh", QUIET)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(ingest_module, "_build_report", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest(src, tmp_path / "out", QUIET)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "out.partial").exists()

    monkeypatch.undo()
    staged_again = []
    monkeypatch.setattr(ingest_module, "_stage_one_file", lambda *a, **k: staged_again.append(a))
    resumed = ingest(src, tmp_path / "out", QUIET)
    assert staged_again == []  # both files were already staged before the crash
    assert not (tmp_path / "out.partial").exists()
    for key in ("rows_read", "rows_accepted", "rows_quarantined", "quarantine_reasons", "baskets", "missing_weeks"):
        assert resumed[key] == expected[key]
    assert read_output(tmp_path / "out").equals(read_output(tmp_path / "fresh"))
    assert expected["missing_weeks"] == [200608]
    assert read_calendar_table(tmp_path / "out").column("shop_week").to_pylist() == [200607, 200608, 200609]
    assert expected["quarantine_reasons"] == {Reason.UNPARSEABLE_NUMBER: 1, Reason.DUPLICATE_LINE: 1}


def test_parquet_and_gzip_inputs_give_the_same_dataset_as_csv(tmp_path: Path) -> None:
    rows = [lgsr_row(PROD_CODE=f"PRD{i}", SPEND=f"{i}.5") for i in range(5)]
    csv_dir, gz_dir, pq_dir = (tmp_path / n for n in ("csv", "gz", "pq"))
    for d in (csv_dir, gz_dir, pq_dir):
        d.mkdir()
    write_lgsr(csv_dir / "transactions_200607.csv", rows)
    write_lgsr(gz_dir / "transactions_200607.csv.gz", rows)
    pq.write_table(pacsv.read_csv(csv_dir / "transactions_200607.csv"), pq_dir / "transactions_200607.parquet")
    outputs = []
    for d in (csv_dir, gz_dir, pq_dir):
        ingest(d, tmp_path / f"out-{d.name}", QUIET)
        outputs.append(read_output(tmp_path / f"out-{d.name}").drop_columns([]))
    assert outputs[0].num_rows == 5
    assert outputs[0].equals(outputs[1])
    assert outputs[0].select(["PROD_CODE", "SPEND", "QUANTITY", "SHOP_DATE"]).equals(
        outputs[2].select(["PROD_CODE", "SPEND", "QUANTITY", "SHOP_DATE"])
    )


def test_inferred_calendar_catches_a_row_dated_in_another_week(tmp_path: Path) -> None:
    rows = [lgsr_row(PROD_CODE=f"PRD{i}") for i in range(4)]
    rows.append(lgsr_row(SHOP_DATE="20060424", SHOP_WEEKDAY="2", BASKET_ID="77"))
    write_lgsr(tmp_path / "transactions_200607.csv", rows)
    report = ingest(tmp_path / "transactions_200607.csv", tmp_path / "out", QUIET)
    assert report["calendar_source"] == "inferred"
    assert report["quarantine_reasons"] == {Reason.DATE_OUTSIDE_WEEK: 1}


def test_an_inferred_calendar_keeps_a_week_without_data_and_holds_no_impossible_week(tmp_path: Path) -> None:
    """Weeks 200607 and 200609 have rows, 200608 none: the calendar still spans 200608, so the pipeline's
    week index leaves it a gap (200609 is week 3). A SHOP_WEEK of 200699 is no week: no span is invented
    for it, and its row is quarantined as a week a given calendar lacks would be."""
    write_lgsr(tmp_path / "in" / "transactions_200607.csv", [lgsr_row(), lgsr_row(SHOP_WEEK="200699", BASKET_ID="9")])
    write_lgsr(tmp_path / "in" / "transactions_200609.csv", [lgsr_row(SHOP_WEEK="200609", SHOP_DATE="20060429", BASKET_ID="2")])
    report = ingest(tmp_path / "in", tmp_path / "out", QUIET)
    assert report["calendar_source"] == "inferred" and report["missing_weeks"] == [200608]
    assert report["quarantine_reasons"] == {Reason.DATE_OUTSIDE_WEEK: 1}
    calendar = read_calendar_table(tmp_path / "out")
    assert WeekIndex.from_calendar(calendar, 200607, 200609, 1, 2).index(200609) == 3
    assert [(row["shop_week"], row["date_from"], row["date_to"]) for row in calendar.to_pylist()] == [
        (200607, date(2006, 4, 10), date(2006, 4, 16)), (200608, date(2006, 4, 17), date(2006, 4, 23)),
        (200609, date(2006, 4, 24), date(2006, 4, 30))]  # fmt: skip


def test_a_copy_that_differs_only_in_number_formatting_is_a_duplicate(tmp_path: Path) -> None:
    """docs/ingest.md: the same value in every column after parsing (07 and 7 are the same hour)."""
    row = lgsr_row(SHOP_HOUR="8", QUANTITY="3", SPEND="0.34")
    copies = [lgsr_row(SHOP_HOUR="08", QUANTITY="3", SPEND="0.34"), lgsr_row(SHOP_HOUR="8", QUANTITY="03", SPEND="0.340")]
    source = write_lgsr(tmp_path / "transactions_200607.csv", [row, *copies, lgsr_row(SHOP_HOUR="9", QUANTITY="3", SPEND="0.34")])
    report = ingest(source, tmp_path / "out", QUIET)
    assert report["quarantine_reasons"] == {Reason.DUPLICATE_LINE: 2} and report["rows_accepted"] == 2


def test_an_ingest_is_current_until_an_input_file_is_added_changed_or_the_calendar_is(tmp_path: Path) -> None:
    """What `pipeline run RAW` asks before reusing WORKDIR/ingested (it reused a stale one)."""
    from world_model.data.ingest import ingest_is_current

    source = tmp_path / "in"
    write_lgsr(source / "transactions_200607.csv", [lgsr_row()])
    assert not ingest_is_current(source, tmp_path / "out")
    ingest(source, tmp_path / "out", QUIET)
    assert ingest_is_current(source, tmp_path / "out")
    write_calendar(source / "time.csv", CALENDAR_200607_200609)
    assert not ingest_is_current(source, tmp_path / "out")
    ingest(source, tmp_path / "out", IngestConfig(progress=False, workers=1, overwrite=True))
    assert ingest_is_current(source, tmp_path / "out")
    write_lgsr(source / "transactions_200608.csv", [lgsr_row(SHOP_WEEK="200608", SHOP_DATE="20060422")])
    assert not ingest_is_current(source, tmp_path / "out")


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row()])
    ingest(source, tmp_path / "out", QUIET)
    with pytest.raises(RetailSimError, match="--overwrite"):
        ingest(source, tmp_path / "out", QUIET)
    report = ingest(source, tmp_path / "out", IngestConfig(progress=False, workers=1, overwrite=True))
    assert report["rows_accepted"] == 1
    assert not (tmp_path / "out.old").exists()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(RetailSimError, match="a_file: exists and is not a directory"):
        ingest(source, tmp_path / "a_file", IngestConfig(progress=False, workers=1, overwrite=True))


def test_process_pool_gives_the_same_result_as_inline(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for week, day in ((200607, "20060415"), (200609, "20060429")):
        rows = [lgsr_row(SHOP_WEEK=str(week), SHOP_DATE=day, PROD_CODE=f"PRD{i}", BASKET_ID=f"{week}{i % 3}") for i in range(30)]
        write_lgsr(src / f"transactions_{week}.csv", rows + [lgsr_row(SHOP_WEEK=str(week), QUANTITY="-2")])
    inline = ingest(src, tmp_path / "a", QUIET)
    pooled = ingest(src, tmp_path / "b", IngestConfig(progress=False, workers=2))
    assert inline["rows_quarantined"] == pooled["rows_quarantined"] == 2
    assert read_output(tmp_path / "a").equals(read_output(tmp_path / "b"))


def test_real_slice_counts_match_the_raw_files(real_sample: Path, tmp_path: Path) -> None:
    src = tmp_path / "slice"
    src.mkdir()
    for week in (200607, 200609, 200610):
        shutil.copy(real_sample / f"transactions_{week}.csv.gz", src)
    shutil.copy(real_sample / "time.csv", src)
    report = ingest(src, tmp_path / "out", QUIET)
    raw = duckdb.connect().execute(
        f"""SELECT count(*), count(DISTINCT BASKET_ID), count(DISTINCT NULLIF(CUST_CODE, '')),
                   count(DISTINCT PROD_CODE), count(DISTINCT STORE_CODE)
            FROM read_csv('{src}/transactions_*.csv.gz', all_varchar=true)"""
    ).fetchone()
    assert (report["rows_read"], report["baskets"], report["customers"], report["products"], report["stores"]) == raw
    assert report["rows_quarantined"] == 0
    assert report["missing_weeks"] == [200608]
    assert report["layout"] == "seg"


def test_missing_weeks_are_named_without_a_calendar_by_lgsr_numbering(tmp_path: Path) -> None:
    for week, day, weekday in ((200651, "20070213", "3"), (200702, "20070306", "3")):
        write_lgsr(tmp_path / f"transactions_{week}.csv", [lgsr_row(SHOP_WEEK=str(week), SHOP_DATE=day, SHOP_WEEKDAY=weekday, BASKET_ID=str(week))])
    report = ingest(tmp_path, tmp_path / "out", QUIET)
    assert report["calendar_source"] == "inferred"
    assert report["missing_weeks"] == [200652, 200701]


def test_whole_real_sample_is_counted_exactly_and_loses_nothing(real_sample: Path, tmp_path: Path) -> None:
    report = ingest(real_sample, tmp_path / "out", IngestConfig(progress=False))
    raw_rows = duckdb.connect().execute(
        f"SELECT count(*) FROM read_csv('{real_sample}/transactions_*.csv.gz', all_varchar=true)"
    ).fetchone()[0]
    assert report["files"] == 94
    assert report["rows_read"] == raw_rows == 2_519_777
    assert report["rows_accepted"] == raw_rows and report["rows_quarantined"] == 0
    assert (report["first_week"], report["last_week"]) == (200607, 200752)
    assert report["missing_weeks"] == [200608, 200643, 200703, 200743]
    assert (report["customers"], report["products"], report["stores"], report["baskets"]) == (4862, 4993, 761, 392510)
    assert report["basket_ids_reconstructed"] is False


def _two_week_source(root: Path) -> Path:
    src = root / "in"
    write_lgsr(src / "transactions_200607.csv", [lgsr_row(), lgsr_row(PROD_CODE="PRD2"), lgsr_row()])  # a duplicate
    write_lgsr(src / "transactions_200609.csv", [lgsr_row(SHOP_WEEK="200609", SHOP_DATE="20060424", SHOP_WEEKDAY="2", BASKET_ID="5")])
    write_calendar(src / "time.csv", CALENDAR_200607_200609)
    return src


@pytest.mark.parametrize("crash_in", ["_commit_week", "_quarantine_late_rejections", "_publish"])
def test_a_crash_in_any_late_step_resumes_to_the_same_result(tmp_path: Path, monkeypatch, crash_in: str) -> None:
    src = _two_week_source(tmp_path)
    expected = ingest(src, tmp_path / "fresh", QUIET)
    real = getattr(ingest_module, crash_in)
    calls = []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, crash_in, crash_once)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest(src, tmp_path / "out", QUIET)
    resumed = ingest(src, tmp_path / "out", QUIET)
    assert resumed["quarantine_reasons"] == expected["quarantine_reasons"] == {Reason.DUPLICATE_LINE: 1}
    assert resumed["rows_accepted"] == expected["rows_accepted"]
    assert read_output(tmp_path / "out").equals(read_output(tmp_path / "fresh"))
    quarantine = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pylist()
    assert [(r["line"], r["reason"]) for r in quarantine] == [(4, Reason.DUPLICATE_LINE)]


def test_a_hard_crash_between_the_publishing_renames_keeps_the_previous_output(tmp_path: Path) -> None:
    """A rerun with --overwrite that dies (power cut) after moving the old output aside and before the new
    one is renamed into place: the next run finds the old output where it was."""
    src = _two_week_source(tmp_path)
    out = tmp_path / "out"
    ingest(src, out, QUIET)
    before = read_output(out)
    script = f"""
import os
from world_model.data.ingest import IngestConfig, ingest
real = os.replace
os.replace = lambda a, b: os._exit(3) if str(a).endswith(".partial") else real(a, b)
ingest({str(src)!r}, {str(out)!r}, IngestConfig(progress=False, workers=1, overwrite=True))
"""
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 3
    assert not out.exists()  # the moment of the crash: the old output aside, the new one not yet in place
    with pytest.raises(RetailSimError, match="not empty"):  # put back first, so it is not overwritten unasked
        ingest(src, out, QUIET)
    assert read_output(out).equals(before)
    ingest(src, out, IngestConfig(progress=False, workers=1, overwrite=True))
    assert read_output(out).equals(before) and sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_a_crash_at_any_file_operation_of_the_late_quarantine_step_loses_no_row(tmp_path: Path, monkeypatch) -> None:
    """Two files each spanning two weeks, with a duplicate in each week: the late rejections of both weeks
    become each file's quarantine (one atomic write a file, then the step's done marker), and a crash at
    the step's first, second or third file operation must resume to all four rows quarantined."""
    for name, basket in (("a", 5), ("b", 6)):
        week_9 = {"SHOP_WEEK": "200609", "SHOP_DATE": "20060424", "SHOP_WEEKDAY": "2", "BASKET_ID": str(basket)}
        week_7 = {"BASKET_ID": str(basket + 10)}
        write_lgsr(tmp_path / "in" / f"transactions_{name}.csv",
                   [lgsr_row(**week_7), lgsr_row(**week_7), lgsr_row(**week_9), lgsr_row(**week_9)])  # fmt: skip
    write_calendar(tmp_path / "in" / "time.csv", CALENDAR_200607_200609)
    real_step, real_unlink, real_replace = ingest_module._quarantine_late_rejections, Path.unlink, ingest_module.os.replace
    for crash_at in (1, 2, 3):
        operations, inside = [], []

        def counted(real):
            def operation(*args, **kwargs):
                if inside:
                    operations.append(1)
                    if len(operations) == crash_at:
                        raise RuntimeError("power cut")
                return real(*args, **kwargs)
            return operation

        def step(*args, **kwargs):
            inside.append(1)
            try:
                return real_step(*args, **kwargs)
            finally:
                inside.clear()

        monkeypatch.setattr(Path, "unlink", counted(real_unlink))
        monkeypatch.setattr(ingest_module.os, "replace", counted(real_replace))
        monkeypatch.setattr(ingest_module, "_quarantine_late_rejections", step)
        out = tmp_path / f"out{crash_at}"
        with pytest.raises(RuntimeError, match="power cut"):
            ingest(tmp_path / "in", out, QUIET)
        monkeypatch.undo()
        ingest(tmp_path / "in", out, QUIET)  # the resume
        quarantine = pq.read_table(out / "quarantine.parquet").to_pylist()
        assert [(Path(r["source_file"]).name, r["line"], r["reason"]) for r in quarantine] == [
            (f"transactions_{name}.csv", line, Reason.DUPLICATE_LINE) for name in "ab" for line in (3, 5)]
        assert json.loads((out / "ingest_report.json").read_text())["rows_quarantined"] == 4


def test_two_ingests_in_one_process_do_not_share_destroyed_ids(tmp_path: Path) -> None:
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(BASKET_ID="1"), lgsr_row(BASKET_ID="2", PROD_CODE="P2")])
    assert ingest(source, tmp_path / "out", QUIET)["destroyed_basket_ids"] == 0
    write_lgsr(source, [lgsr_row(BASKET_ID="1"), lgsr_row(BASKET_ID="1", STORE_CODE="STORE00009", PROD_CODE="P2")])
    report = ingest(source, tmp_path / "out", IngestConfig(progress=False, workers=1, overwrite=True))
    assert report["destroyed_basket_ids"] == 1
    assert read_output(tmp_path / "out").column("BASKET_ID_REBUILT").to_pylist() == [True, True]


def test_an_interrupted_clean_up_does_not_look_resumable(tmp_path: Path, monkeypatch) -> None:
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(), lgsr_row(QUANTITY="0")])
    real_rmtree = shutil.rmtree

    def interrupted(path, *args, **kwargs):
        if str(path).endswith("_duckdb_tmp"):
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(ingest_module.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest(source, tmp_path / "out", QUIET)
    monkeypatch.undo()
    report = ingest(source, tmp_path / "out", QUIET)
    assert (report["rows_accepted"], report["rows_quarantined"]) == (1, 1)


def test_large_hour_and_weekday_are_range_errors_not_parse_errors(tmp_path: Path) -> None:
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(SHOP_HOUR="200"), lgsr_row(SHOP_WEEKDAY="300")])
    report = ingest(source, tmp_path / "out", QUIET)
    assert report["quarantine_reasons"] == {Reason.HOUR_OUT_OF_RANGE: 1, Reason.WEEKDAY_MISMATCH: 1}


def test_byte_order_mark_and_lone_carriage_return(tmp_path: Path) -> None:
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(), lgsr_row(PROD_CODE="P2"), lgsr_row(PROD_CODE="P3")])
    text = source.read_text().splitlines()
    source.write_bytes(("\ufeff" + "\n".join(text[:2]) + "\r" + "\n".join(text[2:]) + "\n").encode("utf-8"))
    report = ingest(source, tmp_path / "out", QUIET)
    assert report["rows_read"] == 3 and report["rows_accepted"] == 3


def test_typed_parquet_dates_and_float_ids_are_read_as_lgsr_text(tmp_path: Path) -> None:
    csv_file = write_lgsr(tmp_path / "csv" / "transactions_200607.csv", [lgsr_row(), lgsr_row(PROD_CODE="P2", BASKET_ID="994100100398295")])
    table = pacsv.read_csv(csv_file)
    table = table.set_column(table.schema.get_field_index("SHOP_DATE"), "SHOP_DATE", pa.array([date(2006, 4, 15)] * 2))
    table = table.set_column(table.schema.get_field_index("BASKET_ID"), "BASKET_ID", table.column("BASKET_ID").cast(pa.float64()))
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "transactions_200607.parquet")
    report = ingest(tmp_path / "pq", tmp_path / "out", QUIET)
    assert report["rows_accepted"] == 2 and report["destroyed_basket_ids"] == 0
    assert sorted(read_output(tmp_path / "out").column("BASKET_ID").to_pylist()) == ["994100100398294", "994100100398295"]


def test_paths_with_quotes_and_a_bad_memory_limit(tmp_path: Path) -> None:
    source = write_lgsr(tmp_path / "it's" / "transactions_200607.csv", [lgsr_row()])
    assert ingest(source.parent, tmp_path / "o'ut", QUIET)["rows_accepted"] == 1
    with pytest.raises(RetailSimError, match="--memory-limit"):
        ingest(source.parent, tmp_path / "x", IngestConfig(progress=False, memory_limit="2 gigs"))


def test_jobs_run_inline_use_the_configured_duckdb_threads(tmp_path: Path, monkeypatch) -> None:
    """workers=None with one input file and one week: both pools have one job and run it inline, so its
    DuckDB connection gets the configured threads, not the single thread of a pool's process."""
    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(), lgsr_row()])  # a duplicate to rewrite
    threads = []
    real = ingest_module.worker_connection
    monkeypatch.setattr(ingest_module, "worker_connection", lambda *args: threads.append(args[2]) or real(*args))
    ingest(source, tmp_path / "out", IngestConfig(progress=False, workers=None, threads=2))
    assert threads and set(threads) == {2}


def test_a_resume_after_the_late_quarantine_step_does_not_read_the_sources_again(tmp_path: Path, monkeypatch) -> None:
    src = _two_week_source(tmp_path)
    real_publish, reread = ingest_module._publish, []
    monkeypatch.setattr(ingest_module, "_publish", lambda *a: (_ for _ in ()).throw(RuntimeError("power cut")))
    with pytest.raises(RuntimeError, match="power cut"):
        ingest(src, tmp_path / "out", QUIET)
    monkeypatch.setattr(ingest_module, "_publish", real_publish)
    real_reread = ingest_module.reread_rows
    monkeypatch.setattr(ingest_module, "reread_rows", lambda *a: reread.append(a) or real_reread(*a))
    resumed = ingest(src, tmp_path / "out", QUIET)
    assert reread == [] and resumed["quarantine_reasons"] == {Reason.DUPLICATE_LINE: 1}
    assert pq.read_table(tmp_path / "out" / "quarantine.parquet").num_rows == 1
