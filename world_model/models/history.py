"""What a customer's own history says about the next trip: per-candidate features for the world models.

In the real sample most of a basket was bought by the same customer before (62% of lines, 87-90% at class
level), and 81% of trips go to the customer's top store. A model that has to rediscover "people buy again
what they bought, where they bought it" from raw sequences needs far more data than one sample holds, and
the strongest baselines (P-TopFreq, primary store) are exactly these counts. So the models score the
customer's own products and stores through a learned function of explicit history statistics (a repeat /
pointer head, as in RepeatNet), on top of a learned score for every item of the vocabulary.

Everything is computed per batch, vectorized over all of the batch's history baskets, from the tensor
cache's CSR arrays; a basket's history is the customer's contiguous rows before it (``basket_table``
``history_baskets`` of them), so nothing here can read a later basket.

Feature layouts (``PRODUCT_FEATURES``, ``STORE_FEATURES``) are fixed; ``d`` is a history basket's distance
from the target (1 = the latest earlier basket), ``w`` its age in weeks at the target, ``n`` the number of
history baskets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world_model.arrays import gather_ranges
from world_model.pipeline.tensor_cache import BASKET_COLUMN, PRODUCT_SPECIALS


PRODUCT_FEATURES = (
    "log_count",            # log1p(history baskets holding the product)
    "share",                # count / n
    "share_decay_0.5",      # sum over its baskets of (1 - r) r^(d - 1): recency-weighted share, r = 0.5
    "share_decay_0.8",
    "share_decay_0.95",
    "share_weeks_4",        # sum of exp(-w / 4) over its baskets / the same sum over all history baskets
    "share_weeks_26",
    "log_last_distance",    # log1p(d of its latest basket)
    "log_weeks_since",      # log1p(w of its latest basket)
    "in_last_basket",
    "log_history",          # log1p(n)
    "log_cycle_ratio",      # log((weeks since + 1) / (mean weeks between its purchases + 1)); 0 if bought once
    "bought_once",
    "share_at_store",       # its baskets at the target's store / its baskets
    "log_rank",             # log1p(rank in P-TopFreq order: count, then recency)
    "share_same_weekday",   # its baskets on the target's weekday / its baskets
)  # fmt: skip
STORE_FEATURES = (
    "share",                # visits / n
    "share_decay_0.5",
    "share_decay_0.8",
    "share_decay_0.95",
    "share_weeks_8",        # sum of exp(-w / 8) over its visits / the same sum over all history trips
    "is_last_store",
    "log_weeks_since",      # log1p(weeks since the latest visit there)
    "share_same_weekday",   # visits there on the target's weekday / history trips on that weekday (0 if none)
    "share_same_daypart",   # the same for the target's part of the day
    "share_after_last",     # visits there right after a visit to the last store / visits after the last store
    "log_rank",             # log1p(rank by visits, then recency)
    "log_history",
)  # fmt: skip
DECAYS = (0.5, 0.8, 0.95)
WEEK_SCALES = (4.0, 26.0)


def _day_part(hour: np.ndarray) -> np.ndarray:
    return np.digitize(hour, (12, 15, 18))


@dataclass
class HistoryBaskets:
    """Every history basket of a batch of targets, flattened: one entry per (target, earlier basket)."""

    target: np.ndarray    # [h] position of the target in the batch
    row: np.ndarray       # [h] basket row
    distance: np.ndarray  # [h] 1 = the latest earlier basket
    weeks: np.ndarray     # [h] target week_index - its week_index
    n: np.ndarray         # [batch] history baskets per target

    @classmethod
    def of(cls, table: np.ndarray, target_rows: np.ndarray) -> HistoryBaskets:
        n = table[target_rows, BASKET_COLUMN["history_baskets"]].astype(np.int64)
        rows = gather_ranges(target_rows - n, target_rows)
        target = np.repeat(np.arange(len(target_rows)), n)
        distance = target_rows[target] - rows
        weeks = (table[target_rows[target], BASKET_COLUMN["week_index"]] - table[rows, BASKET_COLUMN["week_index"]]).astype(np.float64)
        return cls(target, rows, distance, weeks, n)


def _group_first(keys: np.ndarray, order_within: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique ``keys``, the inverse map, and for each group the index of its entry with the smallest
    ``order_within``."""
    unique, inverse = np.unique(keys, return_inverse=True)
    order = np.lexsort((order_within, inverse))
    starts = np.searchsorted(inverse[order], np.arange(len(unique)))
    return unique, inverse, order[starts]


def _rank_within(group: np.ndarray, *sort_keys_descending: np.ndarray) -> np.ndarray:
    """0-based rank of each entry within its ``group`` by the keys, largest first (ties: later keys)."""
    order = np.lexsort(tuple(-k for k in reversed(sort_keys_descending)) + (group,))
    ranks = np.empty(len(group), dtype=np.int64)
    sorted_group = group[order]
    first = np.searchsorted(sorted_group, sorted_group)
    ranks[order] = np.arange(len(group)) - first
    return ranks


def _pad_groups(group: np.ndarray, rank: np.ndarray, values: np.ndarray, batch: int, width: int, fill) -> np.ndarray:
    out = np.full((batch, width, *values.shape[1:]), fill, dtype=values.dtype)
    keep = rank < width
    out[group[keep], rank[keep]] = values[keep]
    return out


class HistoryFeatures:
    """Per-batch candidate features from the tensor cache (``PreparedData``'s arrays).

    ``max_candidates`` bounds the products scored per target: the customer's top products in P-TopFreq
    order; the rest of the vocabulary is still scored by the model's explore head."""

    def __init__(self, table: np.ndarray, offsets: np.ndarray, items: np.ndarray, max_candidates: int = 256) -> None:
        self.table, self.offsets, self.items = table, offsets, items
        self.max_candidates = max_candidates

    # ---------------------------------------------------------------------------------------------- products

    def products(self, target_rows: np.ndarray, store_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates [B, H] int64 (product vocabulary rows, 0 = padding) and their features
        [B, H, len(PRODUCT_FEATURES)] float32, for targets at ``store_rows`` (the true or predicted store)."""
        table = self.table
        target_rows = np.asarray(target_rows, dtype=np.int64)
        batch = len(target_rows)
        hist = HistoryBaskets.of(table, target_rows)
        sizes = self.offsets[hist.row + 1] - self.offsets[hist.row]
        flat = gather_ranges(self.offsets[hist.row], self.offsets[hist.row + 1])
        occ_basket = np.repeat(np.arange(len(hist.row)), sizes)  # occurrence -> history basket entry
        product = np.asarray(self.items[flat], dtype=np.int64)
        real = product >= PRODUCT_SPECIALS
        product, occ_basket = product[real], occ_basket[real]
        occ_target = hist.target[occ_basket]
        distance = hist.distance[occ_basket]
        weeks = hist.weeks[occ_basket]
        keys = occ_target * (int(product.max(initial=0)) + 1) + product
        unique, inverse, latest = _group_first(keys, distance)
        groups = len(unique)
        g_target = occ_target[latest]
        g_product = product[latest]
        count = np.bincount(inverse, minlength=groups).astype(np.float64)
        n = hist.n[g_target].astype(np.float64)

        feats = np.zeros((groups, len(PRODUCT_FEATURES)), dtype=np.float64)
        feats[:, 0] = np.log1p(count)
        feats[:, 1] = count / n
        for j, r in enumerate(DECAYS):
            feats[:, 2 + j] = np.bincount(inverse, (1 - r) * r ** (distance - 1), minlength=groups)
        basket_weight_totals = {}
        for j, scale in enumerate(WEEK_SCALES):
            per_basket = np.exp(-hist.weeks / scale)
            basket_weight_totals[scale] = np.bincount(hist.target, per_basket, minlength=batch)
            mass = np.bincount(inverse, np.exp(-weeks / scale), minlength=groups)
            feats[:, 5 + j] = mass / np.maximum(basket_weight_totals[scale][g_target], 1e-12)
        last_distance = distance[latest].astype(np.float64)
        weeks_since = weeks[latest]
        feats[:, 7] = np.log1p(last_distance)
        feats[:, 8] = np.log1p(weeks_since)
        feats[:, 9] = last_distance == 1
        feats[:, 10] = np.log1p(n)
        first_weeks = np.zeros(groups)
        np.maximum.at(first_weeks, inverse, weeks)  # the oldest purchase has the largest age
        cycle = (first_weeks - weeks_since) / np.maximum(count - 1, 1)
        feats[:, 11] = np.where(count > 1, np.log((weeks_since + 1) / (cycle + 1)), 0.0)
        feats[:, 12] = count == 1
        at_store = table[hist.row[occ_basket], BASKET_COLUMN["store_row"]] == np.asarray(store_rows)[occ_target]
        feats[:, 13] = np.bincount(inverse, at_store, minlength=groups) / count
        rank = _rank_within(g_target, count, -last_distance)
        feats[:, 14] = np.log1p(rank)
        same_day = table[hist.row[occ_basket], BASKET_COLUMN["weekday"]] == table[target_rows[occ_target], BASKET_COLUMN["weekday"]]
        feats[:, 15] = np.bincount(inverse, same_day, minlength=groups) / count

        width = max(1, min(self.max_candidates, int(rank.max(initial=0)) + 1))
        candidates = _pad_groups(g_target, rank, g_product, batch, width, 0)
        features = _pad_groups(g_target, rank, feats.astype(np.float32), batch, width, 0.0)
        return candidates, features

    # ------------------------------------------------------------------------------------------------ stores

    def stores(self, target_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate stores [B, S] int64 (store rows, -1 = padding; a store row 0 is the UNK store) and
        their features [B, S, len(STORE_FEATURES)] float32, from the customer's earlier trips."""
        table = self.table
        target_rows = np.asarray(target_rows, dtype=np.int64)
        batch = len(target_rows)
        hist = HistoryBaskets.of(table, target_rows)
        store = table[hist.row, BASKET_COLUMN["store_row"]].astype(np.int64)
        keys = hist.target * (int(store.max(initial=0)) + 1) + store
        unique, inverse, latest = _group_first(keys, hist.distance)
        groups = len(unique)
        g_target, g_store = hist.target[latest], store[latest]
        visits = np.bincount(inverse, minlength=groups).astype(np.float64)
        n = hist.n[g_target].astype(np.float64)

        feats = np.zeros((groups, len(STORE_FEATURES)), dtype=np.float64)
        feats[:, 0] = visits / n
        for j, r in enumerate(DECAYS):
            feats[:, 1 + j] = np.bincount(inverse, (1 - r) * r ** (hist.distance - 1), minlength=groups)
        recent = np.exp(-hist.weeks / 8.0)
        feats[:, 4] = np.bincount(inverse, recent, minlength=groups) / np.bincount(hist.target, recent, minlength=batch)[g_target]
        last_distance = hist.distance[latest]
        feats[:, 5] = last_distance == 1
        feats[:, 6] = np.log1p(hist.weeks[latest])
        for j, attribute in enumerate((BASKET_COLUMN["weekday"], None)):
            if attribute is None:
                own, target_value = _day_part(table[hist.row, BASKET_COLUMN["hour"]]), _day_part(table[target_rows, BASKET_COLUMN["hour"]])
            else:
                own, target_value = table[hist.row, attribute], table[target_rows, attribute]
            same = own == target_value[hist.target]
            feats[:, 7 + j] = np.bincount(inverse, same, minlength=groups) / np.maximum(
                np.bincount(hist.target, same, minlength=batch)[g_target], 1)
        # personal transitions: trips that followed a visit to the customer's last store
        last_store = table[target_rows - 1, BASKET_COLUMN["store_row"]]
        previous = np.where(hist.distance < hist.n[hist.target], hist.row - 1, -1)
        after_last = (previous >= 0) & (table[np.maximum(previous, 0), BASKET_COLUMN["store_row"]] == last_store[hist.target])
        feats[:, 9] = np.bincount(inverse, after_last, minlength=groups) / np.maximum(
            np.bincount(hist.target, after_last, minlength=batch)[g_target], 1)
        rank = _rank_within(g_target, visits, -last_distance.astype(np.float64))
        feats[:, 10] = np.log1p(rank)
        feats[:, 11] = np.log1p(n)
        width = max(1, int(rank.max(initial=0)) + 1)
        candidates = _pad_groups(g_target, rank, g_store, batch, width, -1)
        features = _pad_groups(g_target, rank, feats.astype(np.float32), batch, width, 0.0)
        return candidates, features

    # ---------------------------------------------------------------------------------------------- sequence

    def sequence(self, target_rows: np.ndarray, max_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The latest ``max_items`` history items, oldest first, right-padded: flat item positions [B, L]
        (-1 = padding; index into ``basket_items`` / ``basket_item_prices``), basket distance [B, L]
        (0 = padding) and weeks before the target [B, L]."""
        table = self.table
        target_rows = np.asarray(target_rows, dtype=np.int64)
        batch = len(target_rows)
        n = table[target_rows, BASKET_COLUMN["history_baskets"]].astype(np.int64)
        first_item = self.offsets[target_rows - n]
        start = np.maximum(first_item, self.offsets[target_rows] - max_items)
        lengths = self.offsets[target_rows] - start
        flat = gather_ranges(start, start + lengths)
        owner = np.repeat(np.arange(batch), lengths)
        position = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        basket_row = np.searchsorted(self.offsets, flat, side="right") - 1
        width = max(1, int(lengths.max(initial=0)))
        positions = np.full((batch, width), -1, dtype=np.int64)
        distance = np.zeros((batch, width), dtype=np.int64)
        weeks = np.zeros((batch, width), dtype=np.float32)
        positions[owner, position] = flat
        distance[owner, position] = target_rows[owner] - basket_row
        weeks[owner, position] = table[target_rows[owner], BASKET_COLUMN["week_index"]] - table[basket_row, BASKET_COLUMN["week_index"]]
        return positions, distance, weeks
