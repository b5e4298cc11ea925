"""The explicit price and promotion response: estimation, the fitted parameters, simulated demand."""

from world_model.response.config import ResponseConfig
from world_model.response.model import CategoryResponse, PriceResponse, StoreResponse, demand_multiplier

__all__ = ["CategoryResponse", "PriceResponse", "ResponseConfig", "StoreResponse", "demand_multiplier"]
