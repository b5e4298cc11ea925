"""``benchmarks/units_draw.py`` runs at tiny sizes and prints one comparison per size (its figures are
timings: checked for type only)."""

from tests.benchmarks.test_gpu_check_scripts import run


def test_units_draw_compares_both_draws_per_size() -> None:
    results = run("units_draw.py", "--num-envs", "1,2", "--rounds", "2", "--step-budget", "40")
    assert [r["num_envs"] for r in results] == [1, 2] and [r["steps_per_round"] for r in results] == [40, 20]
    for r in results:
        assert all(isinstance(r[key], float) for key in ("compound_copy_steps_per_s", "poisson_copy_steps_per_s",
                                                         "compound_over_poisson"))  # fmt: skip
