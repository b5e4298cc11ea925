"""Target selection and histories on the tiny work directory, checked against plain Python."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from world_model.evaluation.targets import EvaluationTargets
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import UNK


def _plain_targets(data: PreparedData, split: str) -> list[int]:
    """Baskets of ``split`` with >= 2 distinct products whose customer shopped before, from baskets.parquet."""
    baskets = pd.read_parquet(data.prepared / "baskets.parquet").sort_values("basket_row")
    seen: dict[str, int] = {}
    rows = []
    for row in baskets.itertuples():
        earlier = seen.get(row.CUST_CODE, 0)
        seen[row.CUST_CODE] = earlier + 1
        if row.split == split and row.n_products >= 2 and earlier >= 1:
            rows.append(row.basket_row)
    return rows


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_target_selection_matches_plain_python(prepared: PreparedData, split: str) -> None:
    targets = EvaluationTargets.from_prepared(prepared, split)
    expected = _plain_targets(prepared, split)
    assert len(expected) > 20
    assert targets.rows.tolist() == expected
    baskets = pd.read_parquet(prepared.prepared / "baskets.parquet").set_index("basket_row").loc[expected]
    assert targets.target_sizes.tolist() == baskets["n_products"].tolist()
    assert targets.weekday.tolist() == baskets["weekday"].tolist()
    assert targets.history_baskets.tolist() == baskets["history_baskets"].tolist()
    codes = prepared.vocab["stores"]["codes"]
    assert targets.store_row.tolist() == [codes.index(s) + 1 for s in baskets["STORE_CODE"]]
    for i in range(0, len(targets), 7):
        start, stop = prepared.basket_offsets[targets.rows[i] : targets.rows[i] + 2]
        own = targets.items[targets.item_offsets[i] : targets.item_offsets[i + 1]]
        assert own.tolist() == prepared.basket_items[start:stop].tolist()


def test_histories_and_repeat_flags_match_plain_python(prepared: PreparedData) -> None:
    targets = EvaluationTargets.from_prepared(prepared, "test")
    history = targets.history_items(slice(0, len(targets)))
    stores = targets.history_stores(slice(0, len(targets)))
    offsets, items, table = prepared.basket_offsets, prepared.basket_items, prepared.basket_table
    customer = pd.read_parquet(prepared.prepared / "baskets.parquet").sort_values("basket_row")["CUST_CODE"].tolist()
    for i in range(len(targets)):
        rows = targets.history_rows(i)
        target = int(targets.rows[i])
        assert rows.tolist() == [r for r in range(target) if customer[r] == customer[target]]
        expected = [(int(x), int(targets.rows[i] - r)) for r in rows for x in items[offsets[r] : offsets[r + 1]]]
        got = slice(history.offsets[i], history.offsets[i + 1])
        assert list(zip(history.values[got].tolist(), history.distance[got].tolist())) == expected
        got = slice(stores.offsets[i], stores.offsets[i + 1])
        assert stores.values[got].tolist() == table[rows, 1].tolist()
        assert stores.distance[got].tolist() == (targets.rows[i] - rows).tolist()
        bought = {x for x, _ in expected}
        own = targets.items[targets.item_offsets[i] : targets.item_offsets[i + 1]]
        flags = targets.item_is_repeat[targets.item_offsets[i] : targets.item_offsets[i + 1]]
        assert flags.tolist() == [x in bought and x != UNK for x in own.tolist()]


def test_chunks_cover_the_targets_within_the_budget(prepared: PreparedData) -> None:
    targets = EvaluationTargets.from_prepared(prepared, "validation")
    sizes = np.diff(targets.history_items(slice(0, len(targets))).offsets)
    budget = int(np.median(sizes)) * 3
    chunks = list(targets.chunks(max_items=budget))
    assert chunks[0].start == 0 and chunks[-1].stop == len(targets) and len(chunks) > 3
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    assert all(sizes[c].sum() <= budget or c.stop - c.start == 1 for c in chunks)


def test_limit_is_a_reproducible_sample(prepared: PreparedData) -> None:
    full = EvaluationTargets.from_prepared(prepared, "train")
    sample = EvaluationTargets.from_prepared(prepared, "train", limit=50)
    again = EvaluationTargets.from_prepared(prepared, "train", limit=50)
    assert len(sample) == 50 and sample.rows.tolist() == again.rows.tolist()
    assert np.all(np.diff(sample.rows) > 0) and set(sample.rows) <= set(full.rows)
    assert sample.rows[-1] > full.rows[len(full) // 2]  # spread over the split, not its first targets


def test_min_products_one_gives_every_store_visit(prepared: PreparedData) -> None:
    visits = EvaluationTargets.from_prepared(prepared, "test", min_products=1)
    samples = pd.read_parquet(prepared.prepared / "test_store_visit.parquet")
    assert visits.rows.tolist() == samples["target_basket_row"].tolist()


def test_unknown_split_is_refused(prepared: PreparedData) -> None:
    with pytest.raises(ValueError, match="split"):
        EvaluationTargets.from_prepared(prepared, "holdout")
