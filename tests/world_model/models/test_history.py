"""History features against plain-Python recomputation on a tiny prepared market."""

from __future__ import annotations

import math

import numpy as np
import pytest

from world_model.arrays import gather_ranges
from world_model.models.history import PRODUCT_FEATURES, STORE_FEATURES, HistoryFeatures
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import BASKET_TABLE_COLUMNS

COL = {name: i for i, name in enumerate(BASKET_TABLE_COLUMNS)}
P = {name: i for i, name in enumerate(PRODUCT_FEATURES)}
S = {name: i for i, name in enumerate(STORE_FEATURES)}


@pytest.fixture(scope="module")
def arrays(prepared: PreparedData):
    table, offsets, items = np.asarray(prepared.basket_table), np.asarray(prepared.basket_offsets), np.asarray(prepared.basket_items)
    rows = np.flatnonzero(table[:, COL["history_baskets"]] >= 3)[:40]
    assert len(rows) == 40
    return table, offsets, items, rows


def test_gather_ranges() -> None:
    assert gather_ranges(np.array([5, 0, 9]), np.array([7, 0, 12])).tolist() == [5, 6, 9, 10, 11]
    assert gather_ranges(np.array([], dtype=int), np.array([], dtype=int)).tolist() == []


def _history(table, offsets, items, row):
    """[(distance, weeks, store, weekday, products)] of the row's earlier baskets, latest first."""
    out = []
    for d in range(1, table[row, COL["history_baskets"]] + 1):
        r = row - d
        out.append((d, table[row, COL["week_index"]] - table[r, COL["week_index"]], table[r, COL["store_row"]],
                    table[r, COL["weekday"]], set(items[offsets[r]:offsets[r + 1]].tolist()) - {0, 1, 2}))
    return out


def test_product_features_match_plain_python(arrays) -> None:
    table, offsets, items, rows = arrays
    stores = table[rows, COL["store_row"]]
    candidates, features = HistoryFeatures(table, offsets, items, max_candidates=1000).products(rows, stores)
    for i, row in enumerate(rows):
        history = _history(table, offsets, items, row)
        n = len(history)
        bought = sorted({p for h in history for p in h[4]})
        assert sorted(c for c in candidates[i].tolist() if c) == bought
        # P-TopFreq order: count, then recency
        count = {p: sum(p in h[4] for h in history) for p in bought}
        last = {p: min(h[0] for h in history if p in h[4]) for p in bought}
        expected_order = sorted(bought, key=lambda p: (-count[p], last[p]))
        assert candidates[i, : len(bought)].tolist() == expected_order
        for j, p in enumerate(expected_order):
            f = features[i, j]
            mine = [h for h in history if p in h[4]]
            assert f[P["share"]] == pytest.approx(count[p] / n)
            assert f[P["log_count"]] == pytest.approx(math.log1p(count[p]))
            assert f[P["share_decay_0.8"]] == pytest.approx(sum(0.2 * 0.8 ** (h[0] - 1) for h in mine), rel=1e-5)
            assert f[P["log_last_distance"]] == pytest.approx(math.log1p(last[p]))
            assert f[P["in_last_basket"]] == (last[p] == 1)
            assert f[P["log_weeks_since"]] == pytest.approx(math.log1p(min(h[1] for h in mine)), rel=1e-5)
            assert f[P["share_at_store"]] == pytest.approx(sum(h[2] == stores[i] for h in mine) / len(mine))
            assert f[P["log_rank"]] == pytest.approx(math.log1p(j))
            expected_weeks = sum(math.exp(-h[1] / 4) for h in mine) / sum(math.exp(-h[1] / 4) for h in history)
            assert f[P["share_weeks_4"]] == pytest.approx(expected_weeks, rel=1e-4)
        assert not features[i, len(bought):].any()


def test_candidates_are_capped_in_ptopfreq_order(arrays) -> None:
    table, offsets, items, rows = arrays
    full, _ = HistoryFeatures(table, offsets, items, max_candidates=1000).products(rows, table[rows, COL["store_row"]])
    capped, features = HistoryFeatures(table, offsets, items, max_candidates=3).products(rows, table[rows, COL["store_row"]])
    assert capped.shape[1] == 3 and features.shape[:2] == (40, 3)
    assert (capped == full[:, :3]).all()


def test_store_features_match_plain_python(arrays) -> None:
    table, offsets, items, rows = arrays
    candidates, features = HistoryFeatures(table, offsets, items).stores(rows)
    for i, row in enumerate(rows):
        history = _history(table, offsets, items, row)
        visits = {}
        for h in history:
            visits[h[2]] = visits.get(h[2], 0) + 1
        last = {s: min(h[0] for h in history if h[2] == s) for s in visits}
        order = sorted(visits, key=lambda s: (-visits[s], last[s]))
        assert candidates[i, : len(order)].tolist() == order
        assert (candidates[i, len(order):] == -1).all()
        last_store = table[row - 1, COL["store_row"]]
        after = [history[k][2] for k in range(len(history) - 1) if history[k + 1][2] == last_store]
        for j, s in enumerate(order):
            f = features[i, j]
            assert f[S["share"]] == pytest.approx(visits[s] / len(history))
            assert f[S["is_last_store"]] == (s == last_store)
            same_day = [h for h in history if h[3] == table[row, COL["weekday"]]]
            expected = sum(h[2] == s for h in same_day) / len(same_day) if same_day else 0.0
            assert f[S["share_same_weekday"]] == pytest.approx(expected)
            expected_after = after.count(s) / len(after) if after else 0.0
            assert f[S["share_after_last"]] == pytest.approx(expected_after)


def test_sequence_is_the_latest_items_oldest_first(arrays) -> None:
    table, offsets, items, rows = arrays
    positions, distance, weeks = HistoryFeatures(table, offsets, items).sequence(rows, max_items=7)
    for i, row in enumerate(rows):
        first = offsets[row - table[row, COL["history_baskets"]]]
        expected = list(range(max(first, offsets[row] - 7), offsets[row]))
        got = [p for p in positions[i].tolist() if p >= 0]
        assert got == expected
        basket_of = np.searchsorted(offsets, np.array(got), side="right") - 1
        assert distance[i, : len(got)].tolist() == (row - basket_of).tolist()
        assert (distance[i, len(got):] == 0).all()
