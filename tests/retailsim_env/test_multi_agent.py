import gc
import weakref

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import retailsim_env
from retailsim_env import InvalidActionError
from world_model.errors import RetailSimError

MODES = ("functions", "competition")


@pytest.mark.parametrize("mode", MODES)
def test_pettingzoo_parallel_api_and_seed_tests_pass(default_scenario, mode) -> None:
    parallel_api_test(retailsim_env.parallel_env(mode, scenario=default_scenario, products=3, episode_length=4), num_cycles=8)
    parallel_seed_test(lambda: retailsim_env.parallel_env(mode, scenario=default_scenario, products=3, episode_length=4))


def test_aec_conversion_passes_the_api_test(default_scenario) -> None:
    api_test(retailsim_env.env("functions", scenario=default_scenario, products=3, episode_length=3), num_cycles=6)


def test_functions_agents_each_drive_their_own_field(default_scenario) -> None:
    """Pricing sets the prices, promo the depths, inventory the orders, and each agent's reward is the
    documented sum of the shared profit and its own shaping terms."""
    env = retailsim_env.parallel_env("functions", scenario=default_scenario, products=3, episode_length=2)
    observations, _ = env.reset(seed=0)
    assert env.agents == ["pricing", "promo", "inventory"]
    assert {a: o.shape for a, o in observations.items()} == {"pricing": (15,), "promo": (15,), "inventory": (18,)}
    market, weights = env.sim.market, env.config.reward
    _, rewards, _, _, infos = env.step({"pricing": np.ones(3), "promo": np.ones(3), "inventory": -np.ones(3)})
    assert np.allclose(market.price[0, 0], np.round(market.price_max, 2))
    assert np.allclose(market.depth, env.config.max_promo_depth)
    assert (market.pipeline[0, -1] == 0).all()  # inventory at -1: no order
    info = infos["pricing"]
    profit, boundary = weights.profit * info["reward_profit"], weights.boundary * info["reward_boundary_penalty"]
    assert rewards["pricing"] == pytest.approx(profit - boundary + weights.diversity * info["reward_diversity_bonus"])
    # 3 prices at the bound plus the discounted prices below cost: the promo agent pays for the latter only
    assert info["reward_boundary_penalty"] == 3 + info["price_violations"]
    assert rewards["promo"] == pytest.approx(profit - weights.boundary * info["price_violations"])
    assert rewards["inventory"] == pytest.approx(profit + weights.alignment * info["reward_inventory_alignment"])
    forecast = market.forecast.copy()
    env.step({"pricing": -np.ones(3), "promo": -np.ones(3), "inventory": np.ones(3)})
    assert np.allclose(market.price[0, 0], np.round(market.price_min, 2)) and (market.depth == 0).all()
    assert np.array_equal(market.pipeline[0, -1], np.round(env.config.max_order_multiple * forecast[0]))  # the largest order
    assert env.agents == []


def test_competing_stores_share_shoppers(default_scenario) -> None:
    """A store that raises its prices loses trips to its rival. An episode's first week draws the same
    uniforms whatever the prices (trip counts invert the Poisson CDF), so counts move with the rates alone:
    per seed the rival's visits cannot fall; over five seeds they rise."""

    def first_weeks(first_store_position: float) -> np.ndarray:
        env = retailsim_env.parallel_env("competition", scenario=default_scenario, products=10, episode_length=6)
        first, second = env.possible_agents
        action = {first: np.r_[np.full(10, first_store_position), -np.ones(10)], second: np.r_[np.zeros(10), -np.ones(10)]}
        visits = []
        for seed in range(5):
            env.reset(seed=seed, options={"start_week": 8})
            infos = env.step(action)[4]
            visits.append([infos[first]["visits"], infos[second]["visits"]])
        return np.array(visits)  # [seed, (own, rival)]

    dear, cheap = first_weeks(1.0), first_weeks(-1.0)
    assert np.all(dear[:, 1] >= cheap[:, 1]) and dear[:, 1].sum() > cheap[:, 1].sum()
    assert np.all(dear[:, 0] <= cheap[:, 0]) and dear[:, 0].sum() < cheap[:, 0].sum()


def test_mode_and_store_count_are_checked(default_scenario) -> None:
    with pytest.raises(ValueError, match="mode"):
        retailsim_env.parallel_env("auction", scenario=default_scenario)
    kwargs = dict(scenario=default_scenario, products=3, propensities="fixed")
    code = default_scenario.stores["STORE_CODE"].iloc[0]
    for stores in (None, code, [code]):  # one store would compete with nobody: NaN observations
        with pytest.raises(ValueError, match="stores / n_stores: mode 'competition' needs 2 or more distinct stores"):
            retailsim_env.parallel_env("competition", stores=stores, n_stores=1, **kwargs)
    with pytest.raises(RetailSimError, match=f"stores: {code} given more than once"):
        retailsim_env.parallel_env("competition", stores=[code, code], **kwargs)
    with pytest.raises(ValueError, match="n_stores: mode 'functions' runs one store, got n_stores=4"):
        retailsim_env.parallel_env("functions", n_stores=4, **kwargs)
    env = retailsim_env.parallel_env("functions", episode_length=1, **kwargs)
    actions = {agent: np.zeros(3) for agent in env.possible_agents}
    with pytest.raises(RuntimeError, match=r"call reset\(\) first"):
        env.step(actions)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions: \['bogus'\] are not agents of this env"):
        env.step({**actions, "bogus": np.zeros(3)})
    env.step(actions)  # the last week: no agents remain
    assert env.agents == []
    with pytest.raises(RuntimeError, match=r"the episode ended \(or never began\); call reset\(\) first"):
        env.step(actions)


def test_spaces_are_fixed_per_agent_and_the_env_is_freed(default_scenario) -> None:
    """Each agent's spaces are one object (PettingZoo's contract), and a deleted env is collectable: caching
    the space methods with lru_cache held every env, with its models, for the process's life."""
    env = retailsim_env.parallel_env("competition", scenario=default_scenario, products=3, propensities="fixed")
    env.reset(seed=0)
    for agent in env.possible_agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent).shape == (6,)
    with pytest.raises(KeyError):
        env.action_space("pricing")  # an agent of the other mode
    first = env.possible_agents[0]
    with pytest.raises(InvalidActionError, match=rf"actions\['{first}'\]: expected shape \(6,\), got \(3,\)"):
        env.step({agent: np.zeros(3 if agent == first else 6) for agent in env.possible_agents})
    alive = weakref.ref(env)
    del env
    gc.collect()
    assert alive() is None
