"""Product features fitted on the training co-purchase graph: pseudo-brands and 256-d product embeddings.

Both stages read only ``processed/product_graph_*.parquet``, which the ``product_graph`` stage builds from
the training weeks, so they cannot see validation or test baskets.

Pseudo-brands (``features/pseudo_brands.parquet``)
    LGSR has no brand column, yet substitution and loyalty in grocery run largely along brands and price
    tiers. A pseudo-brand stands in for a brand: products of the same class (PROD_CODE_10) that sit in
    a similar price tier and are bought by the same baskets. Per class, each product gets the features

    - its z-scored log mean unit price within the class (1 dimension, unit variance), and
    - its co-purchase profile: the product's row of the undirected lift-weighted adjacency (partners
      anywhere in the catalog, not only in the class: products of one class seldom share a basket, but
      products of one brand share partners), L2-normalised so popular products do not dominate, reduced
      by truncated SVD to at most ``PROFILE_DIMS`` dimensions and scaled to a total variance of 1, so price
      and basket context weigh the same;

    and is clustered by k-means (k-means++ seeding from a fixed seed, Lloyd iterations) into
    k = max(1, round(n / 6)) clusters, about six products per pseudo-brand. Clusters are numbered by
    ascending mean price (``CL00001-B01`` is the cheapest pseudo-brand of class CL00001). ``confidence`` is
    1 - d1/d2, the distances to the nearest and second-nearest centroid: 0 on the boundary between two
    pseudo-brands, 1 at a centroid; 1.0 where the class has one pseudo-brand (there is no alternative).
    ``price_tier`` is the within-class price tercile by mid-rank (LA lowest, MM, UM highest; equal prices
    share a tier and a one-product class is MM).

Product embeddings (``features/product_embeddings.npy`` + ``product_embedding_index.parquet``)
    A GraphSAGE-style encoder: learned embeddings of PROD_CODE_40/30/20/10 and the pseudo-brand, plus the
    z-scored log price and log training baskets, encoded by a linear layer, then two hops of weighted mean
    aggregation over the undirected co-purchase graph (weights = lift), each ``Linear([self, mean of
    neighbours])``, and an L2-normalised 256-d output. Products without edges get an embedding from their
    own features (their neighbour mean is zero). Training is self-supervised link prediction: positives
    are co-purchase edges, negatives are products drawn uniformly (shared by the positives of a step),
    binary cross-entropy on scaled dot products. Each epoch splits the training edges into message edges
    (the graph the encoder aggregates over) and target edges (the loss), because an edge present in both
    lets the encoder read the answer off its neighbour mean instead of learning what co-purchased
    products share. 10% of the edges (fixed seed) are held out of both to measure the link-prediction
    AUC; the saved embeddings are then computed by the trained encoder over the full graph, so every
    product aggregates all its partners. Training runs on one torch thread (see ``_one_thread``).

    The graph is bounded by the catalog (products x ``top_complements`` edges, ~5,000 x 10 on LGSR)
    however many transactions there are, so re-encoding the whole graph at every step stays cheap at any
    data scale; only the loss is mini-batched over edges. The hyperparameters are ``EmbeddingConfig``;
    they are not part of ``PipelineConfig``, so bump the stage's ``version`` when changing them.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from world_model.errors import RetailSimError
from world_model.pipeline.product_graph import EDGES, NODES
from world_model.pipeline.runner import Stage, StageContext

PSEUDO_BRANDS_FILE = "pseudo_brands.parquet"
EMBEDDINGS_FILE = "product_embeddings.npy"
EMBEDDING_INDEX_FILE = "product_embedding_index.parquet"
EMBEDDING_REPORT_FILE = "product_embedding_report.json"

PRODUCTS_PER_BRAND = 6
"""Target pseudo-brand size: k = max(1, round(class size / 6))."""
PROFILE_DIMS = 4
"""SVD dimensions kept of a class's co-purchase profiles."""
KMEANS_SEED = 0
KMEANS_MAX_ITER = 100
PRICE_TIERS = ("LA", "MM", "UM")
HIERARCHY = ("PROD_CODE_40", "PROD_CODE_30", "PROD_CODE_20", "PROD_CODE_10")


# --- shared graph helpers ----------------------------------------------------------------------------


def _read_nodes(ctx: StageContext) -> pd.DataFrame:
    """Graph nodes sorted by PROD_CODE: row i of every output is the product at row i here."""
    return pd.read_parquet(ctx.artifact("processed", NODES)).sort_values("PROD_CODE", ignore_index=True)


def undirected_edges(nodes: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Edges as unordered node-row pairs ``u < v`` with their lift, each pair once.

    The graph keeps each product's top complements, so a pair may appear in one direction or both; lift
    and shared baskets are symmetric, so either copy carries the same weight.
    """
    codes = nodes["PROD_CODE"].to_numpy()
    src = np.searchsorted(codes, edges["src"].to_numpy())
    dst = np.searchsorted(codes, edges["dst"].to_numpy())
    for found, name in ((src, "src"), (dst, "dst")):
        inside = found < len(codes)
        if not inside.all() or (codes[found[inside]] != edges[name].to_numpy()[inside]).any():
            raise RetailSimError(f"{EDGES}: an edge's {name} is not a node of {NODES}")
    pairs = pd.DataFrame({"u": np.minimum(src, dst), "v": np.maximum(src, dst), "lift": edges["lift"].to_numpy()})
    return pairs.groupby(["u", "v"], as_index=False, sort=True)["lift"].max()


# --- pseudo-brands -----------------------------------------------------------------------------------


def assign_pseudo_brands(nodes: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """One row per node (``nodes`` sorted by PROD_CODE): PROD_CODE, PROD_CODE_10, pseudo_brand,
    price_tier, confidence. See the module docstring for the method."""
    pairs = undirected_edges(nodes, edges)
    both = pd.concat([pairs, pairs.rename(columns={"u": "v", "v": "u"})], ignore_index=True)
    log_price = _log_price(nodes)
    classes = nodes["PROD_CODE_10"].fillna("UNKNOWN").to_numpy()
    brand = np.empty(len(nodes), dtype=object)
    tier = np.empty(len(nodes), dtype=object)
    confidence = np.ones(len(nodes))
    for cls in np.unique(classes):
        rows = np.flatnonzero(classes == cls)
        tier[rows] = _price_tiers(log_price[rows])
        features = np.column_stack([_zscore(log_price[rows]), _profile_features(rows, both)])
        k = max(1, round(len(rows) / PRODUCTS_PER_BRAND))
        labels, confidence[rows] = _kmeans(features, k, np.random.default_rng(KMEANS_SEED))
        brand[rows] = [f"{cls}-B{label + 1:02d}" for label in labels]
    return pd.DataFrame(
        {
            "PROD_CODE": nodes["PROD_CODE"],
            "PROD_CODE_10": nodes["PROD_CODE_10"],
            "pseudo_brand": brand.astype(str),
            "price_tier": tier.astype(str),
            "confidence": confidence,
        }
    )


def _log_price(nodes: pd.DataFrame) -> np.ndarray:
    """log mean unit price, rounded to 9 decimals: the graph stage's prices are parallel sums that differ
    in the last bit between runs, and that noise must not break ties between equal prices (tiers)."""
    price = np.nan_to_num(nodes["mean_unit_price"].to_numpy(float), nan=1.0)
    return np.round(np.log(np.clip(price, 1e-6, None)), 9)


def _zscore(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def _price_tiers(log_price: np.ndarray) -> np.ndarray:
    """Within-class terciles by mid-rank (rank - 0.5) / n, so equal prices share a tier."""
    quantile = (pd.Series(log_price).rank(method="average").to_numpy() - 0.5) / len(log_price)
    return np.asarray(PRICE_TIERS)[np.minimum((quantile * 3).astype(int), 2)]


def _profile_features(rows: np.ndarray, both: pd.DataFrame) -> np.ndarray:
    """The class's L2-normalised lift profiles reduced by truncated SVD, scaled to total variance 1.

    Returns [len(rows), d] with d <= PROFILE_DIMS (0 columns when the class has no edges).
    """
    sub = both[both["u"].isin(rows)]
    partners = np.unique(sub["v"].to_numpy())
    dims = min(PROFILE_DIMS, len(rows) - 1, len(partners))
    if dims <= 0:
        return np.zeros((len(rows), 0))
    profile = np.zeros((len(rows), len(partners)))
    profile[np.searchsorted(rows, sub["u"].to_numpy()), np.searchsorted(partners, sub["v"].to_numpy())] = sub["lift"]
    norms = np.linalg.norm(profile, axis=1, keepdims=True)
    profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)
    u, s, _ = np.linalg.svd(profile, full_matrices=False)
    coords = u[:, :dims] * s[:dims]
    total_var = coords.var(axis=0).sum()
    return coords / np.sqrt(total_var) if total_var > 0 else coords


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (k-means++ seeding from ``rng``, Lloyd iterations).

    Returns labels renumbered 0.. by ascending centroid of the first feature (the price), and the
    confidence 1 - d1/d2 per point (1.0 when only one cluster is left non-empty).
    """
    n = len(x)
    k = min(k, n)
    centroids = x[[rng.integers(n)]]
    while len(centroids) < k:
        nearest = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).min(1)
        pick = rng.choice(n, p=nearest / nearest.sum()) if nearest.sum() > 0 else rng.integers(n)
        centroids = np.vstack([centroids, x[pick]])
    labels = np.full(n, -1)
    for _ in range(KMEANS_MAX_ITER):
        new_labels = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        if (new_labels == labels).all():
            break
        labels = new_labels
        for j in range(k):
            if (labels == j).any():  # an empty cluster keeps its centroid and may win points back
                centroids[j] = x[labels == j].mean(0)
    used = np.unique(labels)
    centroids = centroids[used]
    distances = np.sqrt(((x[:, None, :] - centroids[None]) ** 2).sum(-1))
    labels = distances.argmin(1)
    if len(used) == 1:
        confidence = np.ones(n)
    else:
        nearest_two = np.sort(distances, axis=1)[:, :2]
        confidence = 1.0 - np.divide(
            nearest_two[:, 0], nearest_two[:, 1], out=np.ones(n), where=nearest_two[:, 1] > 0
        )
    order = np.argsort(centroids[:, 0], kind="stable")
    return np.argsort(order)[labels], np.clip(confidence, 0.0, 1.0)


def build_pseudo_brands(ctx: StageContext) -> dict[str, int]:
    nodes = _read_nodes(ctx)
    edges = pd.read_parquet(ctx.artifact("processed", EDGES))
    brands = assign_pseudo_brands(nodes, edges)
    brands.to_parquet(ctx.out / PSEUDO_BRANDS_FILE, index=False)
    return {PSEUDO_BRANDS_FILE: len(brands)}


# --- product embeddings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingConfig:
    """Hyperparameters of the product embedding model (bump PRODUCT_EMBEDDINGS.version when changed)."""

    dim: int = 256
    """Output size: the product vector the basket model and the scenario catalog consume."""
    hidden: int = 64
    """Width of the input encoder and the first aggregation hop (128 trained less stably on LGSR)."""
    category_dim: int = 16
    """Size of each learned hierarchy / pseudo-brand embedding (5 of them feed the encoder)."""
    epochs: int = 30
    """Passes over the training edges (each with a fresh message / target split)."""
    lr: float = 0.01
    """Adam learning rate."""
    negatives: int = 64
    """Products drawn uniformly per step; every positive's anchor is scored against all of them. Shared
    negatives make the negative scores one matrix product instead of a gather per pair."""
    batch_edges: int = 4096
    """Positive (directed) edges per optimiser step; each step re-encodes the full graph."""
    logit_scale: float = 10.0
    """Dot products of unit vectors lie in [-1, 1]; scaled so the sigmoid can approach 0 and 1."""
    supervision_fraction: float = 0.3
    """Share of the training edges used as link targets in an epoch; the rest carry the messages. An edge
    that is both a target and a message lets the encoder read the answer from the neighbour mean, which
    fits training edges and fails on unseen ones (held-out AUC 0.51 against 0.69 on training edges)."""
    holdout_fraction: float = 0.1
    """Share of undirected edges held out of training to measure the link-prediction AUC."""
    eval_negatives: int = 10
    """Random pairs per held-out edge in the AUC."""
    seed: int = 0
    """Seed of the initialisation, the held-out split and the negatives."""


class ProductSAGE(nn.Module):
    """Hierarchy embeddings + numeric features -> two mean-aggregation hops -> L2-normalised vector."""

    def __init__(self, vocab_sizes: list[int], numeric: int, config: EmbeddingConfig) -> None:
        super().__init__()
        self.categories = nn.ModuleList(nn.Embedding(size, config.category_dim) for size in vocab_sizes)
        self.encode = nn.Linear(len(vocab_sizes) * config.category_dim + numeric, config.hidden)
        self.hop1 = nn.Linear(2 * config.hidden, config.hidden)
        self.hop2 = nn.Linear(2 * config.hidden, config.dim)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor, adjacency: MeanAdjacency) -> torch.Tensor:
        # codes [N, C] long, numeric [N, F] float, adjacency: the [N, N] mean operator
        parts = [table(codes[:, i]) for i, table in enumerate(self.categories)]
        h = F.relu(self.encode(torch.cat([*parts, numeric], dim=1)))  # [N, hidden]
        h = F.relu(self.hop1(torch.cat([h, adjacency @ h], dim=1)))  # [N, hidden]
        z = self.hop2(torch.cat([h, adjacency @ h], dim=1))  # [N, dim]
        return F.normalize(z, dim=1)


class MeanAdjacency:
    """The lift-weighted mean operator of an undirected graph, as a sparse [n, n] matrix and its transpose.

    Rows sum to 1 (0 for a product without edges). Autograd through a sparse CSR product re-sorts the
    matrix for the transpose at every backward pass, the bulk of a training step; keeping both
    orientations makes the backward pass another sparse product.
    """

    def __init__(self, pairs: pd.DataFrame, n: int) -> None:
        u, v, w = pairs["u"].to_numpy(), pairs["v"].to_numpy(), pairs["lift"].to_numpy(float)
        rows, cols, weights = np.concatenate([u, v]), np.concatenate([v, u]), np.concatenate([w, w])
        weights = weights / np.bincount(rows, weights=weights, minlength=n)[rows]
        self.forward_matrix = _csr(rows, cols, weights, n)
        self.transposed = _csr(cols, rows, weights, n)

    def __matmul__(self, h: torch.Tensor) -> torch.Tensor:
        return _SparseMean.apply(h, self)


class _SparseMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, adjacency: MeanAdjacency) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency.forward_matrix @ h

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.adjacency.transposed @ grad, None


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int) -> torch.Tensor:
    order = np.lexsort((cols, rows))
    crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    with warnings.catch_warnings():  # CSR is "beta" in torch; products with dense matrices are all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow.astype(np.int64)),
            torch.from_numpy(cols[order].astype(np.int64)),
            torch.from_numpy(values[order].astype(np.float32)),
            size=(n, n),
            check_invariants=False,
        )


def _node_inputs(nodes: pd.DataFrame, brands: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Category codes [N, 5] (hierarchy levels, pseudo-brand), numeric [N, 2] z-scored logs, vocab sizes."""
    columns = [nodes[level].fillna("UNKNOWN").to_numpy() for level in HIERARCHY]
    columns.append(brands["pseudo_brand"].to_numpy())
    coded = [np.unique(column, return_inverse=True) for column in columns]
    codes = torch.from_numpy(np.column_stack([inverse for _, inverse in coded]).astype(np.int64))
    price = _log_price(nodes)
    baskets = np.log1p(nodes["train_baskets"].to_numpy(float))
    numeric = torch.from_numpy(np.column_stack([_zscore(price), _zscore(baskets)]).astype(np.float32))
    return codes, numeric, [len(values) for values, _ in coded]


def link_auc(z: torch.Tensor, positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a held-out edge scores above a random pair (Mann-Whitney, ties count half)."""
    pos = _pair_scores(z, positives)
    neg = _pair_scores(z, negatives)
    ranks = pd.Series(np.concatenate([pos, neg])).rank(method="average").to_numpy()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _pair_scores(z: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
    index = torch.from_numpy(np.array(pairs, dtype=np.int64))  # a writable copy: pandas hands out read-only views
    return (z[index[:, 0]] * z[index[:, 1]]).sum(1).numpy()


def train_product_embeddings(
    nodes: pd.DataFrame, edges: pd.DataFrame, brands: pd.DataFrame, config: EmbeddingConfig = EmbeddingConfig()
) -> tuple[np.ndarray, dict]:
    """Train the encoder on the graph (nodes sorted by PROD_CODE, brands aligned with them).

    Returns float32 embeddings [len(nodes), config.dim], row i for nodes row i, and a report with the
    final training loss and the held-out link-prediction AUC (None when the graph has under 10 edges).
    """
    with _one_thread():
        return _train(nodes, edges, brands, config)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the caller's setting.

    At ~5,000 x 64 the tensors are too small to gain from threads, and on cores shared with other work
    OpenMP's spinning threads made a training step 2-5x slower. One thread also makes the summation
    order, hence the embeddings, independent of the machine's core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(
    nodes: pd.DataFrame, edges: pd.DataFrame, brands: pd.DataFrame, config: EmbeddingConfig
) -> tuple[np.ndarray, dict]:
    started = time.perf_counter()
    n = len(nodes)
    pairs = undirected_edges(nodes, edges)
    rng = np.random.default_rng(config.seed)
    shuffled = rng.permutation(len(pairs))
    held = int(round(config.holdout_fraction * len(pairs))) if len(pairs) >= 10 else 0
    heldout, train = pairs.iloc[np.sort(shuffled[:held])], pairs.iloc[np.sort(shuffled[held:])]
    codes, numeric, vocab_sizes = _node_inputs(nodes, brands)
    generator = torch.Generator().manual_seed(config.seed)
    loss_value = float("nan")
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = ProductSAGE(vocab_sizes, numeric.shape[1], config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    supervised = int(round(config.supervision_fraction * len(train)))
    for _ in range(config.epochs if supervised else 0):
        order = rng.permutation(len(train))
        targets, messages = train.iloc[order[:supervised]], train.iloc[order[supervised:]]
        adjacency = MeanAdjacency(messages, n)
        # Both directions, so every endpoint is the anchor of its share of negatives.
        src = torch.from_numpy(np.concatenate([targets["u"], targets["v"]]).astype(np.int64))
        dst = torch.from_numpy(np.concatenate([targets["v"], targets["u"]]).astype(np.int64))
        for batch in torch.randperm(len(src), generator=generator).split(config.batch_edges):
            z = model(codes, numeric, adjacency)  # [N, dim]
            anchor = z.index_select(0, src[batch])  # [B, dim]
            partner = z.index_select(0, dst[batch])  # [B, dim]
            random_products = z.index_select(0, torch.randint(n, (config.negatives,), generator=generator))  # [M, dim]
            positive = config.logit_scale * (anchor * partner).sum(1)  # [B]
            negative = config.logit_scale * anchor @ random_products.T  # [B, M]
            loss = F.binary_cross_entropy_with_logits(
                positive, torch.ones_like(positive)
            ) + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
    with torch.no_grad():
        auc = None
        if held:
            z = model(codes, numeric, MeanAdjacency(train, n))
            positives = heldout[["u", "v"]].to_numpy()
            anchors = np.repeat(positives[:, 0], config.eval_negatives)
            negatives = np.column_stack([anchors, rng.integers(n, size=len(anchors))])
            auc = link_auc(z, positives, negatives)
        embeddings = model(codes, numeric, MeanAdjacency(pairs, n)).numpy()  # float32
    report = {
        "final_loss": None if np.isnan(loss_value) else round(loss_value, 6),
        "heldout_auc": None if auc is None else round(auc, 6),
        "epochs": config.epochs,
        "seconds": round(time.perf_counter() - started, 3),
        "products": n,
        "edges": len(pairs),
        "heldout_edges": held,
        "isolated_products": int(n - np.unique(pairs[["u", "v"]].to_numpy()).size),
        "config": asdict(config),
    }
    return embeddings, report


def build_product_embeddings(ctx: StageContext) -> dict[str, int]:
    nodes = _read_nodes(ctx)
    edges = pd.read_parquet(ctx.artifact("processed", EDGES))
    brands = pd.read_parquet(ctx.artifact("features", PSEUDO_BRANDS_FILE)).set_index("PROD_CODE")
    brands = brands.reindex(nodes["PROD_CODE"]).reset_index()
    if brands["pseudo_brand"].isna().any():
        raise RetailSimError(f"{PSEUDO_BRANDS_FILE}: products of {NODES} without a pseudo-brand (stale artifact?)")
    embeddings, report = train_product_embeddings(nodes, edges, brands)
    np.save(ctx.out / EMBEDDINGS_FILE, embeddings)
    pairs = undirected_edges(nodes, edges)
    degree = np.bincount(np.concatenate([pairs["u"], pairs["v"]]), minlength=len(nodes))
    index = pd.DataFrame(
        {"PROD_CODE": nodes["PROD_CODE"], "row": np.arange(len(nodes), dtype=np.int32), "degree": degree}
    )
    index.to_parquet(ctx.out / EMBEDDING_INDEX_FILE, index=False)
    (ctx.out / EMBEDDING_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return {EMBEDDINGS_FILE: len(embeddings), EMBEDDING_INDEX_FILE: len(index), EMBEDDING_REPORT_FILE: 1}


PSEUDO_BRANDS = Stage(
    name="pseudo_brands",
    section="features",
    outputs=(PSEUDO_BRANDS_FILE,),
    run=build_pseudo_brands,
    depends_on=("product_graph",),
)
PRODUCT_EMBEDDINGS = Stage(
    name="product_embeddings",
    section="features",
    outputs=(EMBEDDINGS_FILE, EMBEDDING_INDEX_FILE, EMBEDDING_REPORT_FILE),
    run=build_product_embeddings,
    depends_on=("product_graph", "pseudo_brands"),
)
