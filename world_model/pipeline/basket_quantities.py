"""How many units of a product a basket holds when it holds the product, fitted on the training weeks.

``basket_quantities.parquet`` has one row per product and quantity: ``PROD_CODE``, ``QUANTITY`` (the
product's units in one basket, its lines summed) and ``baskets`` (the training baskets, card or not, that
held exactly that many). Per product, ``sum(QUANTITY x baskets) / sum(baskets)`` is the units per basket
line of ``product_graph_nodes.parquet`` (``train_units / train_baskets``).

The environments draw a week's units of a product as that many basket lines, each with a quantity from
this distribution (``retailsim_env.demand``), so multipacks and bulk buys make weekly units as
overdispersed as the data's: variance / mean = E[Q^2] / E[Q] for a compound Poisson, 1.0 to 5.5 among the
15 most bought products of 20 weeks of the real sample, where a Poisson draw of units gives 1.
"""

from __future__ import annotations

from world_model.data.duckdb_util import sql_string
from world_model.pipeline.runner import Stage, StageContext

BASKET_QUANTITIES = "basket_quantities.parquet"


def build_basket_quantities(ctx: StageContext) -> dict[str, int]:
    con = ctx.connect()
    con.execute(
        f"""COPY (
              SELECT PROD_CODE, QUANTITY, count(*)::BIGINT AS baskets
              FROM (SELECT PROD_CODE, BASKET_ID, sum(QUANTITY)::BIGINT AS QUANTITY
                    FROM train_transactions GROUP BY PROD_CODE, BASKET_ID)
              GROUP BY PROD_CODE, QUANTITY ORDER BY PROD_CODE, QUANTITY
            ) TO {sql_string(ctx.out / BASKET_QUANTITIES)} (FORMAT parquet, COMPRESSION zstd)"""
    )
    rows = con.execute(f"SELECT count(*) FROM read_parquet({sql_string(ctx.out / BASKET_QUANTITIES)})").fetchone()[0]
    con.close()
    return {BASKET_QUANTITIES: rows}


BASKET_QUANTITY_STAGE = Stage(name="basket_quantities", section="processed", outputs=(BASKET_QUANTITIES,),
                              run=build_basket_quantities)  # fmt: skip
