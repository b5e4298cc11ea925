"""features/: pseudo-brands and product embeddings, on the generated market and on hand-made graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.world_model.pipeline.conftest import SPLIT, truncate_ingested
from world_model.pipeline.product_features import (
    EmbeddingConfig,
    assign_pseudo_brands,
    train_product_embeddings,
)
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES

ONLY = ["pseudo_brands", "product_embeddings"]


@pytest.fixture(scope="module")
def workdir(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features-work")
    run_pipeline(ingested_market, out, ALL_STAGES, SPLIT, only=ONLY)
    return out


def _nodes(workdir: Path) -> pd.DataFrame:
    nodes = pd.read_parquet(workdir / "processed" / "product_graph_nodes.parquet")
    return nodes.sort_values("PROD_CODE", ignore_index=True)


def test_pseudo_brands_cover_every_product_and_stay_within_its_class(workdir: Path) -> None:
    nodes = _nodes(workdir)
    brands = pd.read_parquet(workdir / "features" / "pseudo_brands.parquet")
    assert list(brands.columns) == ["PROD_CODE", "PROD_CODE_10", "pseudo_brand", "price_tier", "confidence"]
    assert brands["PROD_CODE"].tolist() == nodes["PROD_CODE"].tolist()
    assert (brands["PROD_CODE_10"] == nodes["PROD_CODE_10"]).all()
    assert all(b.startswith(c + "-B") for b, c in zip(brands["pseudo_brand"], brands["PROD_CODE_10"]))
    assert brands.groupby("pseudo_brand")["PROD_CODE_10"].nunique().max() == 1
    per_class = brands.groupby("PROD_CODE_10").agg(size=("PROD_CODE", "size"), brands=("pseudo_brand", "nunique"))
    assert (per_class["brands"] <= per_class["size"].map(lambda n: max(1, round(n / 6)))).all()
    assert brands["confidence"].between(0.0, 1.0).all()
    assert set(brands["price_tier"]) <= {"LA", "MM", "UM"}


def _one_class_two_partner_groups(prices: list[float]) -> tuple[pd.DataFrame, pd.DataFrame, list, list]:
    """One class of 12 products: the first 6 bought with partners P0-P2, the last 6 with P3-P5 (class CL2)."""
    products = [f"A{i:02d}" for i in range(12)]
    partners = [f"P{i}" for i in range(6)]
    nodes = pd.DataFrame(
        {
            "PROD_CODE": products + partners,
            "PROD_CODE_10": ["CL1"] * 12 + ["CL2"] * 6,
            "mean_unit_price": prices + [2.0] * 6,
        }
    )
    edges = pd.DataFrame(
        [
            {"src": p, "dst": partners[j + (0 if i < 6 else 3)], "lift": 2.0 + (i + j) % 3}
            for i, p in enumerate(products)
            for j in range(3)
        ]
    )
    return nodes, edges, products, partners


def test_pseudo_brands_recover_planted_price_and_basket_groups() -> None:
    nodes, edges, products, partners = _one_class_two_partner_groups(
        [1.0 + 0.01 * i for i in range(6)] + [5.0 + 0.05 * i for i in range(6)]
    )
    brands = assign_pseudo_brands(nodes, edges).set_index("PROD_CODE")
    assert brands.loc[products[:6], "pseudo_brand"].eq("CL1-B01").all()  # cheapest pseudo-brand first
    assert brands.loc[products[6:], "pseudo_brand"].eq("CL1-B02").all()
    assert brands.loc[products, "confidence"].gt(0.5).all()
    assert brands.loc[products[:4], "price_tier"].eq("LA").all()
    assert brands.loc[products[8:], "price_tier"].eq("UM").all()
    assert brands.loc[partners, "pseudo_brand"].eq("CL2-B01").all()  # 6 products: one pseudo-brand
    assert brands.loc[partners, "confidence"].eq(1.0).all()
    assert brands.loc[partners, "price_tier"].eq("MM").all()  # equal prices share the middle tier


def test_pseudo_brands_split_one_price_tier_by_basket_partners() -> None:
    # Prices interleave, so only the co-purchase profile tells the two groups apart.
    nodes, edges, products, _ = _one_class_two_partner_groups([2.0 + 0.01 * (i % 2) + 0.001 * i for i in range(12)])
    brands = assign_pseudo_brands(nodes, edges).set_index("PROD_CODE")["pseudo_brand"]
    assert brands[products[:6]].nunique() == 1 and brands[products[6:]].nunique() == 1
    assert brands[products[0]] != brands[products[6]]


def test_embeddings_have_the_index_shape_and_unit_norm(workdir: Path) -> None:
    nodes = _nodes(workdir)
    embeddings = np.load(workdir / "features" / "product_embeddings.npy")
    index = pd.read_parquet(workdir / "features" / "product_embedding_index.parquet")
    assert embeddings.shape == (len(nodes), 256) and embeddings.dtype == np.float32
    assert index["PROD_CODE"].tolist() == nodes["PROD_CODE"].tolist() == sorted(nodes["PROD_CODE"])
    assert index["row"].tolist() == list(range(len(nodes)))
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    report = json.loads((workdir / "features" / "product_embedding_report.json").read_text())
    assert report["products"] == len(nodes) and report["heldout_edges"] > 0
    assert np.isfinite(report["final_loss"]) and 0.0 <= report["heldout_auc"] <= 1.0


def test_embeddings_are_deterministic(workdir: Path) -> None:
    nodes = _nodes(workdir)
    edges = pd.read_parquet(workdir / "processed" / "product_graph_edges.parquet")
    brands = pd.read_parquet(workdir / "features" / "pseudo_brands.parquet")
    first, first_report = train_product_embeddings(nodes, edges, brands)
    second, second_report = train_product_embeddings(nodes, edges, brands)
    np.testing.assert_array_equal(first, second)
    assert first_report["final_loss"] == second_report["final_loss"]
    np.testing.assert_array_equal(first, np.load(workdir / "features" / "product_embeddings.npy"))


def _planted_communities(communities: int = 8, size: int = 25, degree: int = 6, seed: int = 3) -> tuple:
    """Products in communities that co-purchase only inside their community, hierarchy drawn at random
    (so it carries no community signal), plus one product without edges."""
    rng = np.random.default_rng(seed)
    n = communities * size + 1
    codes = [f"PRD{i:04d}" for i in range(n)]
    classes = rng.integers(0, 30, n)
    nodes = pd.DataFrame(
        {
            "PROD_CODE": codes,
            "PROD_CODE_10": [f"CL{c:02d}" for c in classes],
            "PROD_CODE_20": [f"DEP{c % 10}" for c in classes],
            "PROD_CODE_30": [f"G{c % 5}" for c in classes],
            "PROD_CODE_40": [f"D{c % 2}" for c in classes],
            "train_baskets": rng.integers(20, 500, n),
            "mean_unit_price": rng.lognormal(0.0, 0.5, n),
        }
    )
    rows = []
    for i in range(n - 1):
        community = [m for m in range((i // size) * size, (i // size + 1) * size) if m != i]
        for j in rng.choice(community, degree, replace=False):
            rows.append({"src": codes[i], "dst": codes[j], "baskets": 10, "lift": 3.0})
    brands = pd.DataFrame({"PROD_CODE": codes, "pseudo_brand": [f"CL{c:02d}-B01" for c in classes]})
    return nodes, pd.DataFrame(rows), brands


def test_embeddings_put_co_purchased_products_closer_than_random_pairs() -> None:
    nodes, edges, brands = _planted_communities()
    embeddings, report = train_product_embeddings(nodes, edges, brands, EmbeddingConfig(epochs=40))
    # Held-out co-purchases outscore random pairs; the untrained encoder scores about 0.60 here.
    assert report["heldout_auc"] > 0.75
    assert report["isolated_products"] == 1
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)  # the isolated one too
    community = np.arange(len(nodes) - 1) // 25
    similarity = embeddings[:-1] @ embeddings[:-1].T
    same = community[:, None] == community[None, :]
    assert similarity[same].mean() > similarity[~same].mean() + 0.2


def test_nothing_fitted_sees_weeks_after_training(ingested_market: Path, workdir: Path, tmp_path: Path) -> None:
    last_train_week = sorted(int(p.name) for p in (ingested_market / "transactions").iterdir())[SPLIT.train_end - 1]
    truncated = truncate_ingested(ingested_market, tmp_path / "truncated", last_train_week)
    cut = tmp_path / "work"
    run_pipeline(truncated, cut, ALL_STAGES, SPLIT, only=ONLY)
    full_brands = pq.read_table(workdir / "features" / "pseudo_brands.parquet").to_pandas()
    cut_brands = pq.read_table(cut / "features" / "pseudo_brands.parquet").to_pandas()
    pd.testing.assert_frame_equal(full_brands, cut_brands, check_exact=False, rtol=1e-9)
    index = "product_embedding_index.parquet"
    full_index, cut_index = (pd.read_parquet(root / "features" / index) for root in (workdir, cut))
    pd.testing.assert_frame_equal(full_index, cut_index)
    # Graph weights are sums that may differ in the last bit between runs; training must not amplify it.
    full_embeddings = np.load(workdir / "features" / "product_embeddings.npy")
    np.testing.assert_allclose(full_embeddings, np.load(cut / "features" / "product_embeddings.npy"), atol=1e-5)
    full_report = json.loads((workdir / "features" / "product_embedding_report.json").read_text())
    cut_report = json.loads((cut / "features" / "product_embedding_report.json").read_text())
    assert cut_report["final_loss"] == pytest.approx(full_report["final_loss"], abs=1e-4)
    assert cut_report["heldout_auc"] == pytest.approx(full_report["heldout_auc"], abs=1e-4)
