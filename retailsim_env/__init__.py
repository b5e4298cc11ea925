"""RetailSim environments: the weekly market step and its Gymnasium and PettingZoo shells.

Importing the package registers ``RetailSim-v0`` with Gymnasium; ``gym.make("retailsim_env:RetailSim-v0")``
imports it on the way. ``parallel_env`` / ``env`` build the PettingZoo multi-agent markets,
``RetailSimVectorEnv`` and ``RetailSimVecEnv`` the batched copies for Gymnasium's vector API and
Stable-Baselines3. This package imports only ``world_model``'s inference API, never the reverse.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from retailsim_env.config import EnvConfig, RewardWeights
from retailsim_env.core import InvalidActionError
from retailsim_env.env import RetailSimEnv
from retailsim_env.multi_agent import RetailSimParallelEnv, env, parallel_env
from retailsim_env.scenario import Scenario, build_scenario, default_scenario_path
from retailsim_env.vector import RetailSimVecEnv, RetailSimVectorEnv
from retailsim_env.wrappers import DictActionWrapper

ENV_ID = "RetailSim-v0"
if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="retailsim_env.env:RetailSimEnv",
             vector_entry_point="retailsim_env.vector:RetailSimVectorEnv", max_episode_steps=None)  # fmt: skip

__all__ = [
    "ENV_ID", "EnvConfig", "RewardWeights", "InvalidActionError", "RetailSimEnv", "RetailSimParallelEnv", "env",
    "parallel_env", "Scenario", "build_scenario", "default_scenario_path", "RetailSimVecEnv", "RetailSimVectorEnv",
    "DictActionWrapper",
]  # fmt: skip
