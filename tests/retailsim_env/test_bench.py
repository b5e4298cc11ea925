import json

from retailsim.cli import main
from retailsim_env.bench import EnvBenchConfig, bench_env


def test_bench_env_reports_both_environments_and_the_forward(default_scenario) -> None:
    report = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=2, steps=2, warmup=0, products=3,
                                      device="cpu"))  # fmt: skip
    assert set(report) >= {"single", "vector", "forward", "step_to_forward_ratio", "device"}
    assert report["vector"]["visits_per_step"] > 0 and report["forward"]["median_batch"] > 0
    assert report["shoppers"] == len(default_scenario.shoppers)
    beyond = report["beyond_forward"]  # the step's time outside the forward, per visit, and its ceiling
    assert beyond["us_per_visit"] > 0
    assert beyond["visits_per_s"] > report["vector"]["shopper_visits_per_s"]  # more than the whole step allows
    by_batch = report["forward_by_inference_batch"]  # the chunk-size sweep, the default restored after
    assert set(by_batch) == {"256", "1024", "4096"} and min(by_batch.values()) > 0 and report["inference_batch"] == 256


def test_cli_prints_json(capsys) -> None:
    assert main(["bench", "env", "--num-envs", "2", "--steps", "1", "--warmup", "0", "--products", "2"]) == 0
    assert "step_to_forward_ratio" in json.loads(capsys.readouterr().out)


def test_bench_env_measures_copy_groups_side_by_side_with_one(default_scenario) -> None:
    report = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=3, steps=2, warmup=0, products=3,
                                      pipeline_groups=2))  # fmt: skip
    assert report["pipeline_groups"] == 2 and report["vector_one_group"]["shopper_visits_per_s"] > 0
    assert report["pipeline_speedup"] > 0
    plain = bench_env(EnvBenchConfig(scenario=str(default_scenario.path), num_envs=2, steps=1, warmup=0, products=3,
                                     device="cpu"))  # fmt: skip
    assert plain["pipeline_groups"] == 1 and plain["vector_one_group"] is None  # a CPU's default: nothing to compare
