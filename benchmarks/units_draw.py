"""What the learned market's compound-Poisson units cost against Poisson units: prints JSON.

The shipped scenario against a copy of it without ``basket_quantities.parquet`` (such a bundle draws
Poisson units), stepped side by side in one process, in rounds that alternate the two, with the same
actions: per environment size, each side's median copy-steps/s and the median of the rounds' ratios
(compound / Poisson; below 1 the compound draw is slower). Fixed propensities by default, where the draw's
share of a step is largest.

    python benchmarks/units_draw.py [--num-envs 1,8,64] [--rounds 8] [--propensities fixed] [--step-budget 3000]
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from world_model.pipeline.basket_quantities import BASKET_QUANTITIES

from retailsim_env import RetailSimEnv, RetailSimVectorEnv
from retailsim_env.bench import ROUND_BUDGET, compare_sizes, side_by_side_parser
from retailsim_env.scenario import default_scenario_path



def _make(n: int, scenario: Path, propensities: str):
    kwargs = {"scenario": scenario, "products": 10, "propensities": propensities, "device": "cpu"}
    return RetailSimEnv(**kwargs) if n == 1 else RetailSimVectorEnv(n, **kwargs)


def compare(sizes: list[int], rounds: int, propensities: str, seed: int = 0, step_budget: int = ROUND_BUDGET) -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        poisson = Path(shutil.copytree(default_scenario_path(), Path(scratch) / "poisson_units",
                                       ignore=shutil.ignore_patterns(BASKET_QUANTITIES)))  # fmt: skip

        def make(n: int) -> dict:
            return {"compound": _make(n, default_scenario_path(), propensities), "poisson": _make(n, poisson, propensities)}

        return compare_sizes(make, sizes, rounds, propensities, seed, step_budget)


def main() -> None:
    args = side_by_side_parser(__doc__.splitlines()[0], "1,8,64").parse_args()
    for result in compare([int(n) for n in args.num_envs.split(",")], args.rounds, args.propensities, step_budget=args.step_budget):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
