import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import retailsim_env

MODES = ("functions", "competition")


@pytest.mark.parametrize("mode", MODES)
def test_pettingzoo_parallel_api_and_seed_tests_pass(default_scenario, mode) -> None:
    parallel_api_test(retailsim_env.parallel_env(mode, scenario=default_scenario, products=3, episode_length=4), num_cycles=8)
    parallel_seed_test(lambda: retailsim_env.parallel_env(mode, scenario=default_scenario, products=3, episode_length=4))


def test_aec_conversion_passes_the_api_test(default_scenario) -> None:
    api_test(retailsim_env.env("functions", scenario=default_scenario, products=3, episode_length=3), num_cycles=6)


def test_functions_agents_each_drive_their_own_field(default_scenario) -> None:
    env = retailsim_env.parallel_env("functions", scenario=default_scenario, products=3, episode_length=2)
    observations, _ = env.reset(seed=0)
    assert env.agents == ["pricing", "promo", "inventory"]
    assert {a: o.shape for a, o in observations.items()} == {"pricing": (15,), "promo": (15,), "inventory": (18,)}
    market = env.sim.market
    _, rewards, _, truncations, _ = env.step({"pricing": np.ones(3), "promo": -np.ones(3), "inventory": -np.ones(3)})
    assert np.allclose(market.price[0, 0], np.round(market.price_max, 2)) and (market.depth == 0).all()
    assert rewards["pricing"] != rewards["inventory"]  # own shaping terms on a shared profit
    _, _, _, truncations, _ = env.step({a: np.zeros(3) for a in env.agents})
    assert all(truncations.values()) and env.agents == []


def test_competing_stores_share_shoppers(default_scenario) -> None:
    """A store that raises its prices loses trips to its rival (same seed, same draws otherwise)."""

    def rival_visits(first_store_position: float) -> float:
        env = retailsim_env.parallel_env("competition", scenario=default_scenario, products=10, episode_length=6)
        env.reset(seed=5, options={"start_week": 8})
        first, second = env.possible_agents
        total = 0.0
        for _ in range(6):
            action = {first: np.r_[np.full(10, first_store_position), -np.ones(10)], second: np.r_[np.zeros(10), -np.ones(10)]}
            _, _, _, _, infos = env.step(action)
            total += infos[second]["visits"]
        return total

    assert rival_visits(1.0) > rival_visits(-1.0)


def test_mode_and_store_count_are_checked(default_scenario) -> None:
    with pytest.raises(ValueError, match="mode"):
        retailsim_env.parallel_env("auction", scenario=default_scenario)
    with pytest.raises(ValueError, match="n_stores"):
        retailsim_env.parallel_env("competition", scenario=default_scenario, n_stores=1)
