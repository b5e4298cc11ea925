"""The simulator's guarantees hold for any propensities, so untrained tiny models are enough here."""

import numpy as np
import pytest
import torch

from world_model.models.basket import BasketModelConfig, BasketWorldModel
from world_model.models.predictors import StoreVisitPredictor
from world_model.models.store_visit import StoreVisitConfig, StoreVisitModel
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS
from world_model.response.checks import evaluate_response, monotonicity, unchanged_price_placebo
from world_model.response.model import PriceResponse
from world_model.response.simulate import DemandSimulator
from world_model.response.whatif import parse_moves, run_whatif
from world_model.training.tasks import trip_classes


@pytest.fixture(scope="module")
def simulator(prepared_with_response) -> DemandSimulator:
    data = prepared_with_response
    torch.manual_seed(0)
    basket = BasketWorldModel(BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data),
                                                      d_model=32, n_heads=4, ffn=64, max_sequence_items=16),
                              data.products, data.customers, data.stores).eval()  # fmt: skip
    store = StoreVisitModel(StoreVisitConfig(n_stores=data.n_stores, hidden=32), data.products, data.customers,
                            data.stores).eval()  # fmt: skip
    return DemandSimulator(data, basket, StoreVisitPredictor(store, data), PriceResponse.load(data.workdir),
                           split="validation")  # fmt: skip


@pytest.fixture(scope="module")
def demand(simulator):
    busiest = int(np.argmax(simulator.visit_probabilities[:, 1:].sum(axis=0))) + 1
    return simulator.store_demand(busiest)


def test_baseline_demand_is_positive_and_deterministic(simulator, demand) -> None:
    units = demand.expected_units()
    assert units[:PRODUCT_SPECIALS].sum() == 0 and units.sum() > 0
    assert np.allclose(demand.revenue_weight.sum(), 1.0)
    placebo = unchanged_price_placebo(simulator, demand)
    assert placebo["passed"] and placebo["total_demand_change"] < 1e-9


def test_own_price_curves_never_rise_with_price(demand) -> None:
    result = monotonicity(demand, products=30)
    assert result["passed"] and result["products"] > 0
    top = int(np.argmax(demand.expected_units()))
    curve = demand.own_price_curve(top, np.array([0.8, 1.0, 1.25]))
    assert curve[0] > curve[1] > curve[2]
    assert curve[1] == pytest.approx(demand.expected_units()[top])


def test_price_response_is_the_fitted_elasticity_and_lift(simulator, demand) -> None:
    response = PriceResponse.load(simulator.data.workdir)  # each vocabulary row takes its own product's estimate
    elasticity, lift = response.parameters(simulator.product_codes)
    assert np.array_equal(demand.elasticity[PRODUCT_SPECIALS:], elasticity) and np.array_equal(demand.lift[PRODUCT_SPECIALS:], lift)
    assert len(set(elasticity)) > 1
    top = int(np.argmax(demand.expected_units()))
    base = demand.expected_units()[top]
    raised = np.ones(len(demand.units_per_line))
    raised[top] = 1.1
    promoted = np.zeros(len(demand.units_per_line), dtype=bool)
    promoted[top] = True
    sensitivity, demand.choice_sensitivity = demand.choice_sensitivity, 0.0
    try:  # at fixed store traffic the own elasticity is exactly the category's
        assert demand.expected_units(raised)[top] / base == pytest.approx(1.1 ** demand.elasticity[top])
        assert demand.expected_units(1.0, promoted)[top] / base == pytest.approx(demand.lift[top])
    finally:
        demand.choice_sensitivity = sensitivity
    # a store-wide price rise also sends visits elsewhere: less demand than the own-price effect alone
    assert demand.expected_units(1.1)[top] / base < 1.1 ** demand.elasticity[top]


def test_whatif_reports_products_categories_and_the_store(simulator, demand) -> None:
    code = simulator.store_codes[demand.store_row - 1]
    top = int(np.argmax(demand.expected_units()))
    product = simulator.product_codes[top - PRODUCT_SPECIALS]
    moves = parse_moves([f"{product}=+10%"], "--set", simulator)
    assert moves == {top: pytest.approx(0.1)}
    table = run_whatif(simulator, code, moves, {}, weeks=4)
    assert list(table["level"]) == ["product", "category", "store"]
    row = table.iloc[0]
    assert row["price"] == pytest.approx(1.1 * row["reference_price"])
    assert row["units_after"] < row["units_before"]
    assert row["units_before"] == pytest.approx(4 * demand.expected_units()[top])


def test_whatif_rejects_bad_arguments_in_one_line(simulator) -> None:
    from world_model.errors import RetailSimError

    with pytest.raises(RetailSimError, match="--set"):
        parse_moves(["PRD=ten"], "--set", simulator)
    with pytest.raises(RetailSimError, match="--set: NOPE is neither a product code nor a category key"):
        parse_moves(["NOPE=+5%"], "--set", simulator)
    with pytest.raises(RetailSimError, match="--store"):
        simulator.store_row("NOSTORE")


def test_evaluate_response_runs_every_check_against_the_truth(simulator) -> None:
    ground_truth = simulator.data.workdir.parent / "raw" / "ground_truth"
    report = evaluate_response(simulator, ground_truth)
    assert "recovery" in report and report["categories"]
    assert all("true_elasticity" in row for row in report["categories"])
    store = next(iter(report["stores"].values()))
    assert store["monotonicity"]["passed"] and store["unchanged_prices"]["passed"]
    curves = store["demand_curves"]["categories"]
    assert curves and all(len(c["true"]) == len(c["simulated"]) for c in curves.values())
    for entry in curves.values():  # both curves fall with price
        assert np.all(np.diff(entry["simulated"]) < 0) and np.all(np.diff(entry["true"]) < 0)
    assert "true_elasticity" in report["store_response"]
