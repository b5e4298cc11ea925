"""Stage ``price_response``: the category elasticities, promotion lifts and store-choice sensitivity.

Builds the estimation panels from ``prices_derived.parquet`` and the training transactions
(``world_model.response.panel``), fits them (``world_model.response.estimate``) and writes
``price_response.json`` (``world_model.response.model.PriceResponse``) with both panels, which
``retailsim evaluate-response`` refits for its placebo. Training weeks only, like every fitted stage.
"""

from __future__ import annotations

import pandas as pd

from world_model.errors import RetailSimError
from world_model.pipeline.prices import OUTPUT as PRICES_OUTPUT
from world_model.pipeline.runner import Stage, StageContext
from world_model.response.estimate import estimate_response
from world_model.response.model import RESPONSE_FILE
from world_model.response.panel import PRODUCT_PANEL, STORE_PANEL, Panel, store_loyalty, write_panels


def build_price_response(ctx: StageContext) -> dict[str, int]:
    if ctx.config.train_end < 2:  # one training week has no week-to-week price change: the fit had no rows
        raise RetailSimError(f"--split: TRAIN_END must be 2 or more for the price response (it fits price "
                             f"changes between training weeks), got {ctx.config.train_end}")  # fmt: skip
    config = ctx.config.response
    con = ctx.connect()
    rows = write_panels(con, ctx.artifact("processed", PRICES_OUTPUT), ctx.out, config.zone, config.regular_window)
    loyalty = store_loyalty(con)
    con.close()
    panel = Panel(ctx.out / PRODUCT_PANEL, config.promo_threshold, config.min_observed_share)
    response = estimate_response(panel, pd.read_parquet(ctx.out / STORE_PANEL), loyalty, config, ctx.config.progress)
    response.save(ctx.out / RESPONSE_FILE)
    return {**rows, RESPONSE_FILE: len(response.categories)}


PRICE_RESPONSE = Stage(
    name="price_response",
    section="processed",
    outputs=(RESPONSE_FILE, PRODUCT_PANEL, STORE_PANEL),
    run=build_price_response,
    depends_on=("prices",),
    version=2,
    config_sections=("response",),
)
