"""What the learned market's season index costs a step: prints JSON.

The shipped scenario with ``seasons=True`` (a lookup of each product's week-of-year index a step,
``world_model.response.season``) against ``seasons=False``, stepped side by side in one process, in rounds
that alternate the two, with the same actions (``retailsim_env.bench.compare_sizes``): per environment
size, each side's median copy-steps/s and the median of the rounds' ratios
(``seasons_on_over_seasons_off``; below 1 the index costs). Fixed propensities by default, where the
lookup's share of a step is largest.

    python benchmarks/season_cost.py [--num-envs 1,64] [--rounds 8] [--propensities fixed] [--step-budget 3000]
"""

from __future__ import annotations

import json

from retailsim_env import RetailSimEnv, RetailSimVectorEnv
from retailsim_env.bench import ROUND_BUDGET, compare_sizes, side_by_side_parser


def _make(n: int, propensities: str, seasons: bool):
    kwargs = {"products": 10, "propensities": propensities, "device": "cpu", "config": {"seasons": seasons}}
    return RetailSimEnv(**kwargs) if n == 1 else RetailSimVectorEnv(n, **kwargs)


def compare(sizes: list[int], rounds: int, propensities: str, seed: int = 0, step_budget: int = ROUND_BUDGET) -> list[dict]:
    def make(n: int) -> dict:
        return {"seasons_on": _make(n, propensities, True), "seasons_off": _make(n, propensities, False)}

    return compare_sizes(make, sizes, rounds, propensities, seed, step_budget)


def main() -> None:
    args = side_by_side_parser(__doc__.splitlines()[0], "1,64").parse_args()
    for result in compare([int(n) for n in args.num_envs.split(",")], args.rounds, args.propensities, step_budget=args.step_budget):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
