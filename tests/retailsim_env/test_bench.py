import json

import pytest
import torch

from retailsim.cli import main
from retailsim_env import RetailSimVectorEnv
from retailsim_env.bench import INFERENCE_BATCHES, EnvBenchConfig, _forward_by_inference_batch, bench_env

# Timed figures are checked for presence and type only: their values are the machine's (benchmarks/).


def test_bench_env_reports_both_environments_and_the_forward(default_scenario) -> None:
    report = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=2, steps=2, warmup=0, products=3,
                                      device="cpu"))  # fmt: skip
    assert set(report) >= {"single", "vector", "forward", "step_to_forward_ratio", "device"}
    assert report["vector"]["visits_per_step"] > 0 and report["forward"]["median_batch"] > 0
    assert report["shoppers"] == len(default_scenario.shoppers)
    assert isinstance(report["beyond_forward"]["us_per_visit"], float)  # the step's time outside the forward, per visit
    assert isinstance(report["step_to_forward_ratio"], float) and isinstance(report["vector"]["shopper_visits_per_s"], float)
    assert set(report["forward_by_inference_batch"]) == {str(b) for b in INFERENCE_BATCHES["cpu"]}


def test_inference_batch_sweep_restores_the_backends_chunk_size(default_scenario) -> None:
    """The sweep sets each chunk size in turn and puts the backend's own back, also when a forward fails."""
    vector = RetailSimVectorEnv(2, scenario=default_scenario, products=3, device="cpu")
    vector.reset(seed=0)
    vector.step(vector.action_space.sample())
    backend = vector.batch.sim.market.backend
    backend.inference_batch = 100
    seen = []
    forward = backend.forward
    backend.forward = lambda inputs: seen.append(backend.inference_batch) or forward(inputs)
    assert set(_forward_by_inference_batch(backend, torch.device("cpu"))) == {str(b) for b in INFERENCE_BATCHES["cpu"]}
    assert sorted(set(seen)) == sorted(INFERENCE_BATCHES["cpu"]) and backend.inference_batch == 100

    def failing(inputs):
        raise RuntimeError("out of memory")

    backend.forward = failing
    with pytest.raises(RuntimeError, match="out of memory"):
        _forward_by_inference_batch(backend, torch.device("cpu"))
    assert backend.inference_batch == 100


def test_cli_prints_json(capsys) -> None:
    assert main(["bench", "env", "--num-envs", "2", "--steps", "1", "--warmup", "0", "--products", "2"]) == 0
    assert "step_to_forward_ratio" in json.loads(capsys.readouterr().out)


def test_bench_env_measures_copy_groups_side_by_side_with_one(default_scenario) -> None:
    report = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=3, steps=2, warmup=0, products=3,
                                      pipeline_groups=2))  # fmt: skip
    assert report["pipeline_groups"] == 2 and isinstance(report["vector_one_group"]["shopper_visits_per_s"], float)
    assert isinstance(report["pipeline_speedup"], float)
    plain = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=2, steps=1, warmup=0, products=3,
                                     device="cpu"))  # fmt: skip
    assert plain["pipeline_groups"] == 1 and plain["vector_one_group"] is None  # a CPU's default: nothing to compare
