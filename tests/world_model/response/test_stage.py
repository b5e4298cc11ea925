import math

import numpy as np

from world_model.response.checks import recovery
from world_model.response.model import PriceResponse


def test_recovers_category_elasticities_and_lifts_of_a_generated_market(recovery_market) -> None:
    response = PriceResponse.load(recovery_market / "work")
    _, summary = recovery(response, recovery_market / "raw" / "ground_truth")
    errors = summary["median_abs_rel_error"]
    assert summary["categories_estimated"] == summary["categories"] >= 3
    assert errors["elasticity_estimate"] <= 0.25 and errors["lift_estimate"] <= 0.25
    # the estimator beats the prior it shrinks toward
    assert errors["elasticity_estimate"] < errors["elasticity_prior_only"]


def test_response_file_round_trips_and_is_monotone(prepared_with_response) -> None:
    path = prepared_with_response.workdir / "processed" / "price_response.json"
    response = PriceResponse.load(prepared_with_response.workdir)
    assert PriceResponse.load(path).to_dict() == response.to_dict()
    assert response.categories and response.product_category
    for category in response.categories.values():
        assert category.elasticity <= 0 and category.lift >= 1
        assert 0 <= category.elasticity_data_weight <= 1
        assert category.groups <= category.series_total
    elasticity, lift = response.parameters([*list(response.product_category)[:3], "UNKNOWN"])
    assert elasticity[-1] == response.config.prior_elasticity and lift[-1] == response.config.prior_lift
    assert response.store.elasticity <= 0 and math.isfinite(response.store.choice_sensitivity)
    assert np.all(elasticity <= 0)
    codes = list(response.product_category)  # each product takes its own category's estimate, else the prior
    own = [response.categories.get(response.product_category[code], response.prior()) for code in codes]
    elasticity, lift = response.parameters(codes)
    assert np.array_equal(elasticity, [c.elasticity for c in own]) and np.array_equal(lift, [c.lift for c in own])
    assert len({c.elasticity for c in own}) > 1 and (elasticity != response.config.prior_elasticity).any()
