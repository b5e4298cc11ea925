"""gym.make("RetailSim-v0") and a random rollout on the shipped default scenario.

    python examples/random_rollout.py [--weeks 8] [--demand learned|oracle]
"""

import argparse

import gymnasium as gym

import retailsim_env  # noqa: F401  (registers RetailSim-v0)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--weeks", type=int, default=8)
parser.add_argument("--demand", default="learned", choices=["learned", "oracle"])
args = parser.parse_args()

env = gym.make("RetailSim-v0", products=5, demand=args.demand, render_mode="ansi")
obs, info = env.reset(seed=0)
total_profit = 0.0
for week in range(args.weeks):
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    total_profit += info["profit"]
    print(f"week {info['week']:>3}: reward {reward:+.2f}  profit {info['profit']:8.2f}  units {info['units']:5.0f}  "
          f"stock-outs {info['stockouts']}  violations {info['price_violations']}")
print(env.render())
print(f"total profit over {args.weeks} random weeks: {total_profit:.2f}")
env.close()
