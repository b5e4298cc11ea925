"""Next-basket logits of many trips over a fixed set of shopper histories, the history encoded once.

A simulator asks the basket model about the same shoppers week after week; their histories do not change
(the environment keeps them as in the data), only the trip's context does (date, weeks since the last
trip, store, trip mix). In the ``context_position="decoder"`` layout the Mamba encoder reads the history
alone, so its states can be computed once per history (``HistoryCache``) and a trip costs the decoder only.

The cache keeps the encoder states themselves, [N, L, d], not the decoder's keys and values per layer
([N, L, d] twice per layer). The cross-attention is computed on the states directly, with the key and
value projections folded into the query and the output (the "absorbed" form of multi-head latent
attention): for head h with query q_h, score_j = q_h . (W_k,h s_j + b_k,h) / sqrt(d_h), and the bias term is
the same for every key j, so softmax drops it: score_j = (W_k,h^T q_h / sqrt(d_h)) . s_j. The value mix is
sum_j a_j (W_v,h s_j + b_v,h) = W_v,h (sum_j a_j s_j) + b_v,h, since the weights a_j sum to one. The result
equals ``BasketWorldModel.forward``'s logits (tests check it) while a trip reads its history's states once
for all decoder layers: about 0.26 MB a trip at full size in bfloat16, instead of 1 MB of keys and values.

Inference only: the functional decoder has no dropout, so the model must be in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from world_model.models.basket import BasketWorldModel
from world_model.models.mamba import scan_rows

CONTEXT_KEYS = ("customer", "store", "t3", "t6", "candidates", "candidate_features")
"""What a trip adds to its cached history: the context token's inputs and the repeat head's candidates."""
HISTORY_KEYS = ("items", "item_basket", "item_weeks", "t4")
"""What the cache is built from: the history part of a ``BatchBuilder.next_basket`` batch."""


def _cross_attention(attention: nn.MultiheadAttention, x: Tensor, context: Tensor, states: Tensor,
                     real: Tensor) -> Tensor:  # fmt: skip
    """``attention``(x, memory, memory) for memory = [context; states] without projecting the memory.
    x [n, Q, d], context [n, d], states [n, L, d], real [n, L] -> [n, Q, d]."""
    n, n_queries, d = x.shape
    heads = attention.num_heads
    head_dim = d // heads
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    b_q, _, b_v = attention.in_proj_bias.chunk(3)
    q = F.linear(x, w_q, b_q).view(n, n_queries, heads, head_dim)
    absorbed = torch.einsum("nqhe,hed->nqhd", q, w_k.view(heads, head_dim, d)) / math.sqrt(head_dim)
    absorbed = absorbed.reshape(n, n_queries * heads, d)  # [n, QH, d]
    context_score = (absorbed * context.unsqueeze(1)).sum(-1, keepdim=True)  # [n, QH, 1]
    item_scores = torch.bmm(absorbed, states.transpose(1, 2)).masked_fill(~real.unsqueeze(1), float("-inf"))
    weights = torch.softmax(torch.cat([context_score, item_scores], -1), -1)  # [n, QH, 1 + L]
    mixed = weights[..., :1] * context.unsqueeze(1) + torch.bmm(weights[..., 1:], states)  # [n, QH, d]
    values = torch.einsum("nqhd,hed->nqhe", mixed.view(n, n_queries, heads, d), w_v.view(heads, head_dim, d))
    return attention.out_proj((values + b_v.view(heads, head_dim)).reshape(n, n_queries, d))


def _decoder_layer(layer: nn.TransformerDecoderLayer, x: Tensor, context: Tensor, states: Tensor,
                   real: Tensor) -> Tensor:  # fmt: skip
    """One pre-norm ``TransformerDecoderLayer`` in eval mode, its cross-attention over [context; states]."""
    h = layer.norm1(x)
    x = x + layer.self_attn(h, h, h, need_weights=False)[0]
    x = x + _cross_attention(layer.multihead_attn, layer.norm2(x), context, states, real)
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))


class HistoryCache:
    """The encoder states of N histories and the logits of trips over them (module docstring).

    ``history`` holds ``HISTORY_KEYS`` tensors with N rows (padded to a common L) on the model's device;
    the states are computed ``batch_size`` rows at a time (fewer where the pure-PyTorch scan would hold
    more than ``mamba.MAX_SCAN_STATE_VALUES``) and kept in ``dtype`` (default the model's;
    bfloat16 halves the memory for a caller that runs ``logits`` under bfloat16 autocast). ``nbytes`` is
    what the cache holds.
    """

    @torch.no_grad()
    def __init__(self, model: BasketWorldModel, history: dict[str, Tensor], batch_size: int = 512,
                 dtype: torch.dtype | None = None) -> None:  # fmt: skip
        if model.config.context_position != "decoder" or model.config.objective != "next_basket":
            raise ValueError("HistoryCache needs a next_basket model with context_position='decoder', got "
                             f"{model.config.objective!r} / {model.config.context_position!r}")  # fmt: skip
        if model.training:
            raise ValueError("HistoryCache is for inference: call model.eval() first")
        self.model = model
        n, length = history["items"].shape
        device = model.output_bias.device
        batch_size = scan_rows(model.encoder.config, length, batch_size, device)
        states, real = [], []
        for start in range(0, n, batch_size):
            chunk = {key: history[key][start : start + batch_size] for key in HISTORY_KEYS}
            s, r = model.encode_history(chunk)
            states.append(s.to(dtype or s.dtype))
            real.append(r)
        d = model.config.d_model
        self.states = torch.cat(states) if states else torch.zeros(0, 1, d, device=device, dtype=dtype)  # [N, L, d]
        self.real = torch.cat(real) if real else torch.zeros(0, 1, dtype=torch.bool, device=device)  # [N, L]

    @property
    def nbytes(self) -> int:
        return self.states.element_size() * self.states.nelement() + self.real.nelement()

    def __len__(self) -> int:
        return len(self.states)

    @torch.no_grad()
    def logits(self, rows: Tensor, trips: dict[str, Tensor]) -> Tensor:
        """Next-basket logits [n, V] of n trips whose histories are cache rows ``rows`` [n] (long, on the
        model's device); ``trips`` holds the trips' ``CONTEXT_KEYS`` tensors [n, ...]."""
        model = self.model
        states, real = self.states.index_select(0, rows), self.real.index_select(0, rows)
        context = model.context_token(trips)  # [n, d]
        x, _ = model.query_tokens(trips, context)
        for layer in model.decoder.layers:
            x = _decoder_layer(layer, x, context, states, real)
        summary = model.decoder.norm(x).mean(1)  # [n, d]
        return model.product_logits(summary, trips["candidates"], trips["candidate_features"])
