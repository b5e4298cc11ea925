"""Baselines the world models must beat: three next-basket rankers and three store-visit rules.

Next basket (``rank(targets, k) -> [n, k]`` vocabulary rows, -1 = nothing left to predict):

- ``GTopFreq``: the products in most training baskets, the same list for everyone;
- ``PTopFreq``: the customer's own most frequent products (baskets containing them), ties broken by
  recency, then filled with global popularity;
- ``TIFUKNN``: Hu et al. 2020, "Modeling Personalized Item Frequency Information for Next-basket
  Recommendation" (SIGIR): time-decayed item frequencies blended with those of the nearest customers.

Store visit (``probabilities(targets) -> [n, n_stores]`` float32): ``PrimaryStore``, ``LastStore`` and
``MarkovStore`` each name one store; ``rule_distribution`` turns that into a distribution (see there).

Everything fitted (popularity, the TIFU neighbour pool, transitions, the store calibration) reads
training-split baskets only; per-target inputs are the target's own history, strictly earlier baskets.
Products below ``PRODUCT_SPECIALS`` (PAD, UNK, MASK) are never ranked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp

from world_model.evaluation.metrics import NO_PREDICTION
from world_model.evaluation.targets import EvaluationTargets, History, history_items
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import BASKET_TABLE_COLUMNS, PRODUCT_SPECIALS, SPLIT_CODES

_COLUMN = {name: i for i, name in enumerate(BASKET_TABLE_COLUMNS)}
TRAIN = SPLIT_CODES["train"]


# ---------------------------------------------------------------------------------------------- helpers


def training_popularity(data: PreparedData) -> np.ndarray:
    """[n_products] number of training-split baskets containing each product; 0 for PAD/UNK/MASK.
    Basket items are distinct, so counting item entries counts baskets."""
    table = np.asarray(data.basket_table)
    offsets = np.asarray(data.basket_offsets)
    in_training = np.repeat(table[:, _COLUMN["split"]] == TRAIN, np.diff(offsets))
    counts = np.bincount(np.asarray(data.basket_items)[in_training], minlength=data.n_products)
    counts[:PRODUCT_SPECIALS] = 0
    return counts


def popularity_order(counts: np.ndarray) -> np.ndarray:
    """Real products (rows >= PRODUCT_SPECIALS) by decreasing count, ties by row."""
    return np.argsort(-counts[PRODUCT_SPECIALS:], kind="stable") + PRODUCT_SPECIALS


def fill_with(chosen: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Complete left-packed rankings ``chosen`` [n, k] (-1 after the chosen products) with the first
    products of ``order`` not already chosen. At most k of the first 2k products of ``order`` can be
    chosen in a row, so those 2k candidates always suffice."""
    n, k = chosen.shape
    candidates = order[: 2 * k]
    free = ~(chosen[:, :, None] == candidates[None, None, :]).any(axis=1)  # [n, 2k]
    slot = (chosen != NO_PREDICTION).sum(axis=1, keepdims=True) + np.cumsum(free, axis=1) - 1
    row, column = np.nonzero(free & (slot < k))
    out = chosen.copy()
    out[row, slot[row, column]] = candidates[column]
    return out


def top_by_frequency(
    owner: np.ndarray, values: np.ndarray, distance: np.ndarray, n_owners: int, n_values: int, k: int
) -> np.ndarray:
    """[n_owners, k] per owner, its values by decreasing occurrence count, ties broken by the smallest
    distance (the most recent), then by value; -1 where an owner has fewer than k distinct values."""
    key = owner * n_values + values
    by_key = np.lexsort((distance, key))
    key, distance = key[by_key], distance[by_key]
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(first)
    unique_key, latest = key[starts], distance[starts]
    count = np.diff(np.r_[starts, len(key)])
    who, value = unique_key // n_values, unique_key % n_values
    ranked = np.lexsort((value, latest, -count, who))
    who, value = who[ranked], value[ranked]
    position = np.arange(len(who)) - np.searchsorted(who, who, side="left")
    keep = position < k
    out = np.full((n_owners, k), NO_PREDICTION, dtype=np.int64)
    out[who[keep], position[keep]] = value[keep]
    return out


def top_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """[n, k] the columns of ``scores`` [n, P] with the largest positive scores, best first (ties by
    column), -1 after the last positive one (and beyond P)."""
    width = min(k, scores.shape[1])
    top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    value = np.take_along_axis(scores, top, axis=1)
    # argpartition keeps an arbitrary subset of the scores tied at the cut (the width-th largest); where
    # a positive cut left some out, those rows take their lowest tied columns instead.
    cut = value.min(1, keepdims=True)
    tied = scores == cut
    redo = np.flatnonzero((cut[:, 0] > 0) & (tied.sum(1) > (value == cut).sum(1)))
    if len(redo):
        room = width - (scores[redo] > cut[redo]).sum(1, keepdims=True)
        chosen = (scores[redo] > cut[redo]) | (tied[redo] & (np.cumsum(tied[redo], axis=1) <= room))
        top[redo] = np.nonzero(chosen)[1].reshape(len(redo), width)
        value[redo] = np.take_along_axis(scores[redo], top[redo], axis=1)
    order = np.lexsort((top, -value), axis=1)
    top, value = np.take_along_axis(top, order, axis=1), np.take_along_axis(value, order, axis=1)
    out = np.full((len(scores), k), NO_PREDICTION, dtype=np.int64)
    out[:, :width] = np.where(value > 0, top, NO_PREDICTION)
    return out


# ---------------------------------------------------------------------------------------------- next basket


class GTopFreq:
    """Global popularity: the products in most training baskets, best first, for every target."""

    name = "g_topfreq"

    def __init__(self, data: PreparedData) -> None:
        self.order = popularity_order(training_popularity(data))

    def rank(self, targets: EvaluationTargets, k: int = 20) -> np.ndarray:
        row = np.full(k, NO_PREDICTION, dtype=np.int64)
        row[: min(k, len(self.order))] = self.order[:k]
        return np.tile(row, (len(targets), 1))


class PTopFreq:
    """Personal popularity: the products in most of the customer's earlier baskets; ties go to the most
    recently bought, then to the lower row; the rest of the k slots take global popularity."""

    name = "p_topfreq"

    def __init__(self, data: PreparedData) -> None:
        self.order = popularity_order(training_popularity(data))

    def rank(self, targets: EvaluationTargets, k: int = 20) -> np.ndarray:
        out = np.full((len(targets), k), NO_PREDICTION, dtype=np.int64)
        for select in targets.chunks():
            history = targets.history_items(select)
            real = history.values >= PRODUCT_SPECIALS
            chosen = top_by_frequency(
                history.owner[real], history.values[real], history.distance[real],
                select.stop - select.start, targets.n_products, k,
            )  # fmt: skip
            out[select] = fill_with(chosen, self.order)
        return out


def tifu_vectors(
    history: History, n_baskets: np.ndarray, n_products: int, group_size: int, within_decay: float,
    group_decay: float,
) -> sp.csr_matrix:  # fmt: skip
    """[n, n_products] TIFU user vectors (Hu et al. 2020, section 4) of histories of ``n_baskets``.

    The baskets are cut into k = ceil(n / m) groups of m, counted back from the latest basket (the oldest
    group holds the remainder). A group's vector is the mean over its baskets of rb^j x the basket's
    one-hot items, j = 0 for the group's latest basket; the user vector is the mean over groups of
    rg^i x the group vector, i = 0 for the latest group. Specials get no weight."""
    owner = history.owner
    n = n_baskets[owner]
    back = history.distance - 1
    groups = (n + group_size - 1) // group_size
    group, within = back // group_size, back % group_size
    size = np.where(group < groups - 1, group_size, n - (groups - 1) * group_size)
    weight = within_decay**within * group_decay**group / size / groups
    real = history.values >= PRODUCT_SPECIALS
    shape = (len(n_baskets), n_products)
    return sp.csr_matrix((weight[real], (owner[real], history.values[real])), shape=shape)  # sums repeats


class TIFUKNN:
    """TIFU-KNN: score = alpha x the customer's TIFU vector + (1 - alpha) x the mean TIFU vector of its
    ``neighbours`` nearest customers (Euclidean distance), then the top products, filled with global
    popularity.

    No leakage: the neighbour pool holds one vector per customer with training baskets, built from those
    training baskets only; the target customer's own vector uses its whole history before the target,
    and its own pool vector is not one of its neighbours. Defaults follow the issue (m = 7, rb = 0.9,
    rg = 0.7, k = 300, alpha = 0.7). Distances are computed for ``batch`` targets at a time ([batch,
    customers] dense), so memory stays bounded whatever the split."""

    name = "tifu_knn"

    def __init__(
        self, data: PreparedData, group_size: int = 7, within_decay: float = 0.9, group_decay: float = 0.7,
        neighbours: int = 300, alpha: float = 0.7, batch: int = 512,
    ) -> None:  # fmt: skip
        self.decay = {"group_size": group_size, "within_decay": within_decay, "group_decay": group_decay}
        self.neighbours, self.alpha, self.batch = neighbours, alpha, batch
        self.order = popularity_order(training_popularity(data))
        table = np.asarray(data.basket_table)
        self.customer_of_row = np.cumsum(table[:, _COLUMN["history_baskets"]] == 0) - 1
        train_rows = np.flatnonzero(table[:, _COLUMN["split"]] == TRAIN)
        customer = self.customer_of_row[train_rows]
        last = train_rows[np.r_[customer[1:] != customer[:-1], True]]  # each customer's last training basket
        counts = table[last, _COLUMN["history_baskets"]].astype(np.int64) + 1  # training baskets come first
        self.pool_customers = self.customer_of_row[last]
        pool = tifu_vectors(history_items(data, last + 1, counts), counts, data.n_products, **self.decay)
        self.pool = pool.astype(np.float32).tocsr()
        self.pool_t = self.pool.T.tocsr()
        self.pool_norm2 = np.asarray(self.pool.multiply(self.pool).sum(axis=1)).ravel()

    def _neighbour_mean(self, own: sp.csr_matrix, customers: np.ndarray) -> np.ndarray:
        """[b, n_products] mean pool vector of each row's nearest pool customers, itself excluded."""
        n_pool = self.pool.shape[0]
        k = min(self.neighbours, n_pool - 1)
        if k < 1:
            return np.zeros(own.shape, dtype=np.float32)
        own_norm2 = np.asarray(own.multiply(own).sum(axis=1)).ravel()
        distance2 = own_norm2[:, None] + self.pool_norm2[None, :] - 2 * (own @ self.pool_t).toarray()
        position = np.minimum(np.searchsorted(self.pool_customers, customers), n_pool - 1)
        is_self = self.pool_customers[position] == customers
        distance2[np.flatnonzero(is_self), position[is_self]] = np.inf
        nearest = np.argpartition(distance2, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(len(customers)), k)
        weights = np.full(rows.size, 1.0 / k, dtype=np.float32)
        pick = sp.csr_matrix((weights, (rows, nearest.ravel())), shape=(len(customers), n_pool))
        return (pick @ self.pool).toarray()

    def rank(self, targets: EvaluationTargets, k: int = 20) -> np.ndarray:
        out = np.full((len(targets), k), NO_PREDICTION, dtype=np.int64)
        customers = self.customer_of_row[targets.rows]
        for select in targets.chunks():
            history = targets.history_items(select)
            own = tifu_vectors(history, targets.history_baskets[select], targets.n_products, **self.decay)
            own = own.astype(np.float32).tocsr()
            for start in range(0, own.shape[0], self.batch):
                part = slice(start, start + self.batch)
                mine = own[part]
                neighbours = self._neighbour_mean(mine, customers[select][part])
                scores = self.alpha * mine.toarray() + (1 - self.alpha) * neighbours
                scores[:, :PRODUCT_SPECIALS] = 0
                rows = slice(select.start + start, select.start + start + mine.shape[0])
                out[rows] = fill_with(top_scores(scores, k), self.order)
        return out


# ---------------------------------------------------------------------------------------------- store visit

CALIBRATION_TARGETS = 20_000
"""Training store visits (a reproducible sample) on which each store rule's hit rate is measured."""
VISITED_SMOOTHING = 1.0
MIN_RULE_MASS, MAX_RULE_MASS = 0.51, 0.999
MIN_NEW_SHARE, MAX_NEW_SHARE = 0.01, 0.99


def visit_counts(targets: EvaluationTargets) -> np.ndarray:
    """[n, n_stores] float32 visits of each target's customer to each store in its history."""
    counts = np.zeros((len(targets), targets.n_stores), dtype=np.float32)
    for select in targets.chunks():
        history = targets.history_stores(select)
        n = select.stop - select.start
        flat = np.bincount(history.owner * targets.n_stores + history.values, minlength=n * targets.n_stores)
        counts[select] = flat.reshape(n, targets.n_stores)
    return counts


def primary_store(targets: EvaluationTargets) -> np.ndarray:
    """[n] the store of most earlier visits, ties to the most recently visited."""
    out = np.zeros(len(targets), dtype=np.int64)
    for select in targets.chunks():
        history = targets.history_stores(select)
        n = select.stop - select.start
        out[select] = top_by_frequency(history.owner, history.values, history.distance, n, targets.n_stores, 1)[:, 0]
    return out


def last_store(targets: EvaluationTargets) -> np.ndarray:
    """[n] the store of the latest earlier basket."""
    return np.asarray(targets.data.basket_table[:, _COLUMN["store_row"]])[targets.rows - 1].astype(np.int64)


def rule_distribution(predicted: np.ndarray, visits: np.ndarray, rule_mass: float, new_share: float) -> np.ndarray:
    """[n, n_stores] float32: ``rule_mass`` on the predicted store; of the rest, ``1 - new_share`` over the
    customer's other visited stores in proportion to visits + 1 (additive smoothing) and ``new_share``
    spread evenly over all other stores (a first visit anywhere stays possible; all of it when the
    customer visited no other store). ``rule_mass`` > 0.5, so the predicted store is the strict argmax
    and the ranking's top-1 is the rule's prediction."""
    n, n_stores = visits.shape
    at = np.arange(n)
    others = np.where(visits > 0, visits + VISITED_SMOOTHING, 0).astype(np.float32)
    others[at, predicted] = 0
    total = others.sum(axis=1, keepdims=True)
    rest = 1 - rule_mass
    new = rest * np.where(total > 0, new_share, 1.0)
    p = rest * (1 - new_share) * others / np.where(total > 0, total, 1) + new / max(n_stores - 1, 1)
    p[at, predicted] = rule_mass
    return p.astype(np.float32)


class _StoreRule(ABC):
    """A rule naming one store per target, made a distribution by ``rule_distribution`` with its hit rate
    (``rule_mass``) and the share of its misses that went to a store new to the customer (``new_share``),
    both measured on a sample of training store visits. Subclasses set their fitted state, then call
    ``_calibrate``."""

    name: str

    @abstractmethod
    def predict(self, targets: EvaluationTargets) -> np.ndarray:
        """[n] the store row the rule names for each target."""

    def _calibrate(self, data: PreparedData) -> None:
        sample = EvaluationTargets.from_prepared(data, "train", limit=CALIBRATION_TARGETS, min_products=1)
        predicted, label = self.predict(sample), sample.store_row
        hit = predicted == label
        first_visit = visit_counts(sample)[np.arange(len(sample)), label] == 0
        self.rule_mass = float(np.clip(hit.mean() if len(sample) else 0, MIN_RULE_MASS, MAX_RULE_MASS))
        new = first_visit[~hit].mean() if (~hit).any() else MIN_NEW_SHARE
        self.new_share = float(np.clip(new, MIN_NEW_SHARE, MAX_NEW_SHARE))

    def probabilities(self, targets: EvaluationTargets) -> np.ndarray:
        return rule_distribution(self.predict(targets), visit_counts(targets), self.rule_mass, self.new_share)


class PrimaryStore(_StoreRule):
    """The customer's most visited store so far (ties: the most recent)."""

    name = "primary_store"

    def __init__(self, data: PreparedData) -> None:
        self._calibrate(data)

    def predict(self, targets: EvaluationTargets) -> np.ndarray:
        return primary_store(targets)


class LastStore(_StoreRule):
    """The store of the customer's previous trip."""

    name = "last_store"

    def __init__(self, data: PreparedData) -> None:
        self._calibrate(data)

    def predict(self, targets: EvaluationTargets) -> np.ndarray:
        return last_store(targets)


class MarkovStore(_StoreRule):
    """First-order Markov chain over stores: the most frequent next store after the previous trip's store
    in consecutive training trips of the same customer (ties: the lower row); a previous store never
    left in training falls back to the customer's primary store. Its calibration sample is among the
    transitions it counted, so its hit rate (hence its probabilities' confidence) is slightly optimistic;
    validation-split visits would not be, but the baselines are fitted on the training split alone."""

    name = "markov_store"

    def __init__(self, data: PreparedData) -> None:
        table = np.asarray(data.basket_table)
        rows = np.flatnonzero((table[:, _COLUMN["split"]] == TRAIN) & (table[:, _COLUMN["history_baskets"]] >= 1))
        store = table[:, _COLUMN["store_row"]].astype(np.int64)
        pairs = store[rows - 1] * data.n_stores + store[rows]
        self.transitions = np.bincount(pairs, minlength=data.n_stores**2).reshape(data.n_stores, data.n_stores)
        self._calibrate(data)

    def predict(self, targets: EvaluationTargets) -> np.ndarray:
        counts = self.transitions[last_store(targets)]
        return np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), primary_store(targets))


def next_basket_baselines(data: PreparedData) -> list:
    """The three next-basket baselines, fitted on ``data``'s training split."""
    return [GTopFreq(data), PTopFreq(data), TIFUKNN(data)]


def store_baselines(data: PreparedData) -> list:
    """The three store-visit baselines, fitted and calibrated on ``data``'s training split."""
    return [PrimaryStore(data), LastStore(data), MarkovStore(data)]
