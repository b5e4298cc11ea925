"""features/: price feature statistics, raw price inputs and the 64-d encoder, on the small market."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.world_model.pipeline.conftest import SPLIT, truncate_ingested
from world_model.data.duckdb_util import fetch_arrow, sql_string
from world_model.errors import RetailSimError
from world_model.pipeline.price_features import (
    FOURIER_DIM,
    LOG_PRICE_DIM,
    NORMALIZERS_FILE,
    PRICE_FEATURE_DIM,
    PRICE_FEATURE_NAMES,
    PRICE_FEATURES,
    RAW_PRICE_COLUMNS,
    RELATIVE_PRICE_DIM,
    STATS_FILE,
    VELOCITY_DIM,
    PriceFeatureEncoder,
    price_inputs_sql,
)
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES

STAGES = ALL_STAGES + [PRICE_FEATURES]


def _build(ingested: Path, workdir: Path) -> dict:
    return run_pipeline(ingested, workdir, STAGES, SPLIT, only=["price_features"])


@pytest.fixture(scope="module")
def built(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("price-features-work")
    return workdir, _build(ingested_market, workdir)


@pytest.fixture(scope="module")
def workdir(built: tuple[Path, dict]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def prices(workdir: Path) -> pd.DataFrame:
    return pd.read_parquet(workdir / "processed" / "prices_derived.parquet").astype(
        {"PROD_CODE": str, "STORE_CODE": str, "split": str, "price_source": str, "discount_bin": str}
    )


@pytest.fixture(scope="module")
def encoder(workdir: Path) -> PriceFeatureEncoder:
    return PriceFeatureEncoder.load(workdir / "features")


def _col(name: str) -> int:
    return PRICE_FEATURE_NAMES.index(name)


def _raw_inputs(workdir: Path, keys: pd.DataFrame, where: str = "true") -> pd.DataFrame:
    con = duckdb.connect()
    con.register("keys", keys)
    prices = f"(SELECT * FROM read_parquet({sql_string(workdir / 'processed' / 'prices_derived.parquet')}) WHERE {where})"
    out = fetch_arrow(con, f"SELECT * FROM ({price_inputs_sql('keys', prices)}) ORDER BY item").to_pandas()
    con.close()
    return out


def _index_rows(encoder: PriceFeatureEncoder, codes: pd.Series) -> np.ndarray:
    lookup = dict(zip(encoder.stats["PROD_CODE"], encoder.stats["row"]))
    return np.array([lookup.get(c, -1) for c in codes], dtype=np.int64)


def test_outputs_layout_and_registration(built: tuple[Path, dict]) -> None:
    workdir, report = built
    assert {"prices", "product_graph", "pseudo_brands", "product_embeddings", "price_features"} <= set(report["stages"])
    assert PRICE_FEATURE_DIM == FOURIER_DIM + LOG_PRICE_DIM + RELATIVE_PRICE_DIM + VELOCITY_DIM == 64
    stats = pd.read_parquet(workdir / "features" / STATS_FILE)
    index = pd.read_parquet(workdir / "features" / "product_embedding_index.parquet")
    assert stats["PROD_CODE"].tolist() == index["PROD_CODE"].tolist()
    assert stats["row"].tolist() == list(range(len(index)))
    assert not stats.drop(columns="PROD_CODE_20").isna().any().any()
    norm = json.loads((workdir / "features" / NORMALIZERS_FILE).read_text())
    assert [c["name"] for c in norm["columns"]] == list(PRICE_FEATURE_NAMES) and len(PRICE_FEATURE_NAMES) == 64
    assert [(b["name"], b["stop"] - b["start"]) for b in norm["blocks"]] == [
        ("fourier", 24), ("log_price", 16), ("relative_price", 16), ("velocity", 8)
    ]
    assert [b["start"] for b in norm["blocks"]] == [0, 24, 40, 56]
    assert all(c["name"].startswith(c["block"] + "__") for c in norm["columns"])
    assert len(norm["log_price_bin_edges"]) == 11 and np.all(np.diff(norm["log_price_bin_edges"]) >= 0)
    assert norm["promo_threshold"] == SPLIT.promo_threshold and norm["raw_columns"] == list(RAW_PRICE_COLUMNS)


def test_fitted_statistics_match_plain_python(workdir: Path, prices: pd.DataFrame) -> None:
    stats = pd.read_parquet(workdir / "features" / STATS_FILE).set_index("PROD_CODE")
    norm = json.loads((workdir / "features" / NORMALIZERS_FILE).read_text())
    train = prices[prices.split == "train"].assign(lp=lambda d: np.log(d.actual_price), lu=lambda d: np.log1p(d.units))
    observed = train[train.price_source == "observed"]
    assert len(observed) and norm["observed_train_rows"] == len(observed) and norm["train_rows"] == len(train)
    for code, rows in observed.groupby("PROD_CODE"):
        row = stats.loc[code]
        assert row.median_log_price == pytest.approx(np.median(rows.lp), abs=1e-12)
        assert row.log_price_spread == pytest.approx(rows.lp.std(ddof=0), abs=1e-9)
        assert row.promo_share == pytest.approx(rows.promo_flag.mean())
        assert row.mean_log1p_units == pytest.approx(train[train.PROD_CODE == code].lu.mean())
        assert row.observed_rows == len(rows)
    category = stats.groupby("PROD_CODE_20")["median_log_price"].median()
    np.testing.assert_allclose(stats.category_median_log_price, stats.PROD_CODE_20.map(category), rtol=1e-12)
    assert norm["log_price_mean"] == pytest.approx(observed.lp.mean())
    assert norm["log_price_std"] == pytest.approx(observed.lp.std(ddof=0))
    assert norm["log1p_units_mean"] == pytest.approx(observed.lu.mean())
    quantiles = np.quantile(observed.lp, [i / 12 for i in range(1, 12)], method="inverted_cdf")
    np.testing.assert_allclose(norm["log_price_bin_edges"], quantiles, rtol=1e-12)


def test_price_inputs_match_plain_python(workdir: Path, prices: pd.DataFrame) -> None:
    weeks = int(prices.week_index.max())
    absent = (prices.PROD_CODE.iloc[-1], prices.STORE_CODE.iloc[-1])  # dropped from prices: a pair never sold
    rows = {(r.PROD_CODE, r.STORE_CODE, r.week_index): r for r in prices.itertuples()
            if (r.PROD_CODE, r.STORE_CODE) != absent}
    pairs = sorted({(p, s) for p, s, _ in rows})
    keys = [(p, s, w) for p, s in pairs for w in range(1, weeks + 1)]
    keys += [(*absent, 1), (*absent, 5), ("NO_SUCH_PRODUCT", absent[1], 3), (pairs[0][0], "NO_SUCH_STORE", 2),
             (*pairs[0], 0), (*pairs[0], weeks + 1)]
    keys += keys[:30]  # duplicate keys give one row each
    frame = pd.DataFrame(keys, columns=["PROD_CODE", "STORE_CODE", "week_index"]).assign(
        item=lambda d: np.arange(len(d)), note="x")
    out = _raw_inputs(workdir, frame, f"NOT (PROD_CODE = '{absent[0]}' AND STORE_CODE = '{absent[1]}')")
    assert out["item"].tolist() == list(range(len(keys))) and (out["note"] == "x").all()
    assert all(out[c].dtype == np.float64 for c in RAW_PRICE_COLUMNS)

    def price(key: tuple) -> float | None:
        return rows[key].actual_price if key in rows else None

    for (p, s, w), got in zip(keys, out.itertuples()):
        here = rows.get((p, s, w))
        expect = {
            "actual_price": price((p, s, w)),
            "base_price": here.base_price if here else None,
            "price_lag1": price((p, s, w)) if w - 1 < 1 else price((p, s, w - 1)),
            "price_lag4": price((p, s, w)) if w - 4 < 1 else price((p, s, w - 4)),
            "units_lag1": rows[(p, s, w - 1)].units if (p, s, w - 1) in rows else 0.0,
            "known": 1.0 if here else 0.0,
        }
        for column, value in expect.items():
            actual = getattr(got, column)
            if value is None:
                assert math.isnan(actual), (p, s, w, column)
            else:
                assert actual == value, (p, s, w, column)


def test_encoder_is_finite_on_extreme_and_missing_inputs(encoder: PriceFeatureEncoder) -> None:
    values = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-300, 5e-324, 1.0, 3.5, 1e300]
    rng = np.random.default_rng(0)
    raw = rng.choice(values, size=(4000, 6))
    raw[:, 5] = rng.choice([0.0, 1.0, np.nan], size=4000)
    products = len(encoder.stats)
    rows = rng.choice([-1, 0, products - 1, products, 10**9, -5], size=4000)
    x = encoder.encode(raw, rows)
    assert x.dtype == np.float32 and x.shape == (4000, PRICE_FEATURE_DIM)
    assert np.isfinite(x).all()
    unknown = (rows < 0) | (rows >= products)
    assert not x[unknown].any() and unknown.any()
    known = x[~unknown]
    assert np.abs(known[:, :FOURIER_DIM]).max() <= 1.0 + 1e-6
    bins = [i for i, n in enumerate(PRICE_FEATURE_NAMES) if n.startswith("log_price__bin_")]
    discount = [i for i, n in enumerate(PRICE_FEATURE_NAMES) if n.startswith("relative_price__bin_")]
    np.testing.assert_array_equal(known[:, bins].sum(1), 1.0)
    np.testing.assert_array_equal(known[:, discount].sum(1), 1.0)
    assert not x[:, [i for i, n in enumerate(PRICE_FEATURE_NAMES) if "__pad_" in n]].any()
    assert np.abs(x).max() <= 20.1
    assert encoder.encode(np.zeros((0, 6)), np.zeros(0, dtype=np.int64)).shape == (0, PRICE_FEATURE_DIM)


def test_hand_computed_columns(encoder: PriceFeatureEncoder) -> None:
    row = 0
    s, norm = encoder.stats.iloc[row], encoder.normalizers
    m = math.exp(s.median_log_price)
    x = encoder.encode(np.array([[0.8 * m, m, m, 0.8 * m, 3.0, 1.0]]), np.array([row]))[0].astype(np.float64)
    spread = max(s.log_price_spread, 0.05)
    u = (max(-math.log(3), math.log(0.8)) / math.log(3) + 1) / 2
    expect = {
        "fourier__rel_log_price_sin_1": math.sin(math.pi * u),
        "fourier__rel_log_price_cos_8": math.cos(8 * math.pi * u),
        "fourier__depth_sin_32": math.sin(32 * math.pi * 0.2),
        "log_price__z_actual_global": np.clip((math.log(0.8 * m) - norm["log_price_mean"]) / norm["log_price_std"], -5, 5),
        "log_price__z_actual_product": np.clip(math.log(0.8) / spread, -5, 5),
        "log_price__z_base_product": 0.0,
        "relative_price__price_to_base": 0.8,
        "relative_price__discount_depth": 0.2,
        "relative_price__promo_flag": 1.0,
        "relative_price__bin_medium": 1.0,
        "relative_price__bin_none": 0.0,
        "relative_price__log_vs_product_median": math.log(0.8),
        "relative_price__log_vs_category_median": math.log(0.8 * m) - s.category_median_log_price,
        "relative_price__product_vs_category_median": s.median_log_price - s.category_median_log_price,
        "relative_price__known": 1.0,
        "relative_price__price_fallback": 0.0,
        "relative_price__product_promo_share": s.promo_share,
        "velocity__dlog_1": math.log(0.8),
        "velocity__abs_dlog_1": -math.log(0.8),
        "velocity__dlog_4": 0.0,
        "velocity__down_1": 1.0,
        "velocity__up_1": 0.0,
        "velocity__z_log1p_units_lag1": np.clip((math.log(4) - norm["log1p_units_mean"]) / norm["log1p_units_std"], -5, 5),
        "velocity__log1p_units_lag1_vs_product": math.log(4) - s.mean_log1p_units,
    }
    for name, value in expect.items():
        assert x[_col(name)] == pytest.approx(value, abs=1e-5), name
    edges = np.asarray(norm["log_price_bin_edges"])
    assert x[_col(f"log_price__bin_{np.searchsorted(edges, math.log(0.8 * m), side='right')}")] == 1.0


def test_unknown_pair_falls_back_to_the_product_median(encoder: PriceFeatureEncoder) -> None:
    m = math.exp(encoder.stats.median_log_price.iloc[1])
    missing = encoder.encode(np.array([[np.nan, np.nan, np.nan, np.nan, 0.0, 0.0]]), np.array([1]))[0]
    regular = encoder.encode(np.array([[m, m, m, m, 0.0, 0.0]]), np.array([1]))[0]
    assert missing[_col("relative_price__price_fallback")] == 1.0 and regular[_col("relative_price__price_fallback")] == 0.0
    assert missing[_col("relative_price__known")] == 0.0
    others = [i for i, n in enumerate(PRICE_FEATURE_NAMES) if n != "relative_price__price_fallback"]
    np.testing.assert_allclose(missing[others], regular[others], atol=1e-6)
    assert missing[_col("relative_price__log_vs_product_median")] == pytest.approx(0.0, abs=1e-6)
    assert missing[_col("relative_price__bin_none")] == 1.0


def test_a_price_cut_raises_the_discount_features(workdir: Path, encoder: PriceFeatureEncoder, prices: pd.DataFrame) -> None:
    keys = prices[["PROD_CODE", "STORE_CODE", "week_index"]].assign(item=lambda d: np.arange(len(d)))
    raw = _raw_inputs(workdir, keys)
    values = raw[list(RAW_PRICE_COLUMNS)].to_numpy()
    rows = _index_rows(encoder, raw["PROD_CODE"])
    cut = values.copy()
    cut[:, 0] *= 0.7
    before, after = encoder.encode(values, rows), encoder.encode(cut, rows)
    assert (after[:, _col("relative_price__discount_depth")] > before[:, _col("relative_price__discount_depth")]).all()
    assert (after[:, _col("relative_price__promo_flag")] >= before[:, _col("relative_price__promo_flag")]).all()
    assert (after[:, _col("relative_price__price_to_base")] < before[:, _col("relative_price__price_to_base")]).all()
    for name in ("relative_price__log_vs_product_median", "velocity__dlog_1", "log_price__z_actual_global"):
        assert (after[:, _col(name)] <= before[:, _col(name)]).all(), name


def test_encoded_prices_agree_with_prices_derived(workdir: Path, encoder: PriceFeatureEncoder, prices: pd.DataFrame) -> None:
    keys = prices[["PROD_CODE", "STORE_CODE", "week_index"]].assign(item=lambda d: np.arange(len(d)))
    raw = _raw_inputs(workdir, keys)
    x = encoder.encode(raw[list(RAW_PRICE_COLUMNS)].to_numpy(), _index_rows(encoder, raw["PROD_CODE"]))
    assert (x[:, _col("relative_price__known")] == 1).all() and not x[:, _col("relative_price__price_fallback")].any()
    np.testing.assert_allclose(x[:, _col("relative_price__discount_depth")], prices.discount_depth, atol=1e-6)
    np.testing.assert_array_equal(x[:, _col("relative_price__promo_flag")] == 1, prices.promo_flag)
    for name in ("none", "shallow", "medium", "deep"):
        np.testing.assert_array_equal(x[:, _col(f"relative_price__bin_{name}")] == 1, prices.discount_bin == name)


def test_a_stale_layout_is_an_error(workdir: Path, tmp_path: Path) -> None:
    for name in (STATS_FILE, NORMALIZERS_FILE):
        (tmp_path / name).write_bytes((workdir / "features" / name).read_bytes())
    norm = json.loads((tmp_path / NORMALIZERS_FILE).read_text())
    norm["columns"][0]["name"] = "something_else"
    (tmp_path / NORMALIZERS_FILE).write_text(json.dumps(norm))
    with pytest.raises(RetailSimError, match=NORMALIZERS_FILE):
        PriceFeatureEncoder.load(tmp_path)


def test_nothing_fitted_sees_weeks_after_training(ingested_market: Path, workdir: Path, tmp_path: Path) -> None:
    last_train_week = sorted(int(p.name) for p in (ingested_market / "transactions").iterdir())[SPLIT.train_end - 1]
    truncated = truncate_ingested(ingested_market, tmp_path / "truncated", last_train_week)
    _build(truncated, tmp_path / "work")
    full = pd.read_parquet(workdir / "features" / STATS_FILE)
    cut = pd.read_parquet(tmp_path / "work" / "features" / STATS_FILE)
    # Sums in parallel aggregates may differ in the last bit; everything else must be identical.
    pd.testing.assert_frame_equal(full, cut, check_exact=False, rtol=1e-12)
    full_norm = json.loads((workdir / "features" / NORMALIZERS_FILE).read_text())
    cut_norm = json.loads((tmp_path / "work" / "features" / NORMALIZERS_FILE).read_text())
    assert full_norm.keys() == cut_norm.keys()
    for key, value in full_norm.items():
        if isinstance(value, float) or key == "log_price_bin_edges":
            assert cut_norm[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert cut_norm[key] == value, key
