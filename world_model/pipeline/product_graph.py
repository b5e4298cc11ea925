"""The product co-purchase graph, fitted on the training weeks.

Two products are linked when at least ``min_copurchase`` training baskets hold both. Each product keeps
its ``top_complements`` strongest partners, so the edge list is directed (a product's complements need
not list it back) and bounded at 10 x products. Weights: the number of shared baskets and the lift,
``baskets(a, b) * N / (baskets(a) * baskets(b))``, which discounts partners that are in every basket.

The pair count is a self-join of basket lines: it grows with the square of basket size, so DuckDB
does it with spilling under the configured memory limit.
"""

from __future__ import annotations

from world_model.data.duckdb_util import sql_string
from world_model.pipeline.runner import Stage, StageContext

EDGES = "product_graph_edges.parquet"
NODES = "product_graph_nodes.parquet"


def build_product_graph(ctx: StageContext) -> dict[str, int]:
    con = ctx.connect()
    config = ctx.config
    con.execute(
        """CREATE TEMP TABLE basket_items AS
           SELECT DISTINCT BASKET_ID, PROD_CODE FROM train_transactions"""
    )
    con.execute(
        """CREATE TEMP TABLE product_baskets AS
           SELECT PROD_CODE, count(*) AS baskets FROM basket_items GROUP BY PROD_CODE"""
    )
    total_baskets = con.execute("SELECT count(DISTINCT BASKET_ID) FROM basket_items").fetchone()[0]
    con.execute(
        f"""CREATE TEMP TABLE pairs AS
            SELECT a.PROD_CODE AS src, b.PROD_CODE AS dst, count(*) AS baskets
            FROM basket_items a JOIN basket_items b ON a.BASKET_ID = b.BASKET_ID AND a.PROD_CODE <> b.PROD_CODE
            GROUP BY ALL HAVING count(*) >= {int(config.min_copurchase)}"""
    )
    con.execute(
        f"""COPY (
              SELECT src, dst, baskets, lift, rank FROM (
                SELECT p.src, p.dst, p.baskets,
                       p.baskets * {total_baskets}::DOUBLE / (s.baskets * d.baskets) AS lift,
                       row_number() OVER (PARTITION BY p.src ORDER BY p.baskets DESC, lift DESC, p.dst) AS rank
                FROM pairs p
                JOIN product_baskets s ON s.PROD_CODE = p.src
                JOIN product_baskets d ON d.PROD_CODE = p.dst)
              WHERE rank <= {int(config.top_complements)}
              ORDER BY src, rank
            ) TO {sql_string(ctx.out / EDGES)} (FORMAT parquet, COMPRESSION zstd)"""
    )
    con.execute(
        f"""COPY (
              SELECT t.PROD_CODE, any_value(PROD_CODE_10) AS PROD_CODE_10, any_value(PROD_CODE_20) AS PROD_CODE_20,
                     any_value(PROD_CODE_30) AS PROD_CODE_30, any_value(PROD_CODE_40) AS PROD_CODE_40,
                     count(DISTINCT BASKET_ID) AS train_baskets, sum(QUANTITY) AS train_units,
                     sum(SPEND) / sum(QUANTITY) AS mean_unit_price,
                     coalesce(any_value(e.degree), 0) AS out_degree
              FROM train_transactions t
              LEFT JOIN (SELECT src AS PROD_CODE, count(*) AS degree FROM read_parquet({sql_string(ctx.out / EDGES)}) GROUP BY 1) e
                USING (PROD_CODE)
              GROUP BY t.PROD_CODE ORDER BY t.PROD_CODE
            ) TO {sql_string(ctx.out / NODES)} (FORMAT parquet, COMPRESSION zstd)"""
    )
    rows = {
        EDGES: con.execute(f"SELECT count(*) FROM read_parquet({sql_string(ctx.out / EDGES)})").fetchone()[0],
        NODES: con.execute(f"SELECT count(*) FROM read_parquet({sql_string(ctx.out / NODES)})").fetchone()[0],
    }
    con.close()
    return rows


PRODUCT_GRAPH = Stage(name="product_graph", section="processed", outputs=(EDGES, NODES), run=build_product_graph)
