"""Tests of the synthetic market: layout, determinism, calendar, truth, defects and the price response."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from world_model.data.schema import Reason, layout_columns
from world_model.errors import RetailSimError
from world_model.data.synthetic import MarketConfig, SyntheticMarket, generate_market
from world_model.data.synthetic.catalog import hierarchy_counts
from world_model.data.synthetic.writer import format_spend

TINY = MarketConfig(customers=50, products=60, stores=3, weeks=4)
SMALL = MarketConfig(customers=300, products=80, stores=4, weeks=3, seed=3)
SEG = list(layout_columns("seg"))


@pytest.fixture(scope="module")
def tiny_market_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "market"
    summary = generate_market(TINY, out, progress=False)
    assert summary["files"] == TINY.weeks and summary["rows"] > 0
    return out


@pytest.fixture(scope="module")
def dirty_csv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty") / "market"
    generate_market(SMALL, out, dirty_rate=0.15, progress=False)
    return out


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def calendar_spans(out: Path) -> dict[str, tuple[date, date]]:
    _, rows = read_rows(out / "time.csv")
    parse = lambda s: datetime.strptime(s, "%Y%m%d").date()  # noqa: E731
    return {w: (parse(a), parse(b)) for w, a, b in rows}


# ----------------------------------------------------------------------------------- calendar


def test_calendar_rolls_over_after_week_52() -> None:
    market = SyntheticMarket(dataclasses.replace(TINY, start_week=200650, start_date=date(2007, 2, 5)))
    weeks = market.calendar()
    assert [w.shop_week for w in weeks] == [200650, 200651, 200652, 200701]
    for w in weeks:
        assert w.date_from.weekday() == 0 and w.date_to - w.date_from == timedelta(days=6)
    assert weeks[3].date_from == date(2007, 2, 26)


def test_time_csv(tiny_market_dir: Path) -> None:
    text = (tiny_market_dir / "time.csv").read_text().splitlines()
    assert text[0] == "shop_week,date_from,date_to"
    assert text[1] == "200607,20060410,20060416"
    assert text[4] == "200610,20060501,20060507"


# ----------------------------------------------------------------------------------- catalog


def test_default_hierarchy_counts() -> None:
    assert hierarchy_counts(MarketConfig()) == (9, 31, 90, 250)
    d, g, dep, cl = hierarchy_counts(TINY)
    assert 1 <= d <= g <= dep <= cl <= TINY.products


def test_catalog_is_a_tree_with_lgsr_codes() -> None:
    market = SyntheticMarket(TINY)
    cat = market.catalog
    assert all(re.fullmatch(r"PRD09\d{5}", c) for c in cat.prod_code)
    assert len(set(cat.prod_code)) == TINY.products
    assert all(re.fullmatch(r"CL\d{5}", c) for c in cat.class_code)
    assert all(re.fullmatch(r"DEP\d{5}", c) for c in cat.dept_code)
    assert all(re.fullmatch(r"G\d{5}", c) for c in cat.group_code)
    assert all(re.fullmatch(r"D\d{5}", c) for c in cat.division_code)
    # every level is used and every parent has a child
    assert set(cat.product_class) == set(range(len(cat.class_code)))
    assert set(cat.class_dept) == set(range(len(cat.dept_code)))
    assert set(cat.dept_group) == set(range(len(cat.group_code)))
    assert np.all((cat.dept_elasticity >= -3) & (cat.dept_elasticity <= -1))
    assert np.all(cat.unit_cost < cat.base_price) and np.all(cat.base_price > 0)
    assert np.all(cat.promo_lift > 1)


# ----------------------------------------------------------------------------------- files


def test_layout_types_and_consistency(tiny_market_dir: Path) -> None:
    spans = calendar_spans(tiny_market_dir)
    files = sorted(tiny_market_dir.glob("transactions_*.csv"))
    assert [f.stem.split("_")[1] for f in files] == sorted(spans)
    basket_ids: set[str] = set()
    for f in files:
        header, rows = read_rows(f)
        assert header == SEG
        week = f.stem.split("_")[1]
        ids = set()
        for r in rows:
            assert len(r) == len(SEG)
            v = dict(zip(SEG, r))
            assert v["SHOP_WEEK"] == week
            d = datetime.strptime(v["SHOP_DATE"], "%Y%m%d").date()
            assert spans[week][0] <= d <= spans[week][1]
            assert int(v["SHOP_WEEKDAY"]) == (d.weekday() + 1) % 7 + 1  # 1 = Sunday
            assert 8 <= int(v["SHOP_HOUR"]) <= 21
            assert int(v["QUANTITY"]) >= 1 and float(v["SPEND"]) > 0
            assert re.fullmatch(r"\d{15}", v["BASKET_ID"])
            assert v["BASKET_SIZE"] in {"S", "M", "L"}
            assert v["BASKET_TYPE"] in {"Top Up", "Small Shop", "Full Shop", "XX"}
            assert v["BASKET_DOMINANT_MISSION"] in {"Fresh", "Grocery", "Nonfood", "Mixed", "XX"}
            assert v["BASKET_PRICE_SENSITIVITY"] in {"LA", "MM", "UM", "XX"}
            assert v["STORE_FORMAT"] in {"LS", "MS", "SS", "XLS"}
            assert re.fullmatch(r"[ENSW]0[123]", v["STORE_REGION"])
            if v["CUST_CODE"] == "":
                assert v["seg_1"] == "" and v["seg_2"] == ""
            else:
                assert re.fullmatch(r"CUST\d{10}", v["CUST_CODE"]) and v["seg_1"] in {"CT", "BG", "AZ", "DY"}
            ids.add(v["BASKET_ID"])
        assert not ids & basket_ids  # unique across weeks
        basket_ids |= ids


def test_empty_values_are_quoted_like_lgsr(tiny_market_dir: Path) -> None:
    text = next(tiny_market_dir.glob("transactions_*.csv")).read_text()
    assert ',"",' in text and '"PRD' not in text


def test_generation_is_deterministic(tiny_market_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_market(TINY, again, progress=False)
    files = sorted(p.relative_to(tiny_market_dir) for p in tiny_market_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (tiny_market_dir / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    generate_market(dataclasses.replace(TINY, seed=1), other, progress=False)
    first = sorted(tiny_market_dir.glob("transactions_*.csv"))[0].name
    assert (other / first).read_bytes() != (tiny_market_dir / first).read_bytes()


def test_weeks_are_independent_of_the_number_of_weeks(tiny_market_dir: Path, tmp_path: Path) -> None:
    shorter = tmp_path / "short"
    generate_market(dataclasses.replace(TINY, weeks=2), shorter, progress=False)
    for f in sorted(shorter.glob("transactions_*.csv")):
        assert f.read_bytes() == (tiny_market_dir / f.name).read_bytes()


def test_existing_output_needs_overwrite(tiny_market_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RetailSimError, match="--overwrite"):
        generate_market(TINY, tiny_market_dir, progress=False)
    out = tmp_path / "m"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    generate_market(dataclasses.replace(TINY, weeks=1), out, progress=False, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "transactions_200607.csv").exists()
    assert not list(tmp_path.glob(".m.*"))  # no temporary directory left behind


def test_ground_truth(tiny_market_dir: Path) -> None:
    gt = tiny_market_dir / "ground_truth"
    for name in ("products", "categories", "stores", "customers", "weeks", "seasonality", "price_changes",
                 "promotions", "defects"):
        assert (gt / f"{name}.parquet").exists(), name
    config = MarketConfig.from_dict(json.loads((gt / "config.json").read_text()))
    assert config == TINY
    defects = json.loads((gt / "defects.json").read_text())
    assert set(defects["total"]) == set(Reason.ALL) and sum(defects["total"].values()) == 0
    products = pq.read_table(gt / "products.parquet").to_pandas()
    categories = pq.read_table(gt / "categories.parquet").to_pandas()
    assert len(products) == TINY.products
    assert categories["elasticity"].between(-3, -1).all()
    merged = products.merge(categories, on="PROD_CODE_20", suffixes=("", "_cat"))
    assert np.allclose(merged["elasticity"], merged["elasticity_cat"])
    assert ((products["unit_cost"] / products["base_price"]).between(0.6, 0.8)).all()
    stores = pq.read_table(gt / "stores.parquet").to_pandas()
    assert stores["price_index"].between(0.95, 1.05).all() and len(stores) == TINY.stores
    customers = pq.read_table(gt / "customers.parquet").to_pandas()
    assert customers["anonymous"].sum() == TINY.hidden_customers
    assert customers.loc[customers["anonymous"], "CUST_CODE"].isna().all()
    promotions = pq.read_table(gt / "promotions.parquet").to_pandas()
    assert promotions["promo_depth"].between(*TINY.promo_depth_range).all()


def test_promotion_schedule_matches_written_spend(tiny_market_dir: Path) -> None:
    """SPEND = QUANTITY x the scheduled shelf price of the store, product and week."""
    market = SyntheticMarket(TINY)
    week = 2
    price, _ = market.scheduled_prices(week)
    store_idx = {c: i for i, c in enumerate(market.stores.code)}
    prod_idx = {c: i for i, c in enumerate(market.catalog.prod_code)}
    _, rows = read_rows(tiny_market_dir / f"transactions_{market.calendar_week(week).shop_week}.csv")
    for r in rows:
        v = dict(zip(SEG, r))
        shelf = price[store_idx[v["STORE_CODE"]], prod_idx[v["PROD_CODE"]]]
        assert float(v["SPEND"]) == pytest.approx(round(int(v["QUANTITY"]) * shelf, 2), abs=1e-9)


def test_spend_format() -> None:
    assert format_spend(np.array([130, 200, 93, 5, 1234567, -250])).to_pylist() == [
        "1.3", "2.0", "0.93", "0.05", "12345.67", "-2.5"
    ]


# ----------------------------------------------------------------------------------- defects


def reference_reason(fields: list[str], span: tuple[date, date], seen: set[tuple[str, ...]]) -> str | None:
    """The ingest rules of schema.Reason, first failing check wins (a test-side reference)."""
    if len(fields) != len(SEG):
        return Reason.MALFORMED_LINE
    v = dict(zip(SEG, fields))
    ints = ("SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "QUANTITY")
    if not all(re.fullmatch(r"-?\d+", v[c]) for c in ints):
        return Reason.UNPARSEABLE_NUMBER
    try:
        float(v["SPEND"])
    except ValueError:
        return Reason.UNPARSEABLE_NUMBER
    try:
        d = datetime.strptime(v["SHOP_DATE"], "%Y%m%d").date()
    except ValueError:
        return Reason.INVALID_DATE
    for column, reason in (("PROD_CODE", Reason.MISSING_PROD_CODE), ("STORE_CODE", Reason.MISSING_STORE_CODE),
                           ("BASKET_ID", Reason.MISSING_BASKET_ID)):
        if v[column] == "":
            return reason
    if int(v["QUANTITY"]) <= 0:
        return Reason.NONPOSITIVE_QUANTITY
    if float(v["SPEND"]) < 0:
        return Reason.NEGATIVE_SPEND
    if not 0 <= int(v["SHOP_HOUR"]) <= 23:
        return Reason.HOUR_OUT_OF_RANGE
    if int(v["SHOP_WEEKDAY"]) != (d.weekday() + 1) % 7 + 1:
        return Reason.WEEKDAY_MISMATCH
    if not span[0] <= d <= span[1]:
        return Reason.DATE_OUTSIDE_WEEK
    key = tuple(fields)
    if key in seen:
        return Reason.DUPLICATE_LINE
    seen.add(key)
    return None


def test_dirty_csv_defects_trip_exactly_their_reason(dirty_csv_dir: Path) -> None:
    spans = calendar_spans(dirty_csv_dir)
    gt = dirty_csv_dir / "ground_truth"
    recorded = json.loads((gt / "defects.json").read_text())
    positions = pq.read_table(gt / "defects.parquet").to_pandas()
    found: dict[str, int] = dict.fromkeys(Reason.ALL, 0)
    for f in sorted(dirty_csv_dir.glob("transactions_*.csv")):
        week = f.stem.split("_")[1]
        header, rows = read_rows(f)
        assert header == SEG
        seen: set[tuple[str, ...]] = set()
        reasons = [reference_reason(r, spans[week], seen) for r in rows]
        expected = {int(p.row): p.reason for p in positions[positions.SHOP_WEEK == int(week)].itertuples()}
        assert {i: r for i, r in enumerate(reasons) if r is not None} == expected
        for p in positions[(positions.SHOP_WEEK == int(week)) & (positions.reason == Reason.DUPLICATE_LINE)].itertuples():
            assert p.source_row < p.row and rows[p.source_row] == rows[p.row]
            assert reasons[p.source_row] is None  # only clean rows are duplicated
        for reason in reasons:
            if reason is not None:
                found[reason] += 1
        assert recorded["by_week"][week] == {r: sum(1 for x in reasons if x == r) for r in Reason.ALL}
    assert found == recorded["total"]
    assert all(n > 0 for n in found.values()), found  # every reason is exercised


def test_malformed_lines_have_the_wrong_field_count(dirty_csv_dir: Path) -> None:
    positions = pq.read_table(dirty_csv_dir / "ground_truth" / "defects.parquet").to_pandas()
    bad = positions[positions.reason == Reason.MALFORMED_LINE]
    week = int(bad.SHOP_WEEK.iloc[0])
    _, rows = read_rows(dirty_csv_dir / f"transactions_{week}.csv")
    counts = {len(rows[r]) for r in bad[bad.SHOP_WEEK == week].row}
    assert counts <= {len(SEG) - 1, len(SEG) + 1}


def test_dirty_parquet(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    summary = generate_market(dataclasses.replace(SMALL, weeks=2), out, fmt="parquet", dirty_rate=0.2, progress=False)
    assert summary["defects"][Reason.MALFORMED_LINE] == 0
    spans = calendar_spans(out)
    found: dict[str, int] = dict.fromkeys(Reason.ALL, 0)
    for f in sorted(out.glob("transactions_*.parquet")):
        table = pq.read_table(f)
        assert table.column_names == SEG
        assert all(pa.types.is_string(t) for t in table.schema.types)
        seen: set[tuple[str, ...]] = set()
        for row in zip(*(table.column(c).to_pylist() for c in SEG)):
            reason = reference_reason(list(row), spans[f.stem.split("_")[1]], seen)
            if reason is not None:
                found[reason] += 1
    assert found == summary["defects"]
    assert sum(found.values()) > 0


# ----------------------------------------------------------------------------------- the model


def test_simulate_week_table_is_typed() -> None:
    market = SyntheticMarket(TINY)
    price, depth = market.scheduled_prices(0)
    table = market.simulate_week(0, price, depth, np.random.default_rng(0))
    assert table.column_names == SEG
    assert pa.types.is_integer(table.schema.field("QUANTITY").type)
    assert pa.types.is_integer(table.schema.field("SHOP_DATE").type)
    assert pa.types.is_floating(table.schema.field("SPEND").type)
    assert pa.types.is_string(table.schema.field("PROD_CODE").type)
    anonymous = table.column("CUST_CODE").is_null().to_numpy(zero_copy_only=False)
    assert 0 < anonymous.mean() < 1
    sizes = table.group_by("BASKET_ID").aggregate([("PROD_CODE", "count"), ("BASKET_SIZE", "min"),
                                                   ("BASKET_TYPE", "min")]).to_pylist()
    for b in sizes:
        n, size = b["PROD_CODE_count"], b["BASKET_SIZE_min"]
        if b["BASKET_TYPE_min"] == "Full Shop":
            assert size == "L"
        else:
            assert size == ("S" if n <= 2 else "M" if n <= 6 else "L")


def test_expected_units_match_the_mean_of_simulations() -> None:
    market = SyntheticMarket(SMALL)
    price, depth = market.scheduled_prices(1)
    expected = market.expected_units(1, price, depth)
    n_sims = 150
    total = np.zeros_like(expected)
    rng = np.random.default_rng(11)
    for _ in range(n_sims):
        total += market.simulate_week_lines(1, price, depth, rng).units(market.n_stores, market.n_products)
    mean = total / n_sims
    assert mean.sum() == pytest.approx(expected.sum(), rel=0.02)
    per_store = mean.sum(axis=1) / expected.sum(axis=1)
    assert np.allclose(per_store, 1.0, atol=0.05)
    top = np.argsort(expected.sum(axis=0))[-20:]
    assert np.allclose(mean.sum(axis=0)[top], expected.sum(axis=0)[top], rtol=0.15)
    assert np.corrcoef(mean.ravel(), expected.ravel())[0, 1] > 0.97


@pytest.mark.parametrize("field, value, message", [
    ("home_store_share", 1.2, r"home_store_share must be in \[0, 1\], got 1.2"),  # was: every store probability NaN
    ("elasticity_range", (1.0, 3.0), r"elasticity_range must satisfy lo <= hi <= 0"),  # was: demand rising with price
    ("multipack_share", 1.0, r"multipack_share must be in \[0, 1\), got 1.0"),  # was: ZeroDivisionError
    ("christmas_share", 2.0, r"christmas_share must be in \[0, 1\]"),
    ("visit_rate", -1.0, r"visit_rate must be >= 0"),
    ("visit_rate_shape", 0.0, r"visit_rate_shape must be > 0"),
    ("store_slots", 0, r"store_slots must be >= 1"),
    ("tier_shares", (-1.0, 1.0, 1.0), r"tier_shares must be 3 values >= 0"),
    ("mission_items", (7.0, -1.0, 16.0), r"mission_items must be 3 values >= 0"),
    ("store_price_index_range", (1.05, 0.95), r"store_price_index_range must satisfy 0 < lo <= hi"),
    ("seasonal_amplitude", 1.0, r"seasonal_amplitude must be in \[0, 1\)"),
])  # fmt: skip
def test_a_config_the_market_cannot_be_built_from_is_refused_naming_the_field(field, value, message) -> None:
    with pytest.raises(ValueError, match=rf"^MarketConfig\.{message}"):
        dataclasses.replace(TINY, **{field: value})


def test_elasticity_of_expected_units_is_the_configured_one() -> None:
    """Without store switching (eta = 0) the own-price elasticity of expected units is exact."""
    market = SyntheticMarket(dataclasses.replace(SMALL, store_price_sensitivity=0.0))
    price, depth = market.scheduled_prices(0)
    depth = np.zeros_like(depth)
    base = market.expected_units(0, price, depth)
    raised = market.expected_units(0, price * 1.1, depth)
    assert np.allclose(raised / base, 1.1 ** market.catalog.elasticity[None, :], rtol=1e-9)
    promo = np.full_like(depth, 0.2)
    lifted = market.expected_units(0, price, promo)
    assert np.allclose(lifted / base, market.catalog.promo_lift[None, :], rtol=1e-9)


def test_store_choice_responds_to_store_prices() -> None:
    market = SyntheticMarket(SMALL)
    price, depth = market.scheduled_prices(0)
    dearer = price.copy()
    dearer[0] *= 1.1
    base = market.expected_units(0, price, depth)
    after = market.expected_units(0, dearer, depth)
    # store 0 loses more than its own-price effect; the other stores gain visits
    own_effect = (1.1 ** market.catalog.elasticity * base[0]).sum()
    assert after[0].sum() < own_effect
    assert after[1:].sum() > base[1:].sum()


def test_simulated_units_move_with_price_and_promotion() -> None:
    market = SyntheticMarket(SMALL)
    price, depth = market.scheduled_prices(0)
    no_promo = np.zeros_like(depth)

    def mean_units(p: np.ndarray, d: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.mean([market.simulate_week_lines(0, p, d, rng).units(market.n_stores, market.n_products)
                        for _ in range(40)], axis=0).sum(axis=0)

    base = mean_units(price, no_promo, 1)
    dearer = mean_units(price * 1.3, no_promo, 2)
    promoted = mean_units(price, np.full_like(depth, 0.25), 3)
    assert dearer.sum() < 0.8 * base.sum()  # elasticities <= -1: a 30% rise costs > 23% of units
    assert promoted.sum() > 1.15 * base.sum()  # lifts >= 1.2


def test_anonymous_share_is_near_config() -> None:
    config = dataclasses.replace(SMALL, customers=800, weeks=1, anonymous_share=0.3)
    market = SyntheticMarket(config)
    price, depth = market.scheduled_prices(0)
    shares = []
    for seed in range(4):
        lines = market.simulate_week_lines(0, price, depth, np.random.default_rng(seed))
        shares.append(np.mean(lines.basket_customer >= market.population.n_named))
    assert np.mean(shares) == pytest.approx(0.3, abs=0.06)


def test_simulated_units_at_a_few_cells_follow_the_whole_week_law() -> None:
    """``simulate_units`` (the oracle environment's draw) has the whole week's mean and overdispersion at
    its cells, and visit counts with the store-choice mean; a lift exponent of 0 removes the lift."""
    market = SyntheticMarket(SMALL)
    price, _ = market.scheduled_prices(1)
    depth = np.where(np.arange(market.n_products) % 3 == 0, 0.2, 0.0)[None, :].repeat(market.n_stores, 0)
    stores = np.array([2, 0])
    expected = market.expected_units(1, price, depth)
    products = np.argsort(expected[stores].sum(0))[-6:]
    cells = np.ix_(stores, products)
    rng = np.random.default_rng(5)
    whole = np.array([market.simulate_week_lines(1, price, depth, rng).units(market.n_stores, market.n_products)[cells]
                      for _ in range(300)])  # fmt: skip
    draws = [market.simulate_units(1, price, depth, stores, products, rng) for _ in range(1200)]
    units, visits = np.array([u for u, _ in draws]), np.array([v for _, v in draws])
    standard_error = np.sqrt(units.var(0) / len(units) + whole.var(0) / len(whole))
    assert np.all(np.abs(units.mean(0) - whole.mean(0)) < 4 * standard_error)
    assert np.all(np.abs(units.mean(0) - expected[cells]) < 4 * np.sqrt(units.var(0) / len(units)))
    dispersion, whole_dispersion = units.var(0) / units.mean(0), whole.var(0) / whole.mean(0)
    assert dispersion.max() > 1.5  # not Poisson
    assert np.allclose(dispersion, whole_dispersion, rtol=0.3)
    choice = market.store_choice_probs(price)
    pop = market.population
    expected_visits = [(pop.visit_rate * market.traffic(1) * (choice * (pop.store_slots == s)).sum(1)).sum() for s in stores]
    assert np.allclose(visits.mean(0), expected_visits, rtol=0.03)
    no_lift = np.mean([market.simulate_units(1, price, depth, stores, products, rng, lift_exponent=0.0)[0] for _ in range(1200)], 0)
    plain = market.expected_units(1, price, np.zeros_like(depth))[cells]  # the same paid price, no promotion
    assert np.all(np.abs(no_lift - plain) < 4 * np.sqrt(units.var(0) / len(units)))
    assert (depth[cells] > 0).any() and not np.allclose(no_lift, units.mean(0), rtol=0.1)
