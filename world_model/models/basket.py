"""The basket world model: which products a customer buys on a trip, given everything known before it.

    context  T1 customer 192 | T3 time 64 | T5 store 96 | T6 trip 48  = 400 -> Linear -> d      (1 token)
    items    T2 product 256 | T4 price 64 = 320 -> Linear -> d, + basket-distance and age embeddings
    encoder  Mamba (n_layers, d) over [context; history items], oldest item first          [B, 1 + L, d]
             (``context_position="decoder"``: over the history items alone, [B, L, d])
    decoder  Transformer (self-attention over its queries + cross-attention to the encoder)
             queries: ``n_queries`` learned slots (next basket) or the target basket's masked items (masked)
             memory: the encoder states (``"decoder"``: [context; encoder states], context added to the queries)
    heads    product logits over the vocabulary (PAD/UNK/MASK included, never predicted)
             + basket size, mission type, mission focus, price sensitivity (from the first query)

Where the context enters (``BasketModelConfig.context_position``) decides what a simulator can reuse.
With ``"encoder"`` (the first layout, kept for its checkpoints) the context token leads the Mamba sequence,
so every history state depends on the trip's date and recency and a simulated week has to run the whole
encoder again. With ``"decoder"`` the encoder reads the history alone,
with item ages counted from the history's latest basket (the weeks since that basket are in T3), so a
shopper's history encoding is the same for all of their later trips and ``world_model.models.history_cache``
computes it once; a trip then costs the decoder over the cached states (0.092 GFLOP of matrix products
at full size with 256 history items, against 4.14 for the whole forward: ``benchmarks/forward_flops.py``). Both layouts are equally
accurate on the real sample (docs/world_models.md), so new models default to ``"decoder"``.

Product logits are the sum of two scores:

- explore: ``summary . out(T2_v) + bias_v`` for every product v of the vocabulary (what anyone might buy);
- repeat: for the customer's own products (``history.HistoryFeatures.products``), an MLP over the explicit
  history statistics of that product (counts, recency, cycle, store and weekday shares, P-TopFreq rank)
  and the elementwise product of the decoder summary with the product's output embedding. This is a
  pointer/repeat head in the spirit of RepeatNet (Ren et al., 2019): in the real sample most of a basket
  was bought by the customer before, and the decoder decides how much each of them matters this trip.

The same backbone trains with two objectives (``BasketModelConfig.objective`` picks the queries):
``next_basket`` (multi-label softmax over the vocabulary, or a sampled softmax) is the one the simulator
uses; ``masked`` predicts BERT-masked items of the target basket from the rest of it and the history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from world_model.models.history import PRODUCT_FEATURES
from world_model.models.mamba import MambaConfig, MambaEncoder
from world_model.pipeline.model_inputs import T1_DIM, T2_DIM, T3_DIM, T4_DIM, T5_DIM, T6_DIM
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS

TRIP_HEADS = ("BASKET_SIZE", "BASKET_TYPE", "BASKET_DOMINANT_MISSION", "BASKET_PRICE_SENSITIVITY")
"""Auxiliary heads, by the trip attribute they predict (basket size, mission type, focus, price sensitivity)."""
MAX_DISTANCE = 64
"""Basket distances (1 = the latest earlier basket) at or beyond this share one embedding."""
OBJECTIVES = ("next_basket", "masked")
CONTEXT_POSITIONS = ("encoder", "decoder")


@dataclass
class BasketModelConfig:
    """Sizes of the basket model. ``full()`` is the design's size, ``small()`` trains on a CPU."""

    n_products: int
    """Rows of the product vocabulary, PAD/UNK/MASK included (``PreparedData.n_products``)."""
    trip_classes: dict[str, int] = field(default_factory=dict)
    """Classes of each auxiliary head (the trip code books' sizes); a missing head is not built."""
    d_model: int = 512
    """Width of the encoder, decoder and output embeddings."""
    encoder_layers: int = 4
    """Mamba layers over the history's items (``decoder`` layout) or [context; items] (``encoder``)."""
    d_state: int = 16
    """Mamba state size per inner channel."""
    decoder_layers: int = 2
    """Transformer decoder layers (self-attention + cross-attention + FFN)."""
    n_heads: int = 8
    """Attention heads in the decoder."""
    ffn: int = 2048
    """Decoder feed-forward width."""
    n_queries: int = 4
    """Learned query slots of the next-basket decoder."""
    dropout: float = 0.1
    """Dropout in the fusions, the decoder and the repeat head."""
    repeat_hidden: int = 64
    """Hidden width of the repeat head's MLP."""
    max_sequence_items: int = 256
    """History items fed to the encoder (the latest ones); the repeat head's statistics use all history."""
    finetune_embeddings: bool = False
    """Train the T2 product table (otherwise frozen, the pipeline's GraphSAGE vectors)."""
    objective: str = "next_basket"
    """``next_basket`` or ``masked`` (module docstring)."""
    context_position: str = "decoder"
    """``decoder`` (the context joins the decoder's memory and queries, so the history encoding can be
    cached) or ``encoder`` (the context token leads the Mamba sequence: the first layout; module
    docstring). Checkpoints written before the option existed are ``encoder`` (``from_dict``)."""

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.context_position not in CONTEXT_POSITIONS:
            raise ValueError(f"context_position must be one of {CONTEXT_POSITIONS}, got {self.context_position!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")

    @classmethod
    def full(cls, **overrides) -> BasketModelConfig:
        """The design's size: d 512, 4 Mamba layers, 2 decoder layers with FFN 2048."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> BasketModelConfig:
        """A size that trains on 2 CPU cores in minutes per epoch on the real sample."""
        return cls(**{"d_model": 64, "encoder_layers": 2, "decoder_layers": 1, "n_heads": 4, "ffn": 256,
                      "max_sequence_items": 64, **overrides})  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BasketModelConfig:
        """The config of a checkpoint's ``model_config``; one without ``context_position`` predates the
        option, so its context led the encoder."""
        return cls(**{"context_position": "encoder", **values})


class RepeatHead(nn.Module):
    """Score of each of the customer's own products: MLP([history statistics, summary * product])."""

    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(
            nn.Linear(len(PRODUCT_FEATURES) + d_model, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, queries: Tensor, candidate_embeddings: Tensor, features: Tensor) -> Tensor:
        """Scores [R] of R candidates: ``queries`` [R, d] is ``self.query`` of each candidate's sample
        summary (computed per sample, then spread to its candidates by the caller), candidate_embeddings
        [R, d], features [R, F]."""
        return self.mlp(torch.cat([features, queries * candidate_embeddings], dim=-1)).squeeze(-1)

    def score_slots(self, queries: Tensor, candidate_embeddings: Tensor, features: Tensor) -> Tensor:
        """``forward``'s scores [B, H] for every slot of B samples: ``queries`` [B, d] (one a sample),
        candidate_embeddings [B, H, d], features [B, H, F]. The query is broadcast over the slots and the
        first layer applied to the features and to the products separately (its weight split by
        columns), so neither the spread queries nor the concatenation is materialized: B x H x d values
        twice, the largest tensors of a full-size forward after the history states. Equal to
        ``forward`` up to rounding (the first layer's sum is split in two)."""
        first = self.mlp[0]
        n_features = features.shape[-1]
        products = candidate_embeddings * queries.unsqueeze(1)  # [B, H, d]
        hidden = F.linear(features, first.weight[:, :n_features], first.bias) + F.linear(products, first.weight[:, n_features:])
        return self.mlp[1:](hidden).squeeze(-1)


class BasketWorldModel(nn.Module):
    """Product logits [B, V] and trip-head logits for a batch (keys in ``forward``'s docstring)."""

    def __init__(self, config: BasketModelConfig, products: np.ndarray, customers: np.ndarray,
                 stores: np.ndarray) -> None:  # fmt: skip
        super().__init__()
        self.config = config
        d = config.d_model
        self.products = nn.Embedding.from_pretrained(torch.tensor(np.asarray(products)), freeze=not config.finetune_embeddings)
        self.customers = nn.Embedding.from_pretrained(torch.tensor(np.asarray(customers)), freeze=True)
        self.stores = nn.Embedding.from_pretrained(torch.tensor(np.asarray(stores)), freeze=True)
        if self.products.num_embeddings != config.n_products:
            raise ValueError(f"products table has {self.products.num_embeddings} rows, config says {config.n_products}")
        self.context_fusion = nn.Sequential(nn.Linear(T1_DIM + T3_DIM + T5_DIM + T6_DIM, d), nn.GELU(),
                                            nn.Dropout(config.dropout), nn.Linear(d, d))  # fmt: skip
        self.product_fusion = nn.Linear(T2_DIM + T4_DIM, d)
        self.distance_embedding = nn.Embedding(MAX_DISTANCE + 1, d)
        self.age = nn.Linear(1, d)
        self.encoder = MambaEncoder(MambaConfig(d_model=d, n_layers=config.encoder_layers, d_state=config.d_state))
        if config.objective == "masked":  # only what the objective uses: DDP requires every parameter to get a gradient
            self.target_fusion = nn.Linear(T2_DIM, d)
        else:
            self.queries = nn.Parameter(torch.randn(config.n_queries, d) * 0.02)
            self.repeat = RepeatHead(d, config.repeat_hidden, config.dropout)
        layer = nn.TransformerDecoderLayer(d, config.n_heads, config.ffn, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)  # fmt: skip
        self.decoder = nn.TransformerDecoder(layer, config.decoder_layers, norm=nn.LayerNorm(d))
        self.output = nn.Linear(T2_DIM, d)
        self.output_bias = nn.Parameter(torch.zeros(config.n_products))
        self.trip_heads = nn.ModuleDict({name: nn.Linear(d, k) for name, k in config.trip_classes.items() if k > 0})

    # ------------------------------------------------------------------------------------------ pieces

    def context_token(self, batch: dict[str, Tensor]) -> Tensor:
        """The trip's context (T1, T3, T5, T6) fused into one token [B, d]."""
        context = torch.cat([self.customers(batch["customer"]), batch["t3"], self.stores(batch["store"]), batch["t6"]], -1)
        return self.context_fusion(context)

    def item_tokens(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """History item tokens [B, L, d] and their validity [B, L]. Ages are weeks before the target
        (``encoder``) or before the history's latest basket (``decoder``: independent of the target)."""
        items, real = batch["items"], batch["item_basket"] > 0  # [B, L]
        weeks = batch["item_weeks"]
        if self.config.context_position == "decoder":
            latest = weeks.masked_fill(~real, float("inf")).amin(1, keepdim=True)  # [B, 1]; inf: no history
            weeks = torch.where(real, weeks - latest, torch.zeros_like(weeks))
        tokens = self.product_fusion(torch.cat([self.products(items), batch["t4"]], -1))  # [B, L, d]
        distance = batch["item_basket"].clamp(max=MAX_DISTANCE)
        return tokens + self.distance_embedding(distance) + self.age(torch.log1p(weeks).unsqueeze(-1)), real

    def encode_history(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(``decoder`` layout) The history's encoder states [B, L, d] and validity [B, L]: what
        ``HistoryCache`` keeps, since no input of it depends on the target trip."""
        tokens, real = self.item_tokens(batch)
        return self.encoder(tokens, padding_mask=real), real

    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The decoder's memory [B, 1 + L, d] and its validity [B, 1 + L] (True = real): the encoder over
        [context; items] (``encoder``) or [context; the encoder over the items] (``decoder``)."""
        context = self.context_token(batch).unsqueeze(1)  # [B, 1, d]
        if self.config.context_position == "decoder":
            states, real = self.encode_history(batch)
            return torch.cat([context, states], 1), torch.cat([torch.ones_like(real[:, :1]), real], 1)
        tokens, real = self.item_tokens(batch)
        mask = torch.cat([torch.ones_like(real[:, :1]), real], 1)
        return self.encoder(torch.cat([context, tokens], 1), padding_mask=mask), mask

    def query_tokens(self, batch: dict[str, Tensor], context: Tensor) -> tuple[Tensor, Tensor | None]:
        """The decoder's queries [B, Q, d] and their padding [B, Q] (or None): the learned slots (plus the
        context [B, d] in the ``decoder`` layout) or, masked objective, the target's items."""
        if self.config.objective == "masked":
            queries = self.target_fusion(self.products(batch["basket_input"]))  # [B, M, d]
            padding = batch["basket_input"] == 0
        else:
            queries, padding = self.queries.unsqueeze(0).expand(context.shape[0], -1, -1), None
        if self.config.context_position == "decoder":
            queries = queries + context.unsqueeze(1)
        return queries, padding

    def decode(self, batch: dict[str, Tensor], states: Tensor, mask: Tensor) -> Tensor:
        """Decoder outputs [B, Q, d] over the memory ``states`` [B, 1 + L, d] (its first token is the
        context in the ``decoder`` layout)."""
        queries, query_padding = self.query_tokens(batch, states[:, 0])
        return self.decoder(queries, states, tgt_key_padding_mask=query_padding, memory_key_padding_mask=~mask)

    def output_embeddings(self) -> Tensor:
        return self.output(self.products.weight)  # [V, d]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``batch``: customer [B], store [B], t3 [B, 64], t6 [B, 48], items/item_basket [B, L] long,
        item_weeks [B, L] float, t4 [B, L, 64], candidates [B, H] long (0 = none), candidate_features
        [B, H, F]; masked objective also basket_input [B, M]. Returns ``logits`` [B, V] (next basket; -inf
        on PAD/UNK/MASK) or ``masked_logits`` [B, M, V], ``summary`` [B, d] and one [B, k] per trip head."""
        states, mask = self.encode(batch)
        decoded = self.decode(batch, states, mask)
        out_embeddings = self.output_embeddings()
        summary = decoded[:, 0] if self.config.objective == "masked" else decoded.mean(1)
        result = {"summary": summary, "encoder_summary": (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)}
        for name, head in self.trip_heads.items():
            result[name] = head(decoded[:, 0])
        if self.config.objective == "masked":
            result["masked_logits"] = decoded @ out_embeddings.T + self.output_bias  # [B, M, V]
            real = (batch["targets"] > 0).unsqueeze(-1)
            target_tokens = self.target_fusion(self.products(batch["targets"]))
            result["basket_embedding"] = (target_tokens * real).sum(1) / real.sum(1).clamp(min=1)  # [B, d]
            return result
        result["logits"] = self.product_logits(summary, batch["candidates"], batch["candidate_features"], out_embeddings)
        return result

    def product_logits(self, summary: Tensor, candidates: Tensor, features: Tensor,
                       out_embeddings: Tensor | None = None, packed: bool | None = None) -> Tensor:  # fmt: skip
        """Explore logits for the whole vocabulary plus the repeat head's scores at the candidates: [B, V].

        ``packed`` (default: off the GPU) scores the real candidates only: padding is a large share of the
        slots (~46% in the shipped scenario's population; the cached forward 1.29x faster on a CPU), but
        finding them (``nonzero``) makes the host wait for the device and gives shapes that vary, so on CUDA
        the repeat head scores every slot and masks the padding. Both give the same logits."""
        out_embeddings = self.output_embeddings() if out_embeddings is None else out_embeddings
        logits = summary @ out_embeddings.T + self.output_bias  # [B, V]
        real = candidates >= PRODUCT_SPECIALS
        queries = self.repeat.query(summary)  # [B, d]
        if packed if packed is not None else not candidates.is_cuda:
            # flat (sample, slot) positions and index_select: on a CPU the gathers take a fifth of what
            # advanced indexing (queries[owner], features[owner, slot]) takes, the same values
            slots = real.reshape(-1).nonzero().squeeze(1)  # [R]
            owner = torch.div(slots, candidates.shape[1], rounding_mode="floor")
            products = candidates.reshape(-1).index_select(0, slots)
            repeat = self.repeat(queries.index_select(0, owner), out_embeddings.index_select(0, products),
                                 features.reshape(-1, features.shape[-1]).index_select(0, slots))  # [R]
            logits = logits.index_put((owner, products), repeat.to(logits.dtype), accumulate=True)
        else:  # broadcast, not gathered: the gradient is a plain sum (index backward adds atomically on CUDA)
            repeat = self.repeat.score_slots(queries, out_embeddings[candidates], features)
            repeat = repeat.masked_fill(~real, 0.0).to(logits.dtype)
            logits = logits.scatter_add(1, candidates, repeat)
        logits[:, :PRODUCT_SPECIALS] = float("-inf")
        return logits


# ---------------------------------------------------------------------------------------------- losses


def multilabel_softmax_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch of -(1/|T|) sum_{t in T} log softmax(logits)_t, T = the target's real products
    (PAD/UNK/MASK ignored): a listwise loss that ranks every product of the basket above the others."""
    real = targets >= PRODUCT_SPECIALS  # [B, M]
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(1, targets).masked_fill(~real, 0.0)  # [B, M]
    per_sample = -log_probs.sum(1) / real.sum(1).clamp(min=1)
    if real.any():
        return per_sample[real.any(1)].mean()
    # no real product in the batch (baskets of UNK only): 0, still in the graph; the -inf logits of the
    # special rows (and the sampled loss's dropped products) are left out, since -inf x 0 is NaN
    return logits.masked_fill(~torch.isfinite(logits), 0.0).sum() * 0.0


def sampled_softmax_loss(logits: Tensor, targets: Tensor, candidates: Tensor, negatives: int,
                         generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """The multi-label softmax restricted to the targets, the customer's candidates and ``negatives``
    uniformly drawn products shared by the batch: a cheaper loss for a large vocabulary."""
    vocab = logits.shape[1]
    drawn = torch.randint(PRODUCT_SPECIALS, vocab, (negatives,), device=logits.device, generator=generator)
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep[:, drawn] = True
    keep.scatter_(1, candidates, True)
    keep.scatter_(1, targets, True)
    keep[:, :PRODUCT_SPECIALS] = False
    return multilabel_softmax_loss(logits.masked_fill(~keep, float("-inf")), targets)


def trip_head_loss(outputs: dict[str, Tensor], labels: dict[str, Tensor]) -> Tensor:
    """Mean over the trip heads with a known label in the batch of their cross-entropy; label -1 (unknown)
    is ignored. A head with none still enters the graph (at 0): under DistributedDataParallel every
    parameter must get a gradient on every rank, and leaving the head out failed the reduction."""
    names = [name for name in labels if name in outputs]
    if not names:
        return next(iter(outputs.values())).sum() * 0.0
    known = {name: labels[name] >= 0 for name in names}
    losses = [F.cross_entropy(outputs[name].float(), labels[name], ignore_index=-1, reduction="sum")
              / known[name].sum().clamp(min=1) for name in names]  # fmt: skip
    return torch.stack(losses).sum() / max(sum(bool(known[name].any()) for name in names), 1)


def focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal loss (Lin et al., 2017) over a softmax: cross-entropy scaled by (1 - p_true)^gamma; -100 ignored."""
    flat, flat_labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    chosen = flat_labels != -100
    if not chosen.any():
        return logits.sum() * 0.0
    log_p = torch.log_softmax(flat[chosen], -1).gather(1, flat_labels[chosen].unsqueeze(1)).squeeze(1)
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def basket_contrastive_loss(summary: Tensor, basket_embedding: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE between each sample's history summary and its own target basket's mean product embedding,
    the other baskets of the batch as negatives."""
    a, b = F.normalize(summary.float(), dim=-1), F.normalize(basket_embedding.float(), dim=-1)
    logits = a @ b.T / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def top_k_products(logits: Tensor, k: int) -> Tensor:
    """The k highest-scoring products [B, k] (PAD/UNK/MASK are -inf, so never chosen while k < V - 3)."""
    return torch.topk(logits, min(k, logits.shape[1] - PRODUCT_SPECIALS), dim=1).indices
