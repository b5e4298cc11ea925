"""Data for the evaluation tests: ``hand_made``, a stand-in for ``PreparedData`` built from a few baskets
written out by hand (the tiny prepared work directory ``prepared`` is in ``tests/world_model/conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world_model.pipeline.tensor_cache import BASKET_TABLE_COLUMNS

TRAIN, VALIDATION, TEST = 0, 1, 2


@dataclass
class HandMadeData:
    """The attributes of ``PreparedData`` the evaluation reads."""

    basket_table: np.ndarray
    basket_offsets: np.ndarray
    basket_items: np.ndarray
    n_products: int
    n_stores: int
    vocab: dict


def hand_made(
    customers: list[list[tuple[int, int, list[int]]]], n_products: int = 12, n_stores: int = 5
) -> HandMadeData:
    """Customers in order, each a list of baskets in trip order given as (split, store_row, items);
    the customer rows are 1, 2, ... and every basket is a Sunday 'L' (BASKET_SIZE code 0) shop."""
    column = {name: i for i, name in enumerate(BASKET_TABLE_COLUMNS)}
    table, items = [], []
    for customer, baskets in enumerate(customers):
        for history, (split, store, basket) in enumerate(baskets):
            row = np.zeros(len(BASKET_TABLE_COLUMNS), dtype=np.int32)
            values = {"customer_row": customer + 1, "store_row": store, "week_index": split + 1, "shop_date": 20070101,
                      "weekday": 1, "hour": 10, "history_baskets": history, "split": split}  # fmt: skip
            for name, value in values.items():
                row[column[name]] = value
            table.append(row)
            items.append(np.asarray(basket, dtype=np.int32))
    return HandMadeData(
        basket_table=np.stack(table),
        basket_offsets=np.r_[0, np.cumsum([len(b) for b in items])].astype(np.int64),
        basket_items=np.concatenate(items),
        n_products=n_products,
        n_stores=n_stores,
        vocab={"trip_code_books": {"BASKET_SIZE": ["L", "M", "S"]}},
    )
