"""Stage ``prices``: hand-computed prices on a tiny market, the waterfall order, causality, no leakage."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from world_model.data.calendar import CALENDAR_SCHEMA
from world_model.data.dataset import read_calendar_table, week_dir
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.schema import CANONICAL_SCHEMA
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.prices import PRICES, weighted_median_sql, build_prices
from world_model.pipeline.runner import StageContext
from world_model.pipeline.weeks import WeekIndex

STORES = {"S1": ("LS", "R1"), "S2": ("LS", "R1"), "S3": ("MS", "R1"), "S4": ("LS", "R2"), "S5": ("LS", "R1")}
WEEKS = [200601 + i for i in range(6)]  # index 1..6; 200604 has no data at all
MONDAY = date(2006, 1, 2)

# (week index, product, store, quantity, spend)
TINY_LINES = [
    # week 1: every store sells A; S2 also has a mis-keyed penny line (an outlier), B unsold
    (1, "A", "S1", 1, 1.00), (1, "A", "S2", 1, 1.20), (1, "A", "S2", 1, 0.01), (1, "A", "S3", 1, 1.40),
    (1, "A", "S4", 1, 2.00),
    (1, "C", "S1", 1, 1.00),
    # week 2: A only at S2 and S3 (S3's two lines: median of 1.40 and 1.60 = 1.50); C at 0.95 (a 5% cut)
    (2, "A", "S2", 2, 2.20), (2, "A", "S3", 1, 1.40), (2, "A", "S3", 1, 1.60),
    (2, "C", "S1", 1, 0.95),
    # week 3: A sells nowhere; B first sold (S1 2.00, S2 3.00); C at 0.85 (15% below base 1.00)
    (3, "B", "S1", 1, 2.00), (3, "B", "S2", 1, 3.00),
    (3, "C", "S1", 1, 0.85),
    # week 4: missing from the data
    # week 5 (validation): A only at S1, on promotion; C at 0.70; D sold for the first time
    (5, "A", "S1", 1, 0.80), (5, "C", "S1", 1, 0.70), (5, "D", "S1", 1, 9.99),
    # week 6 (test): A at S1 (plus an outlier at 10.00) and at S5, a store never seen in training
    (6, "A", "S1", 1, 1.00), (6, "A", "S1", 1, 10.00), (6, "A", "S5", 3, 4.50),
]
TRAIN_END, VALID_END = 4, 5


def _canonical_rows(lines: list[tuple[int, str, str, int, float]]) -> dict[int, pa.Table]:
    """Canonical tables per SHOP_WEEK: one basket per line, every optional column filled plausibly."""
    by_week: dict[int, list[dict]] = {}
    for n, (index, product, store, quantity, spend) in enumerate(lines):
        shop_date = MONDAY + timedelta(weeks=index - 1, days=2)
        by_week.setdefault(WEEKS[index - 1], []).append(
            {
                "SHOP_WEEK": WEEKS[index - 1], "SHOP_DATE": shop_date, "SHOP_WEEKDAY": 4, "SHOP_HOUR": 10,
                "QUANTITY": quantity, "SPEND": spend, "PROD_CODE": product, "PROD_CODE_10": "CL1",
                "PROD_CODE_20": "DEP1", "PROD_CODE_30": "G1", "PROD_CODE_40": "D1", "CUST_CODE": None,
                "BASKET_ID": f"B{n}", "BASKET_SIZE": "S", "BASKET_PRICE_SENSITIVITY": "MM",
                "BASKET_TYPE": "Top Up", "BASKET_DOMINANT_MISSION": "Fresh", "STORE_CODE": store,
                "STORE_FORMAT": STORES[store][0], "STORE_REGION": STORES[store][1], "BASKET_ID_REBUILT": False,
            }
        )
    return {week: pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA) for week, rows in by_week.items()}


def _write_dataset(root: Path, lines: list[tuple[int, str, str, int, float]]) -> Path:
    for week, table in _canonical_rows(lines).items():
        week_dir(root, week).mkdir(parents=True)
        pq.write_table(table, week_dir(root, week) / "part-f00000.parquet")
    calendar = pa.table(
        {
            "shop_week": WEEKS,
            "date_from": [MONDAY + timedelta(weeks=i) for i in range(len(WEEKS))],
            "date_to": [MONDAY + timedelta(weeks=i, days=6) for i in range(len(WEEKS))],
        },
        schema=CALENDAR_SCHEMA,
    )
    pq.write_table(calendar, root / "calendar.parquet")
    return root


def _build(ingested: Path, workdir: Path, first: int, last: int, train_end: int, valid_end: int,
           memory_limit: str = "1GB", **config: object) -> tuple[Path, dict, dict]:
    """Run the stage directly; return (the parquet's path, the summary, the returned dict)."""
    cfg = PipelineConfig(train_end=train_end, valid_end=valid_end, progress=False, memory_limit=memory_limit,
                         **config)
    weeks = WeekIndex.from_calendar(read_calendar_table(ingested), first, last, train_end, valid_end)
    out = workdir / "out"
    out.mkdir(parents=True)
    counts = build_prices(StageContext(ingested, workdir, cfg, weeks, out))
    return out / "prices_derived.parquet", json.loads((out / "prices_summary.json").read_text()), counts


def _run(*args: object, **config: object) -> tuple[pd.DataFrame, dict, dict]:
    """``_build``, with the rows read back (small data only)."""
    path, summary, counts = _build(*args, **config)
    return pd.read_parquet(path), summary, counts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict, dict]:
    root = tmp_path_factory.mktemp("tiny")
    ingested = _write_dataset(root / "ingested", TINY_LINES)
    return _run(ingested, root / "work", WEEKS[0], WEEKS[-1], TRAIN_END, VALID_END)


def _series(rows: pd.DataFrame, product: str, store: str) -> pd.DataFrame:
    return rows[(rows.PROD_CODE == product) & (rows.STORE_CODE == store)].set_index("week_index")


def test_stage_declares_both_outputs() -> None:
    assert PRICES.name == "prices" and PRICES.section == "processed"
    assert PRICES.outputs == ("prices_derived.parquet", "prices_summary.json")


def test_one_row_per_training_pair_and_week_of_the_index(tiny) -> None:
    rows, summary, counts = tiny
    pairs = {("A", "S1"), ("A", "S2"), ("A", "S3"), ("A", "S4"), ("B", "S1"), ("B", "S2"), ("C", "S1")}
    assert set(zip(rows.PROD_CODE, rows.STORE_CODE)) == pairs  # not D nor (A, S5): first sold after training
    assert len(rows) == len(pairs) * 6 == counts["prices_derived.parquet"] == summary["rows"]
    assert rows.groupby(["PROD_CODE", "STORE_CODE"]).week_index.apply(list).map(lambda w: w == [1, 2, 3, 4, 5, 6]).all()
    assert list(rows.columns) == [
        "PROD_CODE", "STORE_CODE", "SHOP_WEEK", "week_index", "split", "actual_price", "units", "base_price",
        "discount_depth", "promo_flag", "discount_bin", "price_source",
    ]
    assert rows.actual_price.notna().all()
    a1 = _series(rows, "A", "S1")
    assert list(a1.SHOP_WEEK) == WEEKS
    assert list(a1.split) == ["train"] * 4 + ["validation", "test"]
    # sorted by product, store, week
    assert list(rows.itertuples(index=False, name=None)) == list(
        rows.sort_values(["PROD_CODE", "STORE_CODE", "week_index"]).itertuples(index=False, name=None)
    )


def test_waterfall_picks_each_source_in_order(tiny) -> None:
    rows, _, _ = tiny
    a1, a2, a3, a4 = (_series(rows, "A", s) for s in ("S1", "S2", "S3", "S4"))
    # week 1: everyone observed; S2's penny line dropped (A's training median 1.20 -> bounds [0.40, 3.60])
    assert [a1.actual_price[1], a2.actual_price[1], a3.actual_price[1], a4.actual_price[1]] == [1.0, 1.2, 1.4, 2.0]
    assert a2.price_source[1] == "observed"
    # week 2: S2 observed 2.20/2 = 1.10; S3 median of 1.40, 1.60; S1 shares S2's format and region;
    # S4 (LS, R2) has no observed neighbour -> median over all stores of [1.10, 1.50]
    assert a2.actual_price[2] == pytest.approx(1.10) and a3.actual_price[2] == pytest.approx(1.50)
    assert (a1.price_source[2], a1.actual_price[2]) == ("format_region", pytest.approx(1.10))
    assert (a4.price_source[2], a4.actual_price[2]) == ("global_week", pytest.approx(1.30))
    # weeks 3 (A unsold) and 4 (no data): each pair carries its own week-2 price
    for series, price in ((a1, 1.10), (a2, 1.10), (a3, 1.50), (a4, 1.30)):
        assert list(series.price_source[[3, 4]]) == ["forward_fill"] * 2
        assert list(series.actual_price[[3, 4]]) == [pytest.approx(price)] * 2
    # week 5: only S1 sells; week 6: S1 (outlier 10.00 dropped) and S5 (1.50), a store unseen in training
    assert (a1.price_source[5], a2.price_source[5], a4.price_source[5]) == ("observed", "format_region", "global_week")
    assert a1.actual_price[6] == 1.0 and a2.actual_price[6] == pytest.approx(1.25)
    assert (a3.price_source[6], a3.actual_price[6]) == ("global_week", pytest.approx(1.25))


def test_forward_fill_never_uses_a_later_week(tiny) -> None:
    b1 = _series(tiny[0], "B", "S1")
    # B is first sold in week 3 at 2.00; before, the product's training median (2.00 and 3.00 -> 2.50)
    assert list(b1.price_source) == ["product_median"] * 2 + ["observed", "forward_fill", "forward_fill", "forward_fill"]
    assert list(b1.actual_price) == [2.5, 2.5, 2.0, 2.0, 2.0, 2.0]


def test_units_count_every_line_and_zero_without_sale(tiny) -> None:
    rows, _, _ = tiny
    a1, a2 = _series(rows, "A", "S1"), _series(rows, "A", "S2")
    assert list(a2.units) == [2, 2, 0, 0, 0, 0]  # the outlier line is a bad price, still a sale
    assert list(a1.units) == [1, 0, 0, 0, 1, 2]


def test_base_price_is_a_causal_rolling_max_and_bins(tiny) -> None:
    rows, _, _ = tiny
    a1, a4, c1 = _series(rows, "A", "S1"), _series(rows, "A", "S4"), _series(rows, "C", "S1")
    # A at S1: 1.00, 1.10, 1.10, 1.10, 0.80, 1.00 -> week 1's base ignores the later 1.10
    assert list(a1.base_price) == [1.0, pytest.approx(1.1), pytest.approx(1.1), pytest.approx(1.1),
                                   pytest.approx(1.1), pytest.approx(1.1)]
    assert a1.discount_depth[5] == pytest.approx(1 - 0.8 / 1.1, abs=1e-6)
    assert list(a1.discount_bin) == ["none"] * 4 + ["medium", "shallow"]
    assert list(a1.promo_flag) == [False] * 4 + [True, True]
    # A at S4: 2.00 then 1.30 for three weeks (deep), and the 2.00 leaves the 4-week window in week 5
    assert list(a4.discount_bin[:5]) == ["none", "deep", "deep", "deep", "deep"]
    assert a4.base_price[5] == pytest.approx(1.3)
    # C: 1.00, 0.95 (exactly 5%: not a promotion), 0.85 (exactly 15%: shallow), fill, 0.70 vs base 0.95
    assert list(c1.discount_depth[:4]) == [0.0, 0.05, 0.15, 0.15]
    assert list(c1.discount_bin[:5]) == ["none", "none", "shallow", "shallow", "medium"]
    assert list(c1.promo_flag[:3]) == [False, False, True]
    assert c1.base_price[5] == pytest.approx(0.95)
    assert (rows.discount_depth >= 0).all() and (rows.base_price >= rows.actual_price).all()


def test_window_of_one_week_means_no_discounts(tmp_path: Path) -> None:
    ingested = _write_dataset(tmp_path / "ingested", TINY_LINES)
    rows, _, _ = _run(ingested, tmp_path / "work", WEEKS[0], WEEKS[-1], TRAIN_END, VALID_END, base_price_window=1)
    assert (rows.base_price == rows.actual_price).all() and not rows.promo_flag.any()


def test_summary_counts_outliers_and_sources(tiny) -> None:
    _, summary, counts = tiny
    assert counts == {"prices_derived.parquet": 42}
    assert summary["outlier_lines_dropped"] == 2 and summary["outlier_lines_dropped_train"] == 1
    assert sum(summary["price_source_rows"].values()) == 42
    assert summary["price_source_rows"]["product_median"] == 4  # B at S1 and S2 before week 3
    assert (summary["pairs"], summary["products"], summary["stores"], summary["weeks"]) == (7, 3, 4, 6)


def test_training_rows_do_not_depend_on_later_weeks(tmp_path: Path, tiny) -> None:
    truncated = _write_dataset(tmp_path / "ingested", [line for line in TINY_LINES if line[0] <= TRAIN_END])
    rows, _, _ = _run(truncated, tmp_path / "work", WEEKS[0], WEEKS[TRAIN_END - 1], TRAIN_END, VALID_END)
    full = tiny[0]
    pd.testing.assert_frame_equal(rows, full[full.week_index <= TRAIN_END].reset_index(drop=True))


def test_weighted_median_equals_duckdb_median() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE v AS SELECT i % 7 AS k, (hash(i) % 50) / 10 AS x FROM range(2001) t(i) WHERE i % 11 <> 3"
    )
    counted = "SELECT k, x, count(*) AS n FROM v GROUP BY ALL"
    ours = con.execute(f"SELECT * FROM ({weighted_median_sql(counted, 'k', 'x', 'n', 'm')}) ORDER BY k").fetchall()
    theirs = con.execute("SELECT k, median(x) FROM v GROUP BY k ORDER BY k").fetchall()
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    assert [m for _, m in ours] == pytest.approx([m for _, m in theirs])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("market")
    generate_market(MarketConfig(customers=80, products=40, stores=3, weeks=10, seed=1), root / "raw", progress=False)
    report = ingest(root / "raw", root / "ingested", IngestConfig(progress=False, workers=1))
    return root / "raw", root / "ingested", report


def test_generated_market_promotions_are_found(generated, tmp_path: Path) -> None:
    raw, ingested, report = generated
    rows, _, _ = _run(ingested, tmp_path / "work", report["first_week"], report["last_week"], 6, 8)
    stores = duckdb.connect().execute(
        f"SELECT DISTINCT STORE_CODE, STORE_REGION FROM read_parquet('{ingested}/transactions/*/*.parquet')"
    ).df()
    truth = pd.read_parquet(raw / "ground_truth" / "promotions.parquet").merge(stores, on="STORE_REGION")
    observed = rows[(rows.price_source == "observed") & (rows.week_index > 1)].merge(
        truth, on=["SHOP_WEEK", "STORE_CODE", "PROD_CODE"], how="left"
    )
    on_promo = observed.promo_depth.fillna(0) > 0
    assert on_promo.sum() >= 10
    # regular price cuts also read as discounts for a few weeks, so not perfect, but close
    assert (observed.promo_flag & on_promo).sum() / on_promo.sum() > 0.8
    assert (observed.promo_flag & on_promo).sum() / observed.promo_flag.sum() > 0.8
    assert observed[observed.promo_flag & on_promo].pipe(
        lambda d: (d.discount_depth - d.promo_depth).abs().median()
    ) < 0.02


def test_generated_market_training_rows_survive_truncation(generated, tmp_path: Path) -> None:
    _, ingested, report = generated
    weeks = WeekIndex.from_calendar(read_calendar_table(ingested), report["first_week"], report["last_week"], 6, 8)
    truncated = tmp_path / "truncated"
    (truncated / "transactions").mkdir(parents=True)
    shutil.copy(ingested / "calendar.parquet", truncated)
    for week in weeks.shop_weeks[:6]:
        shutil.copytree(week_dir(ingested, week), week_dir(truncated, week))
    full, _, _ = _run(ingested, tmp_path / "full", report["first_week"], report["last_week"], 6, 8)
    cut, _, _ = _run(truncated, tmp_path / "cut", report["first_week"], weeks.last_train_shop_week, 6, 8)
    pd.testing.assert_frame_equal(cut, full[full.week_index <= 6].reset_index(drop=True))


def test_real_sample(real_sample: Path, tmp_path: Path) -> None:
    report = ingest(real_sample, tmp_path / "ingested", IngestConfig(progress=False))
    started = time.perf_counter()
    path, summary, counts = _build(tmp_path / "ingested", tmp_path / "work", report["first_week"],
                                   report["last_week"], 80, 95, memory_limit="4GB")
    seconds = time.perf_counter() - started
    print(f"prices on the real sample: {counts} in {seconds:.1f} s; {summary}")
    (rows, missing, negative, promo_not_bin), = duckdb.connect().execute(
        f"""SELECT count(*), count(*) - count(actual_price), count(*) FILTER (WHERE actual_price < 0),
                   count(*) FILTER (WHERE promo_flag <> (discount_bin <> 'none'))
            FROM '{path}'"""
    ).fetchall()
    assert rows == counts["prices_derived.parquet"] == summary["pairs"] * summary["weeks"]
    assert missing == negative == promo_not_bin == 0
    assert summary["price_source_rows"]["observed"] == sum(summary["observed_rows_by_split"].values())
    assert 0.01 < summary["observed_promo_share_by_split"]["train"] < 0.15
