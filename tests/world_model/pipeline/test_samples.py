"""Stage ``samples``: the basket index and the next-basket / store-visit samples, against plain Python."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import lgsr_row, write_calendar, write_lgsr
from tests.world_model.pipeline.conftest import SPLIT, truncate_ingested
from world_model.data.dataset import read_calendar_table, read_transactions
from world_model.data.ingest import IngestConfig, ingest
from world_model.pipeline import samples
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.samples import (
    BASKETS, MAX_WEEK_GAP, MIN_PRODUCTS, NEXT_BASKET_FILES, SAMPLES, SAMPLES_SUMMARY, STORE_VISIT_FILES,
)
from world_model.pipeline.stages import ALL_STAGES
from world_model.pipeline.weeks import SPLITS, WeekIndex

STAGES = [stage for stage in ALL_STAGES if stage.name != SAMPLES.name] + [SAMPLES]
ROW_COLUMNS = {"input_basket_row", "target_basket_row", "previous_basket_row", "basket_row"}


def _run(ingested: Path, workdir: Path, config: PipelineConfig, chunk: int | None = None) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        if chunk is not None:
            patch.setattr(samples, "CHUNK_BASKETS", chunk)
        run_pipeline(ingested, workdir, STAGES, config, only=["samples"])
    return workdir / "prepared"


def _read(prepared: Path) -> dict:
    files = {"baskets": BASKETS, **{f"next:{s}": NEXT_BASKET_FILES[s] for s in SPLITS},
             **{f"visit:{s}": STORE_VISIT_FILES[s] for s in SPLITS}}
    out = {key: pq.read_table(prepared / name).to_pylist() for key, name in files.items()}
    out["summary"] = json.loads((prepared / SAMPLES_SUMMARY).read_text())
    return out


def _expected(ingested: Path, config: PipelineConfig) -> dict:
    """The stage's outputs recomputed in plain Python from the ingested rows."""
    report = json.loads((ingested / "ingest_report.json").read_text())
    weeks = WeekIndex.from_calendar(read_calendar_table(ingested), report["first_week"], report["last_week"],
                                    config.train_end, config.valid_end)
    trips: dict[tuple, dict] = {}
    for r in read_transactions(ingested).to_pylist():
        if r["CUST_CODE"] is None:
            continue
        key = (r["CUST_CODE"], r["BASKET_ID"])
        trip = trips.setdefault(key, {"products": set(), **{c: r[c] for c in (
            "CUST_CODE", "BASKET_ID", "STORE_CODE", "SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR",
            "BASKET_SIZE", "BASKET_TYPE", "BASKET_DOMINANT_MISSION", "BASKET_PRICE_SENSITIVITY")}})
        assert all(trip[c] == r[c] for c in ("STORE_CODE", "SHOP_DATE", "SHOP_HOUR", "BASKET_TYPE"))
        trip["products"].add(r["PROD_CODE"])
    order = lambda t: (t["SHOP_DATE"], t["SHOP_HOUR"], t["BASKET_ID"])  # noqa: E731
    by_customer = defaultdict(list)
    for trip in trips.values():
        trip["week_index"] = weeks.index(trip["SHOP_WEEK"])
        trip["split"] = weeks.split(trip["week_index"])
        by_customer[trip["CUST_CODE"]].append(trip)
    baskets = []
    for customer in sorted(by_customer):
        for trip in sorted(by_customer[customer], key=order):
            trip["basket_row"] = len(baskets)
            baskets.append(trip)
    out: dict = {"baskets": baskets, **{f"{kind}:{s}": [] for kind in ("next", "visit") for s in SPLITS}}
    counts = {s: dict.fromkeys(("targets", "cold_start_targets", "dropped_min_products", "dropped_week_gap",
                                "next_basket", "next_basket_cold_start", "store_visit"), 0) for s in SPLITS}
    for t in baskets:
        earlier = [b for b in by_customer[t["CUST_CODE"]] if order(b) < order(t)]  # strictly before the target
        t["history_baskets"] = len(earlier)
        p = max(earlier, key=order) if earlier else None  # the latest earlier basket
        gap = t["week_index"] - p["week_index"] if p else None
        c = counts[t["split"]]
        c["targets"] += 1
        c["cold_start_targets"] += p is None
        if p:
            c["store_visit"] += 1
            out[f"visit:{t['split']}"].append({
                "customer_id": t["CUST_CODE"], "previous_basket_id": p["BASKET_ID"],
                "previous_basket_row": p["basket_row"], "previous_store": p["STORE_CODE"],
                "target_basket_id": t["BASKET_ID"], "target_basket_row": t["basket_row"],
                "target_week": t["SHOP_WEEK"], "target_week_index": t["week_index"],
                "target_weekday": t["SHOP_WEEKDAY"], "target_hour": t["SHOP_HOUR"], "target_store": t["STORE_CODE"],
                "num_history_baskets": len(earlier), "week_gap": gap, "split": t["split"],
            })
        if len(t["products"]) < MIN_PRODUCTS:
            c["dropped_min_products"] += 1
            continue
        if p and gap > MAX_WEEK_GAP:
            c["dropped_week_gap"] += 1
            continue
        c["next_basket"] += 1
        c["next_basket_cold_start"] += p is None
        out[f"next:{t['split']}"].append({
            "customer_id": t["CUST_CODE"], "input_basket_id": p and p["BASKET_ID"],
            "target_basket_id": t["BASKET_ID"], "input_basket_row": p and p["basket_row"],
            "target_basket_row": t["basket_row"], "week": t["SHOP_WEEK"], "week_index": t["week_index"],
            "store": t["STORE_CODE"], "products": sorted(t["products"]), "n_products": len(t["products"]),
            "weekday": t["SHOP_WEEKDAY"], "hour": t["SHOP_HOUR"], "num_history_baskets": len(earlier),
            "week_gap": gap, "split": t["split"],
        })
    out["baskets"] = [{
        "basket_row": t["basket_row"], "BASKET_ID": t["BASKET_ID"], "CUST_CODE": t["CUST_CODE"],
        "STORE_CODE": t["STORE_CODE"], "SHOP_WEEK": t["SHOP_WEEK"], "week_index": t["week_index"],
        "split": t["split"], "SHOP_DATE": t["SHOP_DATE"], "weekday": t["SHOP_WEEKDAY"], "hour": t["SHOP_HOUR"],
        "BASKET_SIZE": t["BASKET_SIZE"], "BASKET_TYPE": t["BASKET_TYPE"],
        "BASKET_DOMINANT_MISSION": t["BASKET_DOMINANT_MISSION"],
        "BASKET_PRICE_SENSITIVITY": t["BASKET_PRICE_SENSITIVITY"], "n_products": len(t["products"]),
        "history_baskets": t["history_baskets"],
    } for t in baskets]
    out["counts"] = counts
    return out


def _assert_matches(got: dict, expected: dict) -> None:
    assert got["baskets"] == expected["baskets"]  # values, column order and row order
    for key in [f"{kind}:{s}" for kind in ("next", "visit") for s in SPLITS]:
        assert got[key] == expected[key], key
    assert got["summary"]["splits"] == expected["counts"]
    assert got["summary"]["baskets"] == len(expected["baskets"])


# --- the generated market ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def market(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The stage on the shared market, with small chunks so the product lists come from many parts."""
    return _read(_run(ingested_market, tmp_path_factory.mktemp("samples-market"), SPLIT, chunk=97))


def test_stage_declaration() -> None:
    assert SAMPLES.name == "samples" and SAMPLES.section == "prepared" and SAMPLES.depends_on == ()
    assert SAMPLES.outputs == (
        "baskets.parquet", "train_next_basket.parquet", "validation_next_basket.parquet", "test_next_basket.parquet",
        "train_store_visit.parquet", "validation_store_visit.parquet", "test_store_visit.parquet",
        "samples_summary.json",
    )


def test_market_outputs_match_plain_python(market: dict, ingested_market: Path) -> None:
    expected = _expected(ingested_market, SPLIT)
    _assert_matches(market, expected)
    assert all(market[f"next:{s}"] for s in SPLITS) and all(market[f"visit:{s}"] for s in SPLITS)
    assert sum(c["dropped_min_products"] for c in expected["counts"].values()) > 0


def test_market_samples_use_only_earlier_baskets(market: dict) -> None:
    baskets = market["baskets"]
    assert [b["basket_row"] for b in baskets] == list(range(len(baskets)))
    trip = lambda row: (baskets[row]["SHOP_DATE"], baskets[row]["hour"], baskets[row]["BASKET_ID"])  # noqa: E731
    for split in SPLITS:
        for kind, previous, target in (("next", "input_basket_row", "target_basket_row"),
                                       ("visit", "previous_basket_row", "target_basket_row")):
            rows = market[f"{kind}:{split}"]
            assert [r[target] for r in rows] == sorted(r[target] for r in rows)
            for r in rows:
                t = baskets[r[target]]
                assert t["split"] == r["split"] == split  # the split of the target's week
                assert t["BASKET_ID"] == r["target_basket_id"] and t["CUST_CODE"] == r["customer_id"]
                if r[previous] is not None:
                    p = baskets[r[previous]]
                    assert p["CUST_CODE"] == t["CUST_CODE"] and trip(r[previous]) < trip(r[target])
                    assert r["week_gap"] == t["week_index"] - p["week_index"] >= 0


def test_chunk_size_does_not_change_the_output(market: dict, ingested_market: Path, tmp_path: Path) -> None:
    whole = _read(_run(ingested_market, tmp_path / "work", SPLIT, chunk=10**9))
    assert whole == market


def test_train_samples_do_not_depend_on_later_weeks(market: dict, ingested_market: Path, tmp_path: Path) -> None:
    report = json.loads((ingested_market / "ingest_report.json").read_text())
    weeks = WeekIndex.from_calendar(read_calendar_table(ingested_market), report["first_week"],
                                    report["last_week"], SPLIT.train_end, SPLIT.valid_end)
    cut_dir = truncate_ingested(ingested_market, tmp_path / "cut", weeks.last_train_shop_week)
    cut = _read(_run(cut_dir, tmp_path / "work", SPLIT))
    assert not cut["next:validation"] and not cut["next:test"] and not cut["visit:test"]

    def resolved(rows: list[dict], baskets: list[dict]) -> list[dict]:
        """Rows are positions in each run's own baskets.parquet: compare the baskets they point to."""
        ids = {b["basket_row"]: (b["CUST_CODE"], b["BASKET_ID"]) for b in baskets}
        return [{k: (ids.get(v) if k in ROW_COLUMNS else v) for k, v in r.items()} for r in rows]

    for kind in ("next", "visit"):
        assert cut[f"{kind}:train"]
        assert resolved(cut[f"{kind}:train"], cut["baskets"]) == resolved(market[f"{kind}:train"], market["baskets"])
    train_baskets = [b for b in market["baskets"] if b["split"] == "train"]
    assert resolved(cut["baskets"], cut["baskets"]) == resolved(train_baskets, market["baskets"])
    assert cut["summary"]["splits"]["train"] == market["summary"]["splits"]["train"]


# --- a hand-made market that hits every filter ------------------------------------------------------------

FIRST_MONDAY = date(2006, 2, 27)  # fiscal week 200601
TINY_SPLIT = PipelineConfig(train_end=10, valid_end=16, progress=False)
# (basket id, customer, week index, day of week (0 = Monday), hour, store, products); "" = anonymous
TINY_BASKETS = [
    ("900000000000001", "CUSTA", 1, 0, 10, "STORE00001", ["P1", "P2", "P1"]),  # cold start, kept (P1 twice)
    ("900000000000002", "CUSTA", 1, 0, 10, "STORE00001", ["P3"]),  # same hour: after ...001 by id; 1 product
    ("900000000000003", "CUSTA", 2, 1, 9, "STORE00002", ["P3", "P1"]),  # input ...002 (dropped as a target)
    ("900000000000004", "CUSTA", 16, 2, 12, "STORE00001", ["P2", "P4"]),  # 14 weeks after ...003: dropped
    ("900000000000005", "CUSTA", 17, 3, 18, "STORE00003", ["P1", "P2", "P3"]),  # test, input in validation
    ("900000000000006", "CUSTB", 3, 4, 11, "STORE00001", ["P5"]),  # cold start with 1 product: dropped
    ("900000000000007", "CUSTB", 15, 4, 11, "STORE00002", ["P5", "P1"]),  # gap exactly 12: kept
    ("900000000000008", "CUSTC", 18, 5, 8, "STORE00002", ["P2", "P3"]),  # a test cold start
    ("900000000000019", "CUSTD", 2, 2, 9, "STORE00001", ["P1", "P2"]),  # hour before id: 9h first...
    ("900000000000011", "CUSTD", 2, 2, 11, "STORE00001", ["P3", "P4"]),  # ...though its id is smaller
    ("900000000000020", "", 2, 0, 12, "STORE00001", ["P1", "P2"]),  # anonymous: no basket row
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("samples-tiny")
    rows = []
    for basket, customer, week, day, hour, store, products in TINY_BASKETS:
        shop_date = FIRST_MONDAY + timedelta(weeks=week - 1, days=day)
        for product in products:
            rows.append(lgsr_row(
                SHOP_WEEK=str(200600 + week), SHOP_DATE=shop_date.strftime("%Y%m%d"),
                SHOP_WEEKDAY=str(shop_date.isoweekday() % 7 + 1), SHOP_HOUR=str(hour), PROD_CODE=product,
                CUST_CODE=customer, BASKET_ID=basket, STORE_CODE=store, SPEND="1.00" if product != "P1" else "2.00",
                QUANTITY="1" if products.count(product) == 1 else str(1 + len(rows)),
            ))
    write_lgsr(root / "raw" / "lines.csv", rows)
    write_calendar(root / "raw" / "time.csv", {
        200600 + w: ((FIRST_MONDAY + timedelta(weeks=w - 1)).strftime("%Y%m%d"),
                     (FIRST_MONDAY + timedelta(weeks=w - 1, days=6)).strftime("%Y%m%d")) for w in range(1, 19)
    })
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False, workers=1))
    return root / "ingested", _read(_run(root / "ingested", root / "work", TINY_SPLIT, chunk=3))


def test_tiny_outputs_match_plain_python(tiny: tuple[Path, dict]) -> None:
    ingested, got = tiny
    _assert_matches(got, _expected(ingested, TINY_SPLIT))


def test_tiny_baskets_order_and_history(tiny: tuple[Path, dict]) -> None:
    baskets = tiny[1]["baskets"]
    assert [(b["CUST_CODE"], b["BASKET_ID"][-2:], b["history_baskets"]) for b in baskets] == [
        ("CUSTA", "01", 0), ("CUSTA", "02", 1), ("CUSTA", "03", 2), ("CUSTA", "04", 3), ("CUSTA", "05", 4),
        ("CUSTB", "06", 0), ("CUSTB", "07", 1), ("CUSTC", "08", 0), ("CUSTD", "19", 0), ("CUSTD", "11", 1),
    ]
    assert [b["n_products"] for b in baskets[:3]] == [2, 1, 2]
    assert [b["split"] for b in baskets[:5]] == ["train", "train", "train", "validation", "test"]


def test_tiny_filters_each_drop_what_they_should(tiny: tuple[Path, dict]) -> None:
    got = tiny[1]
    short = lambda i: i and i[-2:]  # noqa: E731
    kept = {s: [(short(r["input_basket_id"]), short(r["target_basket_id"]), r["week_gap"], r["num_history_baskets"])
                for r in got[f"next:{s}"]] for s in SPLITS}
    assert kept == {
        "train": [(None, "01", None, 0), ("02", "03", 1, 2), (None, "19", None, 0), ("19", "11", 0, 1)],
        "validation": [("06", "07", 12, 1)],  # its input is a training basket: history crosses splits
        "test": [("04", "05", 1, 4), (None, "08", None, 0)],
    }
    assert got["next:train"][0]["products"] == ["P1", "P2"] and got["next:train"][0]["n_products"] == 2
    visits = {s: [(short(r["previous_basket_id"]), short(r["target_basket_id"]), r["previous_store"],
                   r["target_store"][-1], r["week_gap"]) for r in got[f"visit:{s}"]] for s in SPLITS}
    assert visits == {
        "train": [("01", "02", "STORE00001", "1", 0), ("02", "03", "STORE00001", "2", 1),
                  ("19", "11", "STORE00001", "1", 0)],
        "validation": [("03", "04", "STORE00002", "1", 14), ("06", "07", "STORE00001", "2", 12)],
        "test": [("04", "05", "STORE00001", "3", 1)],
    }
    summary = got["summary"]
    assert summary["customers"] == 4 and summary["baskets"] == 10
    assert summary["splits"]["train"]["dropped_min_products"] == 2  # ...002 and CUSTB's single-product start
    assert summary["splits"]["validation"]["dropped_week_gap"] == 1  # ...004
    assert summary["splits"]["test"]["next_basket_cold_start"] == 1


def test_only_anonymous_shoppers_give_empty_files(tmp_path: Path) -> None:
    write_lgsr(tmp_path / "raw" / "lines.csv", [lgsr_row(CUST_CODE=""), lgsr_row(CUST_CODE="", PROD_CODE="PRD0900034")])
    ingest(tmp_path / "raw", tmp_path / "ingested", IngestConfig(progress=False, workers=1))
    got = _read(_run(tmp_path / "ingested", tmp_path / "work", PipelineConfig(train_end=1, valid_end=2, progress=False)))
    assert all(rows == [] for key, rows in got.items() if key != "summary")
    assert got["summary"]["baskets"] == 0 and got["summary"]["splits"]["train"]["next_basket"] == 0
    assert pq.read_schema(tmp_path / "work" / "prepared" / NEXT_BASKET_FILES["train"]).names[8] == "products"
