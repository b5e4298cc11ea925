import json

import pytest

from retailsim.cli import main
from retailsim_env.bench import INFERENCE_BATCHES, EnvBenchConfig, bench_env


def test_bench_env_reports_both_environments_and_the_forward(default_scenario) -> None:
    report = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=2, steps=2, warmup=0, products=3,
                                      device="cpu"))  # fmt: skip
    assert set(report) >= {"single", "vector", "forward", "step_to_forward_ratio", "device"}
    assert report["vector"]["visits_per_step"] > 0 and report["forward"]["median_batch"] > 0
    assert report["shoppers"] == len(default_scenario.shoppers)
    beyond = report["beyond_forward"]  # the step's time outside the forward, per visit, and its ceiling
    assert beyond["us_per_visit"] > 0 and beyond["us_per_visit"] * beyond["visits_per_s"] == pytest.approx(1e6)
    by_batch = report["forward_by_inference_batch"]  # the chunk-size sweep, the default restored after
    assert set(by_batch) == {str(b) for b in INFERENCE_BATCHES["cpu"]} and report["inference_batch"] == 256


def test_cli_prints_json(capsys) -> None:
    assert main(["bench", "env", "--num-envs", "2", "--steps", "1", "--warmup", "0", "--products", "2"]) == 0
    assert "step_to_forward_ratio" in json.loads(capsys.readouterr().out)


def test_bench_env_measures_copy_groups_side_by_side_with_one(default_scenario) -> None:
    report = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=3, steps=2, warmup=0, products=3,
                                      pipeline_groups=2))  # fmt: skip
    assert report["pipeline_groups"] == 2 and report["vector_one_group"]["shopper_visits_per_s"] > 0
    vector, one_group = report["vector"]["shopper_visits_per_s"], report["vector_one_group"]["shopper_visits_per_s"]
    assert report["pipeline_speedup"] == pytest.approx(vector / one_group)  # the ratio of the two, not a timing claim
    plain = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=2, steps=1, warmup=0, products=3,
                                     device="cpu"))  # fmt: skip
    assert plain["pipeline_groups"] == 1 and plain["vector_one_group"] is None  # a CPU's default: nothing to compare
