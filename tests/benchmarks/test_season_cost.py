"""``benchmarks/season_cost.py`` runs at tiny sizes and prints one comparison per size (its figures are
timings: checked for type and sign only)."""

from tests.benchmarks.test_gpu_check_scripts import run


def test_season_cost_compares_seasons_on_and_off_per_size() -> None:
    results = run("season_cost.py", "--num-envs", "1,2", "--rounds", "2", "--step-budget", "40")
    assert [r["num_envs"] for r in results] == [1, 2] and [r["steps_per_round"] for r in results] == [40, 20]
    for r in results:
        assert all(isinstance(r[key], float) and r[key] > 0
                   for key in ("seasons_on_copy_steps_per_s", "seasons_off_copy_steps_per_s", "seasons_on_over_seasons_off"))  # fmt: skip
