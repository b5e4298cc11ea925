"""Learned demand with a history cache: the weekly step's cached decoder gives the whole model's answer;
its units follow the compound-Poisson law of the bundle's basket quantities. Oracle demand: the
generator's law at the managed cells."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from retailsim_env import RetailSimEnv
from retailsim_env.config import EnvConfig
from retailsim_env.demand import SEASON_TABLE_WEEKS, LearnedDemand, OracleDemand
from retailsim_env.scenario import Scenario
from world_model.response.season import week_bins

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _demand(path, device: str = "cpu", products: int = 5, **kwargs) -> LearnedDemand:
    scenario = Scenario(path)
    return LearnedDemand(scenario, scenario.store_rows(None, count=2), scenario.product_rows(products), device=device, **kwargs)


def _reference_draws(demand: LearnedDemand, week: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n realized weeks [n, M, K], the forecast [M, K]) of one copy at reference prices, no promotions."""
    demand.reset(np.arange(1), 1, [np.random.default_rng(0)])
    reference, zero, weeks = demand.reference[None], np.zeros((1, *demand.reference.shape)), np.array([week])
    rngs = [np.random.default_rng(seed)]
    draws = np.array([demand.sample(weeks, reference, zero, rngs)[0][0] for _ in range(n)])
    return draws, demand.forecast(weeks, reference, zero)[0]


def _weeks(demand: LearnedDemand, n_weeks: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rngs = [np.random.default_rng([seed, b]) for b in range(2)]
    demand.reset(np.arange(2), 2, rngs)
    price = np.broadcast_to(demand.reference, (2, *demand.reference.shape)).copy()
    depth = np.zeros_like(price)
    return [demand.sample(np.full(2, 30 + week), price, depth, rngs) for week in range(n_weeks)]


def test_cached_weekly_probabilities_equal_the_whole_models(tiny_cached_scenario_dir) -> None:
    demand = _demand(tiny_cached_scenario_dir, inference_batch=5)
    assert demand.history_cache is not None and len(demand.history_cache) == len(demand.slot_store)
    assert not {"items", "item_basket", "item_weeks", "t4"} & set(demand.cache)  # encoded, then let go
    _weeks(demand, 3)  # some weeks in: recency gaps and item ages have moved
    trips = demand.last_trips
    assert trips is not None
    slots, _, _, weeks_into_episode = trips
    assert len(slots) > demand.inference_batch and weeks_into_episode.max() == 2  # several chunks, third week
    cached = demand.forward(demand.model_inputs(*trips))
    reference = _demand(tiny_cached_scenario_dir, inference_batch=5, cache_histories=False)
    assert reference.history_cache is None and np.array_equal(reference.slot_shopper, demand.slot_shopper)
    whole = reference.forward(reference.model_inputs(*trips))  # the model on full batches, item ages moved by elapsed
    finite = torch.isfinite(whole)
    assert torch.equal(finite, torch.isfinite(cached))
    torch.testing.assert_close(cached[finite], whole[finite], rtol=1e-4, atol=1e-4)


def test_a_cached_environment_is_reproducible_and_a_first_layout_one_has_no_cache(tiny_cached_scenario_dir,
                                                                                    tiny_scenario_dir) -> None:  # fmt: skip
    first, second = (_weeks(_demand(tiny_cached_scenario_dir), 2, seed=3) for _ in range(2))
    for (units_a, visits_a), (units_b, visits_b) in zip(first, second):
        np.testing.assert_array_equal(units_a, units_b)
        np.testing.assert_array_equal(visits_a, visits_b)
    assert _demand(tiny_scenario_dir).history_cache is None
    env = RetailSimEnv(scenario=tiny_cached_scenario_dir, products=3, episode_length=2)
    env.reset(seed=0)
    assert np.isfinite(env.step(env.action_space.sample())[1])


def test_bfloat16_autocast_stays_close_to_full_precision(tiny_cached_scenario_dir) -> None:
    """What a CUDA device runs (autocast bfloat16), checked here on the CPU's bfloat16."""
    demand = _demand(tiny_cached_scenario_dir)
    assert demand.autocast is None  # full precision on a CPU
    _weeks(demand, 2)
    inputs = demand.model_inputs(*demand.last_trips)
    full = torch.softmax(demand.forward(inputs), -1)
    demand.autocast = torch.bfloat16
    half = torch.softmax(demand.forward(inputs), -1)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=2e-3, rtol=0.05)


@CUDA
def test_cuda_cached_decoder_matches_the_whole_model_and_bfloat16_stays_close(tiny_cached_scenario_dir) -> None:
    """The CUDA path a GPU machine runs: the cache on the GPU, forwards under bfloat16 autocast."""
    demand = _demand(tiny_cached_scenario_dir, device="cuda")
    assert demand.autocast is torch.bfloat16 and demand.history_cache.states.dtype == torch.bfloat16
    _weeks(demand, 3)
    inputs = demand.model_inputs(*demand.last_trips)
    half = torch.softmax(demand.forward(inputs), -1)
    demand.autocast = None
    demand.history_cache.states = demand.history_cache.states.float()
    full = torch.softmax(demand.forward(inputs), -1)
    reference = _demand(tiny_cached_scenario_dir, device="cuda", cache_histories=False)
    reference.autocast = None
    whole = torch.softmax(reference.forward(reference.model_inputs(*demand.last_trips)), -1)
    torch.testing.assert_close(full, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(half, full, atol=3e-3, rtol=0.05)


def test_sum_by_adds_like_add_at() -> None:
    from retailsim_env.demand import _sum_by

    rng = np.random.default_rng(0)
    copy, store = rng.integers(0, 3, 50), rng.integers(0, 2, 50)
    values = rng.random((50, 4)) * 10.0 ** rng.integers(-8, 8, (50, 4))  # magnitudes where the order shows
    expected = np.zeros((3, 2, 4))
    np.add.at(expected, (copy, store), values)
    np.testing.assert_array_equal(_sum_by(copy, store, values, (3, 2, 4)), expected)
    empty = _sum_by(copy[:0], store[:0], values[:0], (3, 2, 4))
    assert empty.shape == (3, 2, 4) and empty.dtype == np.float64 and not empty.any()


@pytest.mark.parametrize("propensities, device", [("weekly", "cpu"), ("fixed", "cpu"), pytest.param("weekly", "cuda", marks=CUDA)])
def test_pipeline_groups_leave_every_copys_week_as_it_was(tiny_cached_scenario_dir, propensities, device) -> None:
    """Cutting the copies into groups (as on a GPU, to draw one group while the device runs another) gives
    each copy the same trips, units, recency and model inputs, bit for bit on a CPU; on CUDA the trips and
    recency bit for bit (they do not depend on the model) and the units up to the forward's rounding."""
    n_copies, runs = 5, []
    for groups in (1, 2, 3):
        demand = _demand(tiny_cached_scenario_dir, device, propensities=propensities, pipeline_groups=groups)
        rngs = [np.random.default_rng([11, b]) for b in range(n_copies)]
        demand.reset(np.arange(n_copies), n_copies, rngs)
        price = demand.reference * np.linspace(0.8, 1.2, n_copies)[:, None, None]
        depth = np.zeros_like(price)
        weeks = [demand.sample(np.arange(n_copies) + 20 + week, price, depth, rngs) for week in range(3)]
        runs.append((weeks, demand.gaps.copy(), demand.last_trips))
    for weeks, gaps, last_trips in runs[1:]:
        for (units, visits), (units_1, visits_1) in zip(weeks, runs[0][0]):
            assert np.array_equal(visits, visits_1)
            assert np.array_equal(units, units_1) if device == "cpu" else np.abs(units - units_1).sum() <= 0.02 * units_1.sum() + 2
        assert np.array_equal(gaps, runs[0][1])
        if propensities == "weekly":
            assert all(np.array_equal(a, b) for a, b in zip(last_trips, runs[0][2]))
    assert sum(units.sum() for units, _ in runs[0][0]) > 0


def test_a_bad_price_raises_before_any_copy_moves_on(tiny_cached_scenario_dir) -> None:
    demand = _demand(tiny_cached_scenario_dir, pipeline_groups=2)
    rngs = [np.random.default_rng([5, b]) for b in range(4)]
    demand.reset(np.arange(4), 4, rngs)
    price = np.broadcast_to(demand.reference, (4, *demand.reference.shape)).copy()
    price[3, 0, 0] = np.nan  # the last group's
    before, states = demand.gaps.copy(), [rng.bit_generator.state for rng in rngs]
    with pytest.raises(ValueError, match="finite, positive prices"):
        demand.sample(np.full(4, 30), price, np.zeros_like(price), rngs)
    assert np.array_equal(demand.gaps, before) and [rng.bit_generator.state for rng in rngs] == states


def test_a_week_without_trips(tiny_cached_scenario_dir) -> None:
    demand = _demand(tiny_cached_scenario_dir)
    demand.visit_rate = np.zeros_like(demand.visit_rate)
    units, visits = _weeks(demand, 1)[0]
    assert units.sum() == 0 and visits.sum() == 0 and demand.last_trips is None


def test_trips_split_by_store_keep_their_rates_and_recency(tiny_scenario_dir) -> None:
    """Poisson splitting: a shopper's trips to each managed store are Poisson(rate x q'), and a shopper
    with a trip anywhere (a managed store or elsewhere) restarts their weeks-since-last-trip."""
    demand = _demand(tiny_scenario_dir, propensities="fixed")
    n_copies, weeks = 200, 3
    rngs = [np.random.default_rng([7, b]) for b in range(n_copies)]
    demand.reset(np.arange(n_copies), n_copies, rngs)
    price = np.broadcast_to(demand.reference * [[1.3], [0.8]], (n_copies, *demand.reference.shape)).copy()
    depth = np.zeros_like(price)
    tilted = demand._choice(demand._response_inputs(price, depth)[2])[0]  # [N, M], the same for every copy
    expected_visits = demand.visit_rate @ tilted
    assert expected_visits[1] > expected_visits[0]  # the cheaper store draws more of the shoppers' trips
    visits = np.stack([demand.sample(np.full(n_copies, 20 + w), price, depth, rngs)[1] for w in range(weeks)])
    mean, se = visits.mean((0, 1)), visits.std((0, 1)) / np.sqrt(n_copies * weeks)
    assert np.all(np.abs(mean - expected_visits) < 4 * se)
    fresh = demand.gaps == 1.0  # shoppers with a trip in the last simulated week
    assert abs(fresh.mean(0) - (1 - np.exp(-demand.visit_rate))).max() < 0.15
    assert abs(fresh.mean() - (1 - np.exp(-demand.visit_rate)).mean()) < 0.01


def test_nonzero_poisson_is_the_dense_inversions_nonzero_cells() -> None:
    from retailsim_env.demand import _nonzero_poisson, _poisson_inverse_cdf

    rng = np.random.default_rng(3)
    uniform = rng.random((40, 90))[:, :60]  # a strided view, as the environment passes it
    rate = rng.uniform(0.0, 0.6, (40, 60)) * (rng.random((40, 60)) < 0.8)
    rate[5, :5] = [0.0, 3.0, 4.5, 9.0, 30.0]  # both search paths
    dense = _poisson_inverse_cdf(uniform, rate)
    row, column, count = _nonzero_poisson(uniform, rate)
    nonzero = np.nonzero(dense)
    assert np.array_equal(row, nonzero[0]) and np.array_equal(column, nonzero[1]) and np.array_equal(count, dense[nonzero])
    with pytest.raises(ValueError, match="Poisson rates must be finite"):
        _nonzero_poisson(uniform, np.where(rate > 0.5, np.nan, rate))  # a NaN draws no trip: it must raise
    with pytest.raises(ValueError, match="one shape"):
        _nonzero_poisson(uniform, rate[:1])


def test_poisson_inverse_cdf_draws_poisson_counts() -> None:
    """At small rates (the search from 0) and large ones (from the guess, walking down and up), the
    counts' frequencies are Poisson's pmf; the CDF's edges map to the right counts on both paths."""
    from scipy import stats

    from retailsim_env.demand import INVERSION_GUESS_RATE, MAX_POISSON_RATE, _poisson_inverse_cdf

    rng = np.random.default_rng(0)
    n = 100_000
    for rate in (0.05, 0.7, 3.3, INVERSION_GUESS_RATE, 12.0, 57.5, 3000.0):
        counts = _poisson_inverse_cdf(rng.random(n), np.full(n, rate))
        k = np.arange(int(rate + 8 * np.sqrt(rate)) + 3)
        pmf = stats.poisson.pmf(k, rate)
        frequency = np.bincount(counts, minlength=len(k))[: len(k)] / n
        assert np.all(np.abs(frequency - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / n) + 1e-4), rate
    for rate in (0.5, 2.0, 6.0, 40.0, 900.0):
        j = np.unique(np.maximum(np.round(rate + np.array([-2.0, 0.0, 2.0]) * np.sqrt(rate)), 0))
        cdf = stats.poisson.cdf(j, rate)  # just below P(X <= j): at most j; just above it: more than j
        assert np.all(_poisson_inverse_cdf(cdf * (1 - 1e-9), np.full(len(j), rate)) == j), rate
        assert np.all(_poisson_inverse_cdf(cdf * (1 + 1e-9), np.full(len(j), rate)) == j + 1), rate
    edge = np.exp(-np.array([0.5, 2.0]))  # P(X = 0): below it 0, at it 1
    assert _poisson_inverse_cdf(np.stack([edge - 1e-12, edge, np.zeros(2)]), np.array([0.5, 2.0])).tolist() == [[0, 0], [1, 1], [0, 0]]
    rate = np.array([0.5, 2.0, 25.0, 1e6])
    assert (_poisson_inverse_cdf(np.full((3, 4), 1 - 2**-53), rate) > rate).all()  # the top of [0, 1) ends too
    assert (_poisson_inverse_cdf(np.zeros((2, 4)), rate) == 0).all() and _poisson_inverse_cdf(np.zeros(1), np.zeros(1))[0] == 0
    for bad in (np.inf, np.nan, -1.0, 2 * MAX_POISSON_RATE):
        with pytest.raises(ValueError, match="Poisson rates must be finite"):
            _poisson_inverse_cdf(np.full(2, 0.5), np.array([1.0, bad]))
    ints = _poisson_inverse_cdf(np.full(3, 0.5), np.array([3, 3, 30], dtype=np.uint8))  # any real dtype, as float64
    assert ints.tolist() == _poisson_inverse_cdf(np.full(3, 0.5), np.array([3.0, 3.0, 30.0])).tolist() == [3, 3, 30]
    assert _poisson_inverse_cdf(np.full(2, 0.5), 12.0).tolist() == [12, 12]  # a scalar rate broadcasts


def test_oracle_units_are_the_generators_overdispersed_draws_around_its_forecast(default_scenario) -> None:
    """Realized oracle units average to its forecast (the generator's expected units, promoted lifts
    raised to the lift scale) and are overdispersed like the generated data, not Poisson."""
    stores, products = default_scenario.store_rows(None, count=2), default_scenario.product_rows(6)
    oracle = OracleDemand(default_scenario, stores, products)
    reference = np.asarray(default_scenario.reference_prices)[np.ix_(stores, products)][None]
    depth = np.zeros_like(reference)
    depth[..., ::2] = 0.2
    scale, weeks = np.full_like(reference, 0.5), np.array([12])
    rngs = [np.random.default_rng(3)]
    draws = np.array([oracle.sample(weeks, reference, depth, rngs, scale)[0][0] for _ in range(800)])
    forecast = oracle.forecast(weeks, reference, depth, scale)[0]
    assert np.all(np.abs(draws.mean(0) - forecast) < 4 * np.sqrt(draws.var(0) / len(draws)))
    assert (draws.var(0) / draws.mean(0)).max() > 2.0
    full_lift = oracle.forecast(weeks, reference, depth)[0]
    assert np.all(full_lift[:, ::2] > forecast[:, ::2]) and np.array_equal(full_lift[:, 1::2], forecast[:, 1::2])


def test_learned_market_replays_the_historys_units_at_the_historys_prices(tiny_scenario_dir, tiny_workdir) -> None:
    """At every training week's own prices and promotions (read back from the pipeline's price table), the
    learned market's expected units average to the history's mean weekly units, per store and product
    (store switching off: the level carries the models' level, the card-less baskets and the history's
    promotions, not the stores' price levels); realized units average to the forecast."""
    demand = _demand(tiny_scenario_dir, products=4, propensities="fixed")
    scenario, stores, products = demand.scenario, demand.store_rows, demand.product_rows
    demand.choice_sensitivity = 0.0
    assert not np.allclose(demand.level, 1.0)
    table = pd.read_parquet(tiny_workdir.workdir / "processed" / "prices_derived.parquet").query("split == 'train'")
    cells = pd.MultiIndex.from_product([scenario.stores_by_row.loc[stores, "STORE_CODE"],
                                        scenario.catalog_by_row.loc[products, "PROD_CODE"]])  # fmt: skip
    weekly = table.set_index(["STORE_CODE", "PROD_CODE", "week_index"]).sort_index()
    weeks = np.sort(table["week_index"].unique())
    expected, observed = [], np.zeros((len(stores), len(products)))
    for week in weeks:
        rows = weekly.xs(week, level="week_index").reindex(cells)
        depth = np.where(rows["promo_flag"], rows["discount_depth"], 0.0).reshape(1, len(stores), len(products))
        paid = rows["actual_price"].to_numpy().reshape(depth.shape)
        expected.append(demand.forecast(np.array([week]), paid / (1.0 - depth), depth)[0])
        observed += rows["units"].to_numpy().reshape(observed.shape) / len(weeks)
    assert np.allclose(np.mean(expected, 0), observed, rtol=1e-6)  # the bundle stores float32
    draws, forecast = _reference_draws(demand, weeks[-1], 400, seed=1)
    assert np.all(np.abs(draws.mean(0) - forecast) < 4 * draws.std(0) / np.sqrt(len(draws)) + 1e-9)  # compound: not Poisson's sd


def test_learned_forecast_follows_the_season_index(tiny_scenario_dir, tmp_path) -> None:
    """The forecast of a week is the season-free one times the category's index at its week of the year
    (and the level that divides the seasonal history multiplier); ``seasons=False`` (EnvConfig's too) and a
    bundle built before the index have no seasons: every week's fixed-propensity forecast is the same."""
    seasonal = _demand(tiny_scenario_dir, products=4, propensities="fixed")
    plain = _demand(tiny_scenario_dir, products=4, propensities="fixed", seasons=False)
    weeks = np.array([3, 30])
    reference = np.broadcast_to(plain.reference, (2, *plain.reference.shape))
    zero = np.zeros_like(reference)
    with_seasons, without = seasonal.forecast(weeks, reference, zero), plain.forecast(weeks, reference, zero)
    categories = seasonal.scenario.catalog_by_row.loc[seasonal.product_rows, "PROD_CODE_20"]
    index = seasonal.scenario.season_index.of(list(categories))[:, week_bins(seasonal.first_monday, weeks)].T  # [2, K]
    assert not np.allclose(index[0], index[1])  # the tiny market's index moves between the two weeks
    assert np.allclose(with_seasons / without, index[:, None, :] * (seasonal.level / plain.level)[None])
    assert np.allclose(without[0], without[1])
    old = shutil.copytree(tiny_scenario_dir, tmp_path / "old", ignore=shutil.ignore_patterns(
        "season_index.parquet", "history_multiplier_seasonal.npy"))  # fmt: skip
    before = _demand(old, products=4, propensities="fixed")
    assert before.season is None and np.array_equal(before.forecast(weeks, reference, zero), without)
    envs = [RetailSimEnv(scenario=tiny_scenario_dir, products=4, config=EnvConfig(seasons=on), propensities="fixed")
            for on in (True, False)]  # fmt: skip
    assert envs[1].market.backend.season is None and envs[0].market.backend.season is not None
    on, off = (env.market for env in envs)  # the reward's scale has no season: only the levels differ
    assert np.allclose(on.reference_units / off.reference_units, on.backend.level / off.backend.level)
    for env in envs:
        env.close()


def test_the_season_lookup_table_answers_as_the_calendar_for_any_week(tiny_scenario_dir) -> None:
    """``season_of`` reads a table of data weeks grown as later weeks are asked (an episode may run years
    past the data): the same as each week's bin computed from the calendar, before and after it grows."""
    demand = _demand(tiny_scenario_dir, products=4, propensities="fixed")
    far = SEASON_TABLE_WEEKS + 5  # beyond the table's reach: from the calendar, the table not grown to it
    for weeks in (np.array([1, 30, 52]), np.array([0, 127, 128, 400, 3]), np.array([-2, 5]), np.array([far, 7]),
                  np.array([], dtype=np.int64)):  # fmt: skip
        expected = demand.season[week_bins(demand.first_monday, weeks)]
        assert np.array_equal(demand.season_of(weeks), expected) and demand.season_of(weeks).shape == expected.shape
    assert 401 <= len(demand._season_by_week) <= SEASON_TABLE_WEEKS


@pytest.mark.parametrize("quantities", [True, False])
def test_learned_units_are_compound_poisson_in_the_bundles_basket_quantities(tiny_scenario_dir, tmp_path, quantities) -> None:
    """Each week's units are basket lines with the training baskets' quantities: their mean is the
    forecast and, given the week's trips, their variance / mean is E[Q^2] / E[Q] per product, so overall
    var = E[Q^2] / E[Q] x mean + the trips' own variance (sum over shoppers of visit rate x q x (expected
    units a trip)^2). A bundle without the quantities draws Poisson units: the same with E[Q^2] / E[Q] = 1."""
    path = tiny_scenario_dir
    if not quantities:
        path = shutil.copytree(tiny_scenario_dir, tmp_path / "old", ignore=shutil.ignore_patterns("basket_quantities.parquet"))
    demand = _demand(path, products=4, propensities="fixed")
    stores, products = demand.store_rows, demand.product_rows
    dispersion = np.ones(len(products))
    if quantities:
        table = demand.scenario.basket_quantities.set_index("row").loc[products]
        q1, q2 = table["QUANTITY"] * table["baskets"], table["QUANTITY"] ** 2 * table["baskets"]
        dispersion = (q2.groupby(level=0).sum() / q1.groupby(level=0).sum()).loc[products].to_numpy()
        assert dispersion.max() > 1.5  # the tiny market has multipacks
    if not quantities:  # the draw before basket quantities, bit for bit: an old bundle replays as it did
        from retailsim_env.demand import _poisson_inverse_cdf

        u, expected = np.random.default_rng(4).random((3, len(stores) * len(products))), np.full((3, len(stores), len(products)), 7.5)
        assert demand.quantity_rates.shape == (len(products), 1)
        assert np.array_equal(demand._units(u, expected), _poisson_inverse_cdf(u.reshape(expected.shape), expected))
    draws, forecast = _reference_draws(demand, 20, 3000, seed=2)
    a_trip = demand.propensity * (demand.level * demand.season_of(np.array([20])))[:, None, :]  # [M, N, K] units a trip
    trips = (demand.visit_rate[:, None] * demand.q).T  # [M, N]
    law = dispersion * forecast + np.einsum("mn,mnk->mk", trips, a_trip**2)
    assert np.all(np.abs(draws.mean(0) - forecast) < 4 * np.sqrt(law / len(draws)))
    assert np.allclose(draws.var(0), law, rtol=0.2)
    assert np.all(draws == np.round(draws)) and draws.min() >= 0
