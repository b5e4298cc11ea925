"""What a weekly vector-env step costs the host when the model's work is taken away: prints JSON.

The basket-model forward and the context gathers (``index_select`` of the cached inputs) are replaced by
stand-ins that cost next to nothing (zero logits of the right shape; T3 is still built), so what is timed
is the trips' and units' draws, T3's indices, the probabilities' softmax and copy back, the sums and the
accounting: on a GPU, the gathers and the forward run on the device and the rest stays on the host but
the softmax over the vocabulary, which runs on the device too. So the softmax (and pick of the managed
products) is timed apart on a batch of the last step's trips, and ``without_softmax`` is the host's
ceiling on a GPU run, measured on any machine.

    python benchmarks/env_host_floor.py [--num-envs 64,256] [--steps 30] [--warmup 5]

``beyond_forward`` of ``retailsim bench env`` is the same bound measured around the real forward (on a
CPU it also counts the gathers and the forward's own host work).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from retailsim_env.bench import timed_steps
from retailsim_env.vector import RetailSimVectorEnv


def host_floor(num_envs: int, steps: int, warmup: int, seed: int = 0) -> dict:
    env = RetailSimVectorEnv(num_envs, propensities="weekly", device="cpu")
    demand = env.batch.sim.market.backend
    probe = demand.model_inputs(np.arange(1), np.full(1, demand.first_monday), np.ones(1), np.zeros(1))
    n_logits = demand.forward(probe).shape[1]

    def inputs_without_gathers(slots, mondays, gaps, elapsed):
        return [{"t3": demand.temporal(demand.slot_shopper[slots], mondays, gaps), "rows": torch.from_numpy(slots)}]

    demand.model_inputs = inputs_without_gathers
    demand.forward = lambda inputs: torch.zeros(sum(len(chunk["t3"]) for chunk in inputs), n_logits)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    step_visits = lambda: float(env.step(env.action_space.sample())[4]["visits"].sum())  # noqa: E731
    times, visits = timed_steps(step_visits, steps, warmup, torch.device("cpu"))
    trips = len(demand.last_trips[0])
    logits = torch.zeros(trips, n_logits)
    softmax = []
    for _ in range(5):
        start = time.perf_counter()
        demand.managed_probabilities(logits).cpu().numpy()
        softmax.append(time.perf_counter() - start)
    median, softmax_s = statistics.median(times), statistics.median(softmax)
    per_visit = sum(times) / max(visits, 1.0)
    rest_per_visit = (sum(times) - softmax_s * len(times)) / max(visits, 1.0)
    return {"num_envs": num_envs, "steps": steps, "median_step_ms": 1e3 * median, "visits_per_step": visits / steps,
            "us_per_visit": 1e6 * per_visit, "visits_per_s": 1.0 / per_visit, "softmax_ms": 1e3 * softmax_s,
            "without_softmax": {"us_per_visit": 1e6 * rest_per_visit, "visits_per_s": 1.0 / rest_per_visit}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", default="64,256", help="comma-separated vector sizes")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    for num_envs in (int(n) for n in args.num_envs.split(",")):
        print(json.dumps(host_floor(num_envs, args.steps, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
