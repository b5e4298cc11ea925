"""Counted cost of the basket model a trip: the whole forward against the cached decoder; prints JSON.

    python benchmarks/forward_flops.py [--size full|small] [--trips 64]

An untrained model of ``--size`` over the shipped scenario's vocabulary (throughput and counts do not
depend on the weights), on the inputs of ``--trips`` of its shoppers' next trips (their histories padded
to the longest in the batch, at most the size's ``max_sequence_items``: 256 at full size). Matrix
products are counted by ``torch.utils.flop_counter.FlopCounterMode``; the selective scan's elementwise
work is not a matrix product and is not counted (it adds to the whole forward only). The cached decoder
is ``HistoryCache.logits`` over histories encoded beforehand (what a simulated week runs), on the CPU's
packed repeat head (real candidates only) and on the dense one a GPU runs (every slot, padding masked).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from world_model.models.basket import BasketModelConfig, BasketWorldModel
from world_model.models.batches import BatchBuilder
from world_model.models.history_cache import CONTEXT_KEYS, HISTORY_KEYS, HistoryCache

from retailsim_env.scenario import Scenario


def counted_flops(run) -> int:
    """Matrix-product FLOPs of one call of ``run``."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["full", "small"], default="full")
    parser.add_argument("--trips", type=int, default=64)
    args = parser.parse_args()
    scenario = Scenario()
    data = scenario.data
    sizes = {"small": BasketModelConfig.small, "full": BasketModelConfig.full}
    config = sizes[args.size](n_products=data.n_products)
    torch.manual_seed(0)
    model = BasketWorldModel(config, data.products, data.customers, data.stores).eval()
    rows = scenario.shoppers["anchor_row"].to_numpy()[: args.trips]
    batch = BatchBuilder(data, max_sequence_items=config.max_sequence_items).next_basket(rows)
    trips = {key: batch[key] for key in CONTEXT_KEYS}
    cache = HistoryCache(model, {key: batch[key] for key in HISTORY_KEYS}, batch_size=len(rows))
    index = torch.arange(len(rows))
    summary = torch.zeros(len(rows), config.d_model)

    def cached(packed: bool) -> int:
        real_logits = model.product_logits
        model.product_logits = lambda *a, **k: real_logits(*a, **{**k, "packed": packed})
        try:
            return counted_flops(lambda: cache.logits(index, trips))
        finally:
            del model.product_logits

    per_trip = {
        "whole_forward": counted_flops(lambda: model(batch)),
        "cached_decoder_packed": cached(True),
        "cached_decoder_dense": cached(False),
        "product_logits_packed": counted_flops(lambda: model.product_logits(summary, trips["candidates"], trips["candidate_features"], packed=True)),
    }
    print(json.dumps({
        "size": args.size, "d_model": config.d_model, "trips": len(rows), "history_length": int(batch["items"].shape[1]),
        "real_history_share": round(float((batch["item_basket"] > 0).float().mean()), 3),
        "candidate_slots": int(batch["candidates"].shape[1]), "vocabulary": data.n_products,
        "gflop_per_trip": {name: round(flops / len(rows) / 1e9, 4) for name, flops in per_trip.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
