import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from retailsim_env import RetailSimEnv, RetailSimVecEnv, RetailSimVectorEnv


@pytest.mark.parametrize("n_stores, propensities", [(1, "weekly"), (2, "fixed")])
def test_vector_copy_i_replays_the_single_env_seeded_s_plus_i(default_scenario, n_stores, propensities) -> None:
    """Bit for bit, in float64 too (the observation's float32 would hide a last-digit difference, which
    rounding an order or comparing stock to a threshold can turn into another trajectory)."""
    kwargs = dict(scenario=default_scenario, products=4, episode_length=4, n_stores=n_stores, propensities=propensities,
                  config={"substitution": 0.5})  # fmt: skip
    vector, single = RetailSimVectorEnv(5, **kwargs), RetailSimEnv(**kwargs)
    obs, _ = vector.reset(seed=10)
    single_obs, _ = single.reset(seed=12)
    assert np.array_equal(obs[2], single_obs)
    vector.action_space.seed(0)
    for _ in range(3):
        action = vector.action_space.sample()
        obs, reward, _, _, info = vector.step(action)
        single_obs, single_reward, _, _, single_info = single.step(action[2])
        assert np.array_equal(obs[2], single_obs) and reward[2] == single_reward
        assert info["units"][2] == single_info["units"]
        vector_market, single_market = vector.batch.sim.market, single.market
        assert np.array_equal(vector_market.forecast[2], single_market.forecast[0])
        assert np.array_equal(vector_market.stock[2], single_market.stock[0])


def test_vector_env_resets_finished_copies_in_the_same_step(default_scenario) -> None:
    vector = RetailSimVectorEnv(2, scenario=default_scenario, products=3, episode_length=2)
    assert vector.single_action_space.shape == (9,) and vector.action_space.shape == (2, 9)
    obs, _ = vector.reset(seed=0)
    vector.step(vector.action_space.sample())
    obs, _, terminated, truncated, info = vector.step(vector.action_space.sample())
    assert truncated.all() and not terminated.any() and info["_final_obs"].all()
    assert (obs[:, -1] == 0).all() and np.allclose(info["final_obs"][:, -1], 1.0)  # episode progress restarts
    assert gym.make_vec("RetailSim-v0", num_envs=2, vectorization_mode="vector_entry_point", products=3).num_envs == 2


def test_sb3_ppo_trains_on_the_vec_env_adapter(default_scenario, tmp_path) -> None:
    venv = VecNormalize(VecMonitor(RetailSimVecEnv(2, scenario=default_scenario, products=3, episode_length=4)))
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=16)
    assert model.num_timesteps == 16 and len(model.ep_info_buffer) >= 2
    venv.save(tmp_path / "vecnormalize.pkl")
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2, 9)
