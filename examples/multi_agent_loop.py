"""A PettingZoo multi-agent loop: pricing, promo and inventory agents, then two competing stores.

    python examples/multi_agent_loop.py [--weeks 12]

Each agent here follows a simple rule from its own observation; swap in learned policies
(``retailsim agents train-multi``) or any PettingZoo-compatible library.
"""

import argparse

import numpy as np

import retailsim_env

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--weeks", type=int, default=12)
args = parser.parse_args()

env = retailsim_env.parallel_env("functions", products=5, episode_length=args.weeks, propensities="fixed")
observations, infos = env.reset(seed=0)
returns = dict.fromkeys(env.agents, 0.0)
while env.agents:
    week = env.sim.market.t[0]
    actions = {
        "pricing": np.full(5, 0.2, np.float32),  # a little above the middle of each price range
        "promo": np.where(np.arange(5) == week % 5, 0.3, -1.0).astype(np.float32),  # rotate one promotion a week
        "inventory": np.zeros(5, np.float32),  # order one forecast week
    }
    observations, rewards, terminations, truncations, infos = env.step(actions)
    for agent, reward in rewards.items():
        returns[agent] += reward
print("functions:", {agent: round(value, 2) for agent, value in returns.items()})

env = retailsim_env.parallel_env("competition", n_stores=2, products=5, episode_length=args.weeks, propensities="fixed")
observations, infos = env.reset(seed=0)
cheap, dear = env.possible_agents
profit = dict.fromkeys(env.agents, 0.0)
while env.agents:
    actions = {cheap: np.r_[np.full(5, -0.6), -np.ones(5)].astype(np.float32), dear: np.r_[np.full(5, 0.6), -np.ones(5)].astype(np.float32)}
    observations, rewards, terminations, truncations, infos = env.step(actions)
    for agent in profit:
        profit[agent] += infos[agent]["profit"]
print("competition, low vs high prices:", {agent: round(value, 1) for agent, value in profit.items()})
