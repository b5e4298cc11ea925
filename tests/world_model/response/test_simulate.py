"""The simulator's guarantees hold for any propensities, so untrained tiny models are enough here."""

import numpy as np
import pandas as pd
import pytest
import torch

from world_model.models.basket import BasketModelConfig, BasketWorldModel
from world_model.models.predictors import StoreVisitPredictor
from world_model.models.store_visit import StoreVisitConfig, StoreVisitModel
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS
from world_model.response.checks import evaluate_response, monotonicity, unchanged_price_placebo
from world_model.response.model import PriceResponse
from world_model.response.season import SeasonIndex
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


def test_the_unchanged_price_placebo_catches_a_second_pass_that_differs(simulator, demand, monkeypatch) -> None:
    """The history level is fitted to each pass's own units, so the placebo compares the passes without it."""
    top = int(np.argmax(demand.expected_units()))

    class Drifting(torch.nn.Module):  # the second pass's model: the top product's logit moved
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, batch: dict) -> dict:
            out = dict(self.inner(batch))
            out["logits"] = out["logits"].clone()
            out["logits"][:, top] += 0.05
            return out

    monkeypatch.setattr(simulator, "model", Drifting(simulator.model))
    placebo = unchanged_price_placebo(simulator, demand)
    assert not placebo["passed"] and placebo["largest_product_change"] > 0.02


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


def test_whatif_from_a_week_follows_the_season_index_of_its_weeks(simulator, demand) -> None:
    """From a data week, each product's units are times its ``season_factor`` before and after the change
    alike (so a product's own change in % stays), and the category and store rows are the sums of the
    seasonal product units; weeks of the year the index moves between give different factors."""
    code = simulator.store_codes[demand.store_row - 1]
    top = int(np.argmax(demand.expected_units()))
    early, late = simulator.season_factor(demand, 1, 4), simulator.season_factor(demand, 20, 4)
    assert early[:PRODUCT_SPECIALS].tolist() == [1.0] * PRODUCT_SPECIALS and not np.allclose(early, late)
    plain = run_whatif(simulator, code, {top: 0.1}, {}, weeks=4)
    seasonal = run_whatif(simulator, code, {top: 0.1}, {}, weeks=4, from_week=1)
    for column in ("units_before", "units_after"):
        assert seasonal.iloc[0][column] == pytest.approx(plain.iloc[0][column] * early[top])
    assert seasonal.iloc[0]["units_change"] == pytest.approx(plain.iloc[0]["units_change"])
    assert seasonal.iloc[-1]["units_before"] == pytest.approx(4 * (demand.expected_units() * early).sum())
    from world_model.errors import RetailSimError

    for bad, message in (((0, 4), "--from-week must be a data week index >= 1"), ((1, 0), "--weeks must be >= 1")):
        with pytest.raises(RetailSimError, match=message):
            simulator.season_factor(demand, *bad)


def test_a_flat_season_changes_nothing_the_level_corrects_for_it(simulator, demand, monkeypatch) -> None:
    """An index of 2 in every week doubles the weeks' units, and the level, divided by the history's
    multiplier of response x season instead of the response's, halves them back: the factor is 1 wherever
    the store sold the product in training (the seasonal market's level makes the training weeks average
    to the store's sales, whatever the index)."""
    index = simulator.season_index
    monkeypatch.setattr(simulator, "season_index", SeasonIndex(index.categories, np.full_like(index.season, 2.0),
                                                               index.covered))  # fmt: skip
    factor = simulator.season_factor(demand, 30, 3)
    sold = demand.level != 1.0  # the level is 1 where the history has no units
    assert sold.sum() > 10 and np.allclose(factor[sold], 1.0)


def test_whatif_rejects_bad_arguments_in_one_line(simulator) -> None:
    from world_model.errors import RetailSimError

    with pytest.raises(RetailSimError, match="--set"):
        parse_moves(["PRD=ten"], "--set", simulator)
    with pytest.raises(RetailSimError, match="--set: NOPE is neither a product code nor a category key"):
        parse_moves(["NOPE=+5%"], "--set", simulator)
    with pytest.raises(RetailSimError, match="--store"):
        simulator.store_row("NOSTORE")
    product = simulator.product_codes[0]
    with pytest.raises(RetailSimError, match=rf"--set: {product} is given two values \(\+10.5% and \+10%\)"):
        parse_moves([f"{product}=+10.5%", f"{product}=+10%"], "--set", simulator)  # the last one won silently
    assert len(parse_moves([f"{product}=+10%", f"{product}=+10%"], "--set", simulator)) == 1  # the same value twice
    category = simulator.response.product_category[product]
    for specs in ([f"{category}=+10%", f"{product}=-5%"], [f"{product}=-5%", f"{category}=+10%"]):  # either order
        moves = parse_moves(specs, "--set", simulator)
        assert moves[simulator.product_row(product)] == pytest.approx(-0.05)  # the product's own value wins
        members = [c for c in simulator.product_codes if simulator.response.product_category.get(c) == category]
        assert len(moves) == len(members) and sum(v == pytest.approx(0.10) for v in moves.values()) == len(members) - 1


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


def _unleveled(simulator: DemandSimulator, store_row: int):
    """The store's demand at the models' own level (the simulator's setting restored after)."""
    leveled, simulator.history_level = simulator.history_level, False
    try:
        return simulator.store_demand(store_row)
    finally:
        simulator.history_level = leveled


def test_the_history_level_replays_the_stores_training_sales(simulator, demand) -> None:
    """At every training week's own prices and promotions (the pipeline's price table), the leveled
    units average to what the store sold then, per product, with the store-choice tilt off (the level does
    not model it); the models' own level does not. A random half of the trips gives the same leveled
    units, where unleveled units halve (a sample's trips over the split's weeks)."""
    table = pd.read_parquet(simulator.data.workdir / "processed" / "prices_derived.parquet")
    code = simulator.store_codes[demand.store_row - 1]
    train = table[(table["split"] == "train") & (table["STORE_CODE"] == code) & (table["actual_price"] > 0)]
    weeks = np.sort(table.loc[table["split"] == "train", "week_index"].unique())
    every_week = train.groupby("PROD_CODE")["week_index"].nunique().loc[lambda n: n == len(weeks)].index
    rows = np.array([simulator.product_row(p) for p in every_week])
    assert len(rows) >= 5
    sensitivity, demand.choice_sensitivity = demand.choice_sensitivity, 0.0
    unleveled = _unleveled(simulator, demand.store_row)
    unleveled.choice_sensitivity = 0.0
    try:
        simulated, plain = np.zeros(len(rows)), np.zeros(len(rows))
        for week in weeks:
            at = train[train["week_index"] == week].set_index("PROD_CODE").loc[every_week]
            ratio, promoted = np.ones(len(demand.units_per_line)), np.zeros(len(demand.units_per_line), dtype=bool)
            ratio[rows] = at["actual_price"].to_numpy() / demand.reference_price[rows]
            promoted[rows] = at["promo_flag"].to_numpy(bool)
            simulated += demand.expected_units(ratio, promoted)[rows] / len(weeks)
            plain += unleveled.expected_units(ratio, promoted)[rows] / len(weeks)
    finally:
        demand.choice_sensitivity = sensitivity
    sold = train.groupby("PROD_CODE")["units"].sum().loc[every_week].to_numpy() / len(weeks)
    assert np.allclose(simulated, sold, rtol=1e-9)
    assert not np.allclose(plain, sold, rtol=0.05)
    half = DemandSimulator(simulator.data, simulator.model, simulator.store_predictor, simulator.response,
                           split="validation", limit=len(simulator.targets) // 2)  # fmt: skip
    assert np.allclose(half.store_demand(demand.store_row).expected_units()[rows], demand.expected_units()[rows])
    halved = _unleveled(half, demand.store_row).expected_units()[rows].sum() / unleveled.expected_units()[rows].sum()
    assert 0.35 < halved < 0.65
