"""The runner: manifests, skipping finished stages, resuming after a crash, atomic outputs, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retailsim.cli import main
from tests.world_model.pipeline.conftest import SPLIT
from world_model.errors import RetailSimError
from world_model.pipeline.runner import MANIFESTS, check_built_together
from world_model.pipeline import runner
from world_model.pipeline.runner import SPILL, Stage, StageContext, run_pipeline
from world_model.pipeline.weeks import WeekIndex
from world_model.pipeline.stages import ALL_STAGES
from world_model.response.model import RESPONSE_FILE


def counting_stage(name: str, calls: list[str], depends_on: tuple[str, ...] = (), fail: bool = False) -> Stage:
    def run(ctx: StageContext) -> dict[str, int]:
        calls.append(name)
        pq.write_table(pa.table({"x": [1, 2]}), ctx.out / f"{name}.parquet")
        if fail:
            raise RuntimeError(f"{name} crashed")
        return {f"{name}.parquet": 2}

    return Stage(name=name, section="processed", outputs=(f"{name}.parquet",), run=run, depends_on=depends_on)


def test_finished_stages_are_skipped_and_a_crash_resumes_at_the_failed_stage(ingested_market: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    crashing = [counting_stage("a", calls), counting_stage("b", calls, ("a",), fail=True)]
    with pytest.raises(RuntimeError, match="b crashed"):
        run_pipeline(ingested_market, tmp_path, crashing, SPLIT)
    assert not (tmp_path / "processed" / "b.parquet").exists()  # nothing half-written is published
    assert not (tmp_path / "processed" / ".tmp-b").exists()  # nor left behind
    assert (tmp_path / "processed" / "a.parquet").exists()

    stages = [counting_stage("a", calls), counting_stage("b", calls, ("a",))]
    report = run_pipeline(ingested_market, tmp_path, stages, SPLIT)
    assert calls == ["a", "b", "b"]  # a ran once; b ran again after its crash
    assert report["stages"]["a"]["skipped"] and not report["stages"]["b"]["skipped"]
    assert run_pipeline(ingested_market, tmp_path, stages, SPLIT)["stages"]["b"]["skipped"]
    assert calls == ["a", "b", "b"]
    manifest = json.loads((tmp_path / "manifests" / "b.json").read_text())
    recorded = ("fingerprint", "outputs", "seconds", "peak_rss_mb")
    assert all(key in manifest for key in recorded)
    assert manifest["outputs"] == {"b.parquet": 2} and manifest["peak_rss_mb"] > 0


def test_a_changed_parameter_or_a_missing_output_reruns_the_stage(ingested_market: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    stages = [counting_stage("a", calls)]
    run_pipeline(ingested_market, tmp_path, stages, SPLIT)
    run_pipeline(ingested_market, tmp_path, stages, dataclasses.replace(SPLIT, train_end=7))
    (tmp_path / "processed" / "a.parquet").unlink()
    run_pipeline(ingested_market, tmp_path, stages, SPLIT)
    assert calls == ["a", "a", "a"]


def test_a_crash_while_publishing_outputs_reruns_the_stage(ingested_market: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Two outputs replaced one by one: a crash between them must not leave the last manifest vouching
    for a mix of two runs' outputs."""

    def run(ctx: StageContext) -> dict[str, int]:
        for name in ("a.txt", "b.txt"):
            (ctx.out / name).write_text(f"train_end={ctx.config.train_end}")
        return {"a.txt": 1, "b.txt": 1}

    stages = [Stage(name="s", section="processed", outputs=("a.txt", "b.txt"), run=run)]
    run_pipeline(ingested_market, tmp_path, stages, SPLIT)
    replace, calls = runner.os.replace, []

    def crash_on_second(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return replace(source, target)

    monkeypatch.setattr(runner.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(ingested_market, tmp_path, stages, dataclasses.replace(SPLIT, train_end=SPLIT.train_end - 1))
    monkeypatch.setattr(runner.os, "replace", replace)
    report = run_pipeline(ingested_market, tmp_path, stages, SPLIT)
    assert not report["stages"]["s"]["skipped"]
    texts = {(tmp_path / "processed" / name).read_text() for name in ("a.txt", "b.txt")}
    assert texts == {f"train_end={SPLIT.train_end}"}


def test_a_split_past_the_data_warns_of_the_empty_split(ingested_market: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level("WARNING", logger=runner.log.name):
        run_pipeline(ingested_market, tmp_path / "a", [counting_stage("a", [])], SPLIT)
        assert not caplog.records
        run_pipeline(ingested_market, tmp_path / "b", [counting_stage("a", [])], dataclasses.replace(SPLIT, valid_end=999))
        assert [r.getMessage().split("so the ")[1] for r in caplog.records] == ["test split is empty"]
        caplog.clear()
        run_pipeline(ingested_market, tmp_path / "c", [counting_stage("a", [])],
                     dataclasses.replace(SPLIT, train_end=998, valid_end=999))  # fmt: skip
        assert [r.getMessage().split("so the ")[1] for r in caplog.records] == ["validation split is empty", "test split is empty"]


def test_an_ingest_that_accepted_no_row_is_a_one_line_error(tmp_path: Path) -> None:
    from tests.conftest import lgsr_row, write_lgsr
    from world_model.data.ingest import IngestConfig, ingest

    source = write_lgsr(tmp_path / "transactions_200607.csv", [lgsr_row(QUANTITY="0")])
    report = ingest(source, tmp_path / "ingested", IngestConfig(progress=False, workers=1))
    assert report["rows_accepted"] == 0 and report["first_week"] is None
    with pytest.raises(RetailSimError, match=r"ingested: ingest accepted no rows \(their reasons: .*quarantine.parquet\)"):
        run_pipeline(tmp_path / "ingested", tmp_path / "work", [counting_stage("a", [])], SPLIT)
    assert not (tmp_path / "work").exists()


def test_a_bad_memory_limit_fails_before_any_stage(ingested_market: Path, tmp_path: Path) -> None:
    with pytest.raises(RetailSimError, match="memory"):
        run_pipeline(ingested_market, tmp_path / "w", [counting_stage("a", [])], dataclasses.replace(SPLIT, memory_limit="lots"))
    assert not (tmp_path / "w").exists()


def test_a_one_week_training_split_is_refused_by_the_price_response_only(ingested_market: Path, tmp_path: Path) -> None:
    """The fit has no price change to learn from (it failed on an empty array); the stages that need no
    week-to-week change (samples of a one-week split) still run."""
    one_week = dataclasses.replace(SPLIT, train_end=1, valid_end=2)
    with pytest.raises(RetailSimError, match="--split: TRAIN_END must be 2 or more for the price response"):
        run_pipeline(ingested_market, tmp_path / "w", ALL_STAGES, one_week, only=["price_response"])
    assert (tmp_path / "w" / "processed" / "prices_derived.parquet").exists()  # its upstream stage ran
    assert not (tmp_path / "w" / "processed" / RESPONSE_FILE).exists()


def test_spill_files_left_by_a_killed_run_are_cleared(ingested_market: Path, tmp_path: Path) -> None:
    leftover = tmp_path / SPILL / "duckdb_temp_123_storage_0.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x" * 1024)
    run_pipeline(ingested_market, tmp_path, [counting_stage("a", [])], SPLIT)
    assert not leftover.exists()


def test_only_selected_stages_and_their_dependencies_run(ingested_market: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    stages = [counting_stage("a", calls), counting_stage("b", calls, ("a",)), counting_stage("c", calls)]
    run_pipeline(ingested_market, tmp_path, stages, SPLIT, only=["b"])
    assert calls == ["a", "b"]
    with pytest.raises(RetailSimError, match="unknown stage z"):
        run_pipeline(ingested_market, tmp_path, stages, SPLIT, only=["z"])


def test_week_index_keeps_missing_weeks_in_place() -> None:
    calendar = pa.table({"shop_week": [200651, 200652, 200701, 200702, 200703]})
    weeks = WeekIndex.from_calendar(calendar, 200651, 200703, train_end=2, valid_end=3)
    assert weeks.index(200701) == 3 and weeks.index(200703) == 5
    assert [weeks.split(i) for i in range(1, 6)] == ["train", "train", "validation", "test", "test"]
    with pytest.raises(ValueError):
        WeekIndex.from_calendar(calendar, 200650, 200703, 2, 3)


def test_cli_runs_the_pipeline_and_skips_on_rerun(ingested_market: Path, tmp_path: Path, capsys) -> None:
    args = ["pipeline", "run", str(ingested_market), "--out", str(tmp_path), "--split", "8,10", "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "product_graph" in first and "skipped" not in first
    assert main(args) == 0
    assert capsys.readouterr().out.count("skipped (up to date)") == first.count("\n") - 1
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "run", str(ingested_market), "--out", str(tmp_path), "--split", "9,3"])
    assert exit_info.value.code == 2


def test_sections_from_different_pipeline_states_are_refused(tmp_path: Path) -> None:
    """A run stopped part-way (or --stages of an early stage alone) leaves the tensors of the previous run
    beside the new features: each manifest records the fingerprints it was built on, and a reader of the
    tensor cache checks them all the way down."""
    manifests = tmp_path / MANIFESTS
    check_built_together(tmp_path, "tensor_cache")  # not a pipeline work directory (a scenario's copy): no check
    manifests.mkdir()

    def manifest(stage: str, fingerprint: str, upstream: dict[str, str]) -> None:
        (manifests / f"{stage}.json").write_text(json.dumps({"stage": stage, "fingerprint": fingerprint, "upstream": upstream}))

    manifest("prices", "p1", {})
    manifest("price_features", "f1", {"prices": "p1"})
    manifest("tensor_cache", "t1", {"price_features": "f1", "prices": "p1"})
    check_built_together(tmp_path, "tensor_cache")
    manifest("prices", "p2", {})  # rerun with other parameters, stopped before the later stages
    with pytest.raises(RetailSimError, match=r"stage (tensor_cache|price_features)'s outputs were built on another state of stage prices"):
        check_built_together(tmp_path, "tensor_cache")
    manifest("prices", "p1", {})
    (manifests / "price_features.json").unlink()  # deleted as its outputs are replaced, then the run died
    with pytest.raises(RetailSimError, match=r"stage price_features has no manifest"):
        check_built_together(tmp_path, "tensor_cache")
