"""The pipeline's stages in the order they run."""

from __future__ import annotations

from world_model.pipeline.basket_quantities import BASKET_QUANTITY_STAGE
from world_model.pipeline.customers import MISSION_PATTERNS, STORE_AFFINITY
from world_model.pipeline.entity_features import CUSTOMER_FEATURES, STORE_FEATURES
from world_model.pipeline.price_features import PRICE_FEATURES
from world_model.pipeline.price_response import PRICE_RESPONSE
from world_model.pipeline.prices import PRICES
from world_model.pipeline.product_features import PRODUCT_EMBEDDINGS, PSEUDO_BRANDS
from world_model.pipeline.product_graph import PRODUCT_GRAPH
from world_model.pipeline.runner import Stage
from world_model.pipeline.samples import SAMPLES
from world_model.pipeline.tensor_cache import TENSOR_CACHE

ALL_STAGES: list[Stage] = [
    PRICES,
    PRICE_RESPONSE,
    PRODUCT_GRAPH,
    BASKET_QUANTITY_STAGE,
    STORE_AFFINITY,
    MISSION_PATTERNS,
    PSEUDO_BRANDS,
    PRODUCT_EMBEDDINGS,
    PRICE_FEATURES,
    STORE_FEATURES,
    CUSTOMER_FEATURES,
    SAMPLES,
    TENSOR_CACHE,
]
