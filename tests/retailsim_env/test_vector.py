import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
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
    final = info["final_info"]  # Gymnasium's same-step layout: the finished copies' step info, masked
    assert info["_final_info"].all() and final["_profit"].all() and np.array_equal(final["profit"], info["profit"])
    assert gym.make_vec("RetailSim-v0", num_envs=2, vectorization_mode="vector_entry_point", products=3).num_envs == 2


def test_sb3_adapter_reports_truncation_the_way_sb3_bootstraps_it(default_scenario) -> None:
    """At an episode's end each copy's info holds the final observation (SB3 bootstraps the value from it),
    ``TimeLimit.truncated`` and the episode's return and length; the returned observation is the new
    episode's first."""
    venv = RetailSimVecEnv(2, scenario=default_scenario, products=3, episode_length=2, propensities="fixed")
    venv.seed(4)
    venv.reset()
    rng = np.random.default_rng(0)
    returns = np.zeros(2)
    for week in (1, 2):
        obs, reward, done, infos = venv.step(rng.uniform(-1, 1, (2, 9)).astype(np.float32))
        returns += reward
        assert done.tolist() == [week == 2] * 2
        assert all(("terminal_observation" in info) == (week == 2) for info in infos)
    assert (obs[:, -1] == 0).all()
    for info, episode_return in zip(infos, returns):
        assert info["terminal_observation"][-1] == pytest.approx(1.0) and info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 2 and info["episode"]["r"] == pytest.approx(episode_return, rel=1e-6)


def test_sb3_ppo_trains_on_the_vec_env_adapter(default_scenario, tmp_path) -> None:
    venv = VecNormalize(VecMonitor(RetailSimVecEnv(2, scenario=default_scenario, products=3, episode_length=4)))
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path / "log"), []))  # SB3's default makes a folder in the system temp dir
    model.learn(total_timesteps=16)
    assert model.num_timesteps == 16 and len(model.ep_info_buffer) >= 2
    venv.save(tmp_path / "vecnormalize.pkl")
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2, 9)


def test_vector_reset_checks_seeds_and_honours_start_week_like_the_single_env(default_scenario) -> None:
    kwargs = dict(scenario=default_scenario, products=3, episode_length=2, propensities="fixed")
    vector, single = RetailSimVectorEnv(2, **kwargs), RetailSimEnv(**kwargs)
    for seeds in ([1], [1, 2, 3]):
        with pytest.raises(ValueError, match="seed: .* seeds for 2 copies"):
            vector.reset(seed=seeds)
    obs, info = vector.reset(seed=[7, None], options={"start_week": 5})
    single_obs, single_info = single.reset(seed=7, options={"start_week": 5})
    assert np.array_equal(obs[0], single_obs) and info["week"].tolist() == [5, 5] and info["_week"].all()
    assert np.allclose(info["profit_scale"], single_info["profit_scale"])
    with pytest.raises(ValueError, match="render_mode: the vector env does not render"):
        RetailSimVectorEnv(2, render_mode="ansi", **kwargs)


def test_sb3_adapter_takes_options_and_shares_one_batch(default_scenario) -> None:
    kwargs = dict(scenario=default_scenario, products=3, episode_length=2, propensities="fixed")
    venv, single = RetailSimVecEnv(2, **kwargs), RetailSimEnv(**kwargs)
    venv.seed(3)
    venv.set_options([{"start_week": 5}, {}])
    obs = venv.reset()
    assert np.array_equal(obs[0], single.reset(seed=3, options={"start_week": 5})[0])
    assert np.array_equal(obs[1], single.reset(seed=4)[0]) and venv.reset_infos[0]["week"] == 5
    calls = []
    venv.batch.count_call = lambda: calls.append(1) or len(calls)
    assert venv.env_method("count_call") == [1, 1] and calls == [1]  # once on the batch, repeated per index
    with pytest.raises(ValueError, match="indices: \\[0\\]"):
        venv.set_attr("start_week", 9, indices=[0])
    venv.set_attr("start_week", 9, indices=[1, 0])
    assert venv.get_attr("start_week") == [9, 9]
