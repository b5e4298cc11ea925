"""``retailsim bench env``: throughput of the single and the vector environment, and what a step costs
beyond its model inference.

For each environment: steps per second (environment steps: a vector step of n copies counts n) and
shopper-visits per second (trips that went through the basket model). The ratio is the total time of the
timed vector steps over the total time of the bare basket-model forward, timed right after each step on
that step's trips (inputs already assembled; with a history cache, the cached decoder the step runs):
1.0 means a step costs nothing beyond its inference (on a GPU the copy groups of
``LearnedDemand.pipeline_groups`` bring it closer to 1: the host draws one group during another's
forward). ``beyond_forward`` is, over ``steps`` more vector steps, the time outside their own forwards (each timed inside the step, the device synchronized
around it, which also serializes the groups) per visit, and the visits/s it alone would allow (a model of
zero cost): the ceiling the rest of the step (draws, inputs, accounting; on a GPU mostly the host's
share) puts on throughput; with fixed propensities the whole step. The throughput figures come from
steps without that timing inside. With more than one copy group, ``vector_one_group`` is as many steps
more with one group, and ``pipeline_speedup`` the ratio of the two visits/s, side by side in one run.
``forward_by_inference_batch`` is the bare forward's trips/s on the last step's trips at several chunk
sizes (``LearnedDemand.inference_batch``; ``INFERENCE_BATCHES`` by device), to tune the default.
Timings are medians over ``steps`` timed steps after ``warmup`` untimed ones; random actions from a
seeded action space.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from world_model.models.mamba import backend_for

from retailsim_env.demand import PROPENSITY_MODES
from retailsim_env.env import RetailSimEnv
from retailsim_env.vector import RetailSimVectorEnv


INFERENCE_BATCHES = {"cpu": (256, 1024, 4096), "cuda": (1024, 4096, 16384)}
"""Chunk sizes ``forward_by_inference_batch`` tries (a CPU's largest bounded by its memory at full size)."""


def _forward_by_inference_batch(backend, device: torch.device) -> dict[str, float] | None:
    """{chunk size: trips/s} of the bare forward on the last step's trips, median of 3, the backend's
    chunk size restored after."""
    if getattr(backend, "last_trips", None) is None:
        return None
    last, default = backend.last_trips, backend.inference_batch
    trips, rates = len(last[0]), {}
    try:
        for batch in INFERENCE_BATCHES.get(device.type, INFERENCE_BATCHES["cuda"]):
            backend.inference_batch = batch
            inputs = backend.model_inputs(*last)
            _timed(lambda: backend.forward(inputs), device)  # untimed: a new chunk shape may allocate
            seconds = float(np.median([_timed(lambda: backend.forward(inputs), device)[0] for _ in range(3)]))
            rates[str(batch)] = trips / seconds
    finally:
        backend.inference_batch = default
    return rates


@dataclass(frozen=True)
class EnvBenchConfig:
    scenario: str | None = None
    num_envs: int = 8
    steps: int = 10
    warmup: int = 2
    products: int = 10
    n_stores: int = 1
    device: str = "auto"
    propensities: str = "weekly"
    """"fixed" measures the env without a forward per step (no forward time or ratio then)."""
    seed: int = 0
    pipeline_groups: int | None = None
    """Copy groups of the vector env's weekly step (default: the backend's, 2 on CUDA, 1 on a CPU)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call, device: torch.device):
    """(seconds, result) of one call, the device synchronized on both sides."""
    _sync(device)
    start = time.perf_counter()
    result = call()
    _sync(device)
    return time.perf_counter() - start, result


def timed_steps(step, steps: int, warmup: int, device: torch.device) -> tuple[list[float], float]:
    """(seconds of each of ``steps`` calls of ``step`` after ``warmup`` untimed ones, the sum of what the
    timed calls return: their visits); the device synchronized around each call."""
    times, visits = [], 0.0
    for i in range(warmup + steps):
        seconds, info_visits = _timed(step, device)
        if i >= warmup:
            times.append(seconds)
            visits += info_visits
    return times, visits


def bench_env(config: EnvBenchConfig = EnvBenchConfig()) -> dict:
    """The figures (module docstring) as a JSON-ready dict."""
    kwargs = dict(scenario=config.scenario, products=config.products, n_stores=config.n_stores, device=config.device,
                  episode_length=10_000, propensities=config.propensities)  # fmt: skip
    single = RetailSimEnv(**kwargs)
    device = single.market.backend.device if hasattr(single.market.backend, "device") else torch.device("cpu")
    single.action_space.seed(config.seed)
    single.reset(seed=config.seed)
    single_times, single_visits = timed_steps(lambda: single.step(single.action_space.sample())[4]["visits"],
                                               config.steps, config.warmup, device)  # fmt: skip
    vector = RetailSimVectorEnv(config.num_envs, **kwargs)
    vector.action_space.seed(config.seed)
    vector.reset(seed=config.seed)
    backend = vector.batch.sim.market.backend
    if config.pipeline_groups is not None:
        backend.pipeline_groups = config.pipeline_groups
    in_step: list[float] = []  # the forward's seconds inside the timed steps
    step_forward = backend.forward

    def forward_timed_in_step(inputs):
        seconds, logits = _timed(lambda: step_forward(inputs), device)
        in_step.append(seconds)
        return logits

    vector_step_visits = lambda: float(vector.step(vector.action_space.sample())[4]["visits"].sum())  # noqa: E731
    vector_times, forward_times, vector_visits, batch_sizes = [], [], 0.0, []
    for i in range(config.warmup + config.steps):
        step_time, visits = _timed(vector_step_visits, device)
        if i < config.warmup:
            continue
        vector_times.append(step_time)
        vector_visits += visits
        last = backend.last_trips
        if last is not None:
            inputs = backend.model_inputs(*last)
            forward_times.append(_timed(lambda: backend.forward(inputs), device)[0])
            batch_sizes.append(len(last[0]))
    backend.forward = forward_timed_in_step  # the beyond_forward pass: each forward timed inside its step
    try:
        times_in_step, visits_in_step = timed_steps(vector_step_visits, config.steps, 0, device)
    finally:
        del backend.forward  # the class's method again
    one_group = None
    if getattr(backend, "pipeline_groups", 1) > 1 and config.propensities == "weekly":
        groups, backend.pipeline_groups = backend.pipeline_groups, 1
        try:
            times, visits = timed_steps(vector_step_visits, config.steps, 0, device)
        finally:
            backend.pipeline_groups = groups
        one_group = {"steps_per_s": config.num_envs / float(np.median(times)), "shopper_visits_per_s": visits / sum(times)}
    single_step, vector_step = float(np.median(single_times)), float(np.median(vector_times))
    forward = float(np.median(forward_times)) if forward_times else None
    beyond = sum(times_in_step) - sum(in_step)
    return {
        "config": asdict(config), "device": str(device), "scenario": single.market.scenario.name,
        "mamba_backend": backend_for(torch.zeros(1, device=device)),
        "shoppers": int(backend.n_shoppers), "model": backend.basket_model.config.to_dict(),
        "history_cache_mb": backend.history_cache.nbytes / 2**20 if backend.history_cache is not None else None,
        "single": {"steps_per_s": 1.0 / single_step, "shopper_visits_per_s": single_visits / sum(single_times),
                   "median_step_s": single_step},
        "vector": {"num_envs": config.num_envs, "steps_per_s": config.num_envs / vector_step,
                   "shopper_visits_per_s": vector_visits / sum(vector_times), "median_step_s": vector_step,
                   "visits_per_step": vector_visits / config.steps},
        "pipeline_groups": getattr(backend, "pipeline_groups", 1), "vector_one_group": one_group,
        "pipeline_speedup": (vector_visits / sum(vector_times)) / one_group["shopper_visits_per_s"] if one_group else None,
        "forward": {"median_batch": float(np.median(batch_sizes)) if batch_sizes else 0.0, "median_s": forward},
        "inference_batch": getattr(backend, "inference_batch", None),
        "forward_by_inference_batch": _forward_by_inference_batch(backend, device) if forward_times else None,
        "step_to_forward_ratio": sum(vector_times) / sum(forward_times) if forward_times else None,
        "beyond_forward": {"us_per_visit": 1e6 * beyond / max(visits_in_step, 1.0),
                           "visits_per_s": visits_in_step / beyond if beyond > 0 else None},
    }  # fmt: skip


def copy_steps_per_s(env, n: int, action: np.ndarray, steps: int) -> float:
    """Copy-steps/s of ``steps`` steps of ``env`` (the single env when ``n`` is 1, reset when its episode
    ends; the vector env resets its copies itself), ``action`` every step."""
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(action)
        if n == 1 and (terminated or truncated):
            env.reset()
    return steps * n / (time.perf_counter() - start)


ROUND_BUDGET = 3_000
"""Copy-steps a ``side_by_side`` round times per environment with fixed propensities by default
(``round_steps``): about a minute for three sizes and 8 rounds of two envs on 2 CPU cores."""


def round_steps(n: int, propensities: str, budget: int = ROUND_BUDGET) -> int:
    """Steps a round of copies-``n`` envs takes: ``budget`` copy-steps (at least 20 steps); with weekly
    propensities, a forward a step, a fifteenth of that (at least 5)."""
    return max(budget // n, 20) if propensities == "fixed" else max(budget // (15 * n), 5)


def side_by_side(envs: dict[str, object], n: int, steps: int, rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Per env of ``envs`` (same size ``n``, same action space), its copy-steps/s in each of ``rounds``
    rounds of ``steps`` steps that alternate the envs, after a warm-up of a tenth as many: the same seeded
    action every step, so the ratio of two envs' rates in one round compares them under one machine load
    (on a shared machine that load moves more between runs than many a difference does)."""
    first = next(iter(envs.values()))
    action = np.random.default_rng(seed).uniform(-1, 1, first.action_space.shape).astype(np.float32)
    for env in envs.values():
        env.reset(seed=seed)
        copy_steps_per_s(env, n, action, max(steps // 10, 2))
    rates: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(rounds):
        for name, env in envs.items():
            rates[name].append(copy_steps_per_s(env, n, action, steps))
    return rates


def compare_sizes(make: Callable[[int], dict[str, object]], sizes: list[int], rounds: int, propensities: str,
                  seed: int = 0, budget: int = ROUND_BUDGET) -> list[dict]:  # fmt: skip
    """Two envs side by side at each size n of ``sizes``: ``make(n)`` returns them by name (first, second),
    ``propensities`` the mode they were made in. Per size, JSON-ready: each one's median copy-steps/s
    (``NAME_copy_steps_per_s``) and the median of the rounds' ratios ``FIRST_over_SECOND``."""
    results = []
    for n in sizes:
        envs = make(n)
        steps = round_steps(n, propensities, budget)
        rates = side_by_side(envs, n, steps, rounds, seed)
        for env in envs.values():
            env.close()
        first, second = envs
        result = {"num_envs": n, "propensities": propensities, "rounds": rounds, "steps_per_round": steps}
        result.update({f"{name}_copy_steps_per_s": statistics.median(rates[name]) for name in envs})
        result[f"{first}_over_{second}"] = statistics.median([a / b for a, b in zip(rates[first], rates[second])])
        results.append(result)
    return results


def side_by_side_parser(description: str, sizes: str) -> argparse.ArgumentParser:
    """The options of a ``compare_sizes`` script: ``--num-envs`` (default ``sizes``), ``--rounds``,
    ``--propensities`` and ``--step-budget``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--num-envs", default=sizes, help="comma-separated sizes (1: the single env)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--propensities", choices=PROPENSITY_MODES, default="fixed")
    parser.add_argument("--step-budget", type=int, default=ROUND_BUDGET,
                        help="copy-steps a round times (fixed; a fifteenth of it weekly)")  # fmt: skip
    return parser

