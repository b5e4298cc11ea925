"""Train Stable-Baselines3 PPO on the batched RetailSim-v0 and compare it with historical pricing.

    python examples/train_ppo.py [--timesteps 200000] [--out runs/example-ppo]

The same as ``retailsim agents train`` + ``retailsim agents evaluate``, from Python: the run lands in
``OUT/run`` (``python examples/read_tensorboard.py OUT/run`` plots its curves), the report in ``OUT/report``.
"""

import argparse
from pathlib import Path

from agents.evaluate import evaluate_run, format_report
from agents.train import PPOTrainConfig, train_ppo

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--timesteps", type=int, default=200_000)
parser.add_argument("--episodes", type=int, default=4)
parser.add_argument("--out", default="runs/example-ppo")
args = parser.parse_args()

out = Path(args.out)
config = PPOTrainConfig(env_kwargs={"propensities": "fixed", "products": 10}, timesteps=args.timesteps)
summary = train_ppo(config, out / "run")
print(f"trained {summary['timesteps']:,} steps at {summary['steps_per_s']:.0f} steps/s")
report = evaluate_run(out / "run", out / "report", episodes=args.episodes, baselines=("historical", "myopic_greedy"))
print(format_report(report))
