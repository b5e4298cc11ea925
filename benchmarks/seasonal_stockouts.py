"""Where in the year a trained policy runs out of stock: prints JSON.

For a ``retailsim agents train`` run (or ``retailsim demo``'s ``ppo`` folder) and the (s, S) baseline, on the
evaluation's episodes (``agents.evaluate``: same seeds, same environment arguments), in each demand mode:
the share of demand lost to stock-outs in the November-December weeks (a week counts by its Monday's
month) and in the other weeks (null where the episodes have no such week), with the copy-weeks of each. A policy
trained in a learned market whose season misses the December peak shows it as lost demand in the
oracle's November-December.

    python benchmarks/seasonal_stockouts.py RUN_DIR [--episodes 8] [--seed 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agents.evaluate import Policy, PPOPolicy, run_env_kwargs
from agents.policies import SSInventory

from retailsim_env import RetailSimVectorEnv
from retailsim_env.scenario import Scenario


def lost_shares(policy: Policy, venv: RetailSimVectorEnv, seed: int) -> dict[str, float | int | None]:
    """{"nov_dec", "other"}: lost / demand over the episodes' weeks in and outside November-December
    (None without such weeks), and {"nov_dec_weeks", "other_weeks"}: how many copy-weeks each."""
    observation, _ = venv.reset(seed=seed)
    sim = venv.batch.sim
    lost, demand, holiday = [], [], []
    for _ in range(sim.config.episode_length):
        mondays = sim.first_monday + 7 * (sim.market.week - 1)
        holiday.append(mondays.astype("datetime64[M]").astype(np.int64) % 12 >= 10)
        observation, _, _, _, info = venv.step(policy.act(sim, observation))
        lost.append(info["stockout_units"])
        demand.append(info["demand"])
    lost, demand, holiday = np.array(lost), np.array(demand), np.array(holiday)
    shares: dict[str, float | int | None] = {}
    for name, part in (("nov_dec", holiday), ("other", ~holiday)):
        shares[name] = float(lost[part].sum() / max(demand[part].sum(), 1e-9)) if part.any() else None
        shares[f"{name}_weeks"] = int(part.sum())
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    env_kwargs = run_env_kwargs(args.run)
    modes = ("learned", "oracle") if Scenario(env_kwargs.get("scenario")).has_ground_truth else ("learned",)
    result = {}
    for mode in modes:
        venv = RetailSimVectorEnv(args.episodes, **{**env_kwargs, "demand": mode})
        result[mode] = {policy.name: lost_shares(policy, venv, args.seed) for policy in (PPOPolicy(args.run), SSInventory())}
        venv.close()
    print(json.dumps({"run": str(args.run), "episodes": args.episodes, "seed": args.seed, "lost_demand": result}, indent=1))


if __name__ == "__main__":
    main()
