"""The prepared-data loader: batch contents against the sample files, bucket batching, BERT masking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.world_model.pipeline.conftest import SMALL_MARKET, SPLIT
from world_model.errors import RetailSimError
from world_model.pipeline.loader import (
    IGNORE_INDEX,
    BucketBatchSampler,
    NextBasketDataset,
    PreparedData,
    StoreVisitDataset,
    bert_mask,
    make_loader,
)
from world_model.pipeline.model_inputs import T3_DIM, T4_DIM, T6_DIM
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES
from world_model.pipeline.tensor_cache import MASK, PAD, PRODUCT_SPECIALS, UNK


@pytest.fixture(scope="module")
def data(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    workdir = tmp_path_factory.mktemp("loader")
    run_pipeline(ingested_market, workdir, ALL_STAGES, SPLIT, only=["tensor_cache"])
    return PreparedData(workdir)


def _vocab_rows(data: PreparedData, codes: list[str]) -> list[int]:
    row_of = {c: i + PRODUCT_SPECIALS for i, c in enumerate(data.vocab["products"]["codes"])}
    return [row_of.get(c, UNK) for c in codes]


def test_next_basket_batch_matches_the_sample_files(data: PreparedData) -> None:
    samples = pd.read_parquet(data.prepared / "train_next_basket.parquet")
    baskets = pd.read_parquet(data.prepared / "baskets.parquet").set_index("basket_row")
    dataset = NextBasketDataset(data, "train", history_baskets=2)
    assert len(dataset) == len(samples) > 0
    loader = make_loader(dataset, batch_size=16, shuffle=False)
    seen = 0
    for batch in loader:
        n, width = batch["items"].shape
        assert batch["t3"].shape == (n, T3_DIM) and batch["t6"].shape == (n, T6_DIM)
        assert batch["t6_patterns"].shape == (n, T6_DIM)
        assert batch["t4"].shape == (n, width, T4_DIM) and batch["t4"].dtype == torch.float32
        assert torch.isfinite(batch["t4"]).all() and torch.isfinite(batch["t3"]).all()
        assert ((batch["items"] == PAD) == (batch["item_basket"] == 0)).all()
        seen += n
    assert seen == len(samples)

    first = next(iter(make_loader(dataset, batch_size=len(dataset), shuffle=False)))
    order = np.argsort(dataset.lengths(), kind="stable")  # one bucket: sorted by history length
    for position, i in enumerate(order[:40]):
        sample = samples.iloc[i]
        targets = first["targets"][position]
        assert targets[targets != PAD].tolist() == _vocab_rows(data, list(sample["products"]))
        latest = first["items"][position][first["item_basket"][position] == 1].tolist()
        if pd.isna(sample["input_basket_row"]):
            assert latest == [] and sample["num_history_baskets"] == 0
        else:
            assert int(sample["input_basket_row"]) == int(sample["target_basket_row"]) - 1
            start, stop = data.basket_offsets[int(sample["input_basket_row"]) : int(sample["input_basket_row"]) + 2]
            assert latest == data.basket_items[start:stop].tolist()
        target = baskets.loc[int(sample["target_basket_row"])]
        assert first["t3"][position, 16 + int(target["weekday"]) - 1] == 1
        day_of_year = pd.Timestamp(target["SHOP_DATE"]).day_of_year - 1
        assert first["t3"][position, 0].item() == pytest.approx(np.sin(2 * np.pi * day_of_year / 365.25), abs=1e-5)
        assert first["store"][position] == data.vocab["stores"]["codes"].index(target["STORE_CODE"]) + 1


def test_store_visit_batch_labels_are_the_target_store(data: PreparedData) -> None:
    samples = pd.read_parquet(data.prepared / "validation_store_visit.parquet")
    dataset = StoreVisitDataset(data, "validation")
    batch = next(iter(make_loader(dataset, batch_size=len(dataset), shuffle=False)))
    order = np.argsort(dataset.lengths(), kind="stable")
    stores = data.vocab["stores"]["codes"]
    expected = [stores.index(s) + 1 if s in stores else 0 for s in samples["target_store"].iloc[order]]
    previous = [stores.index(s) + 1 if s in stores else 0 for s in samples["previous_store"].iloc[order]]
    assert batch["store"].tolist() == expected
    assert batch["previous_store"].tolist() == previous


def test_first_monday_is_the_monday_of_data_week_one(data: PreparedData) -> None:
    """Every basket's date lies in the Monday..Sunday week of ``first_monday + 7 (week_index - 1)``, and
    ``n_weeks`` is the last week of the tiny market's calendar."""
    from world_model.pipeline.model_inputs import shop_dates

    monday = data.first_monday
    assert (monday - np.datetime64("1970-01-05")).astype(np.int64) % 7 == 0
    dates = shop_dates(data.basket_column("shop_date", np.arange(len(data.basket_table))))
    offset = (dates - (monday + 7 * (data.basket_column("week_index", np.arange(len(dates))).astype(np.int64) - 1)))
    assert offset.astype(np.int64).min() >= 0 and offset.astype(np.int64).max() <= 6
    assert data.n_weeks == SMALL_MARKET.weeks


def test_missing_split_is_one_clear_error(data: PreparedData) -> None:
    with pytest.raises(RetailSimError, match="holdout_next_basket.parquet"):
        NextBasketDataset(data, "holdout")
    with pytest.raises(RetailSimError, match="vocab.json"):
        PreparedData(data.workdir / "nowhere")


def test_bucket_batches_cover_every_sample_once_with_less_padding() -> None:
    lengths = np.random.default_rng(0).integers(1, 60, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=3, bucket_batches=8)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(sampler)

    def padding(batches: list[list[int]]) -> int:
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    random_batches = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    assert padding(batches) < 0.5 * padding(random_batches)
    assert list(BucketBatchSampler(lengths, 32, seed=3, bucket_batches=8)) == batches  # same seed, same epoch
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert len(BucketBatchSampler(lengths, 32, drop_last=True)) == len(list(BucketBatchSampler(lengths, 32, drop_last=True)))


def test_bert_masking_rates() -> None:
    rng = np.random.default_rng(1)
    items = rng.integers(PRODUCT_SPECIALS, 500, size=(400, 50))
    items[:, 40:] = PAD
    masked, labels = bert_mask(items, 500, rng)
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 40:].any() and (masked[:, 40:] == PAD).all()
    assert chosen.sum() / items[:, :40].size == pytest.approx(0.15, abs=0.01)
    assert (labels[chosen] == items[chosen]).all() and (masked[~chosen] == items[~chosen]).all()
    to_mask = (masked[chosen] == MASK).mean()
    kept = (masked[chosen] == items[chosen]).mean()
    assert to_mask == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1 + 0.1 / 497, abs=0.015)  # kept, plus random draws that hit the item
    assert masked[chosen].min() >= PRODUCT_SPECIALS - 1  # random replacements are real products or MASK


def test_masked_loader_and_workers_give_the_same_batches(data: PreparedData) -> None:
    dataset = NextBasketDataset(data, "train")
    serial = list(make_loader(dataset, batch_size=32, seed=5))
    parallel = list(make_loader(dataset, batch_size=32, seed=5, num_workers=2, prefetch_factor=2))
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    masked = next(iter(make_loader(dataset, batch_size=64, mask_rate=0.5, seed=5)))
    assert (masked["labels"] != IGNORE_INDEX).any()
    assert ((masked["labels"] != IGNORE_INDEX) <= (masked["items"] != PAD)).all()


def test_a_masked_position_carries_no_t4_of_its_product(data: PreparedData) -> None:
    """T4 holds the product's own statistics (its price against the category median, its promotion
    share, ...): left at a masked or swapped position it would give the label away."""
    dataset = NextBasketDataset(data, "train")
    plain = next(iter(make_loader(dataset, batch_size=64, seed=5)))
    masked = next(iter(make_loader(dataset, batch_size=64, mask_rate=0.5, seed=5)))
    changed = masked["items"] != plain["items"]
    assert changed.any() and (plain["t4"][changed] != 0).any(dim=-1).any()
    assert (masked["t4"][changed] == 0).all()
    assert torch.equal(masked["t4"][~changed], plain["t4"][~changed])
