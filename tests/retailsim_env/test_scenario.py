import json
import shutil

import numpy as np
import pandas as pd
import pytest

from retailsim.cli import main
from world_model.errors import RetailSimError
from world_model.response.model import PriceResponse
from world_model.response.season import estimate_seasons

from retailsim_env.scenario import (
    FORMAT, HISTORY_SEASONAL_MULTIPLIER, SEASON_INDEX, BuildConfig, Scenario, build_scenario, default_scenario_path,
    resolve_scenario,
)  # fmt: skip
from tests.retailsim_env.conftest import tiny_models


def test_bundle_holds_catalog_bounds_costs_and_hashes(tiny_scenario_dir, tiny_workdir) -> None:
    scenario = Scenario(tiny_scenario_dir)
    assert scenario.meta["format"] == FORMAT and scenario.has_ground_truth
    catalog = scenario.catalog
    assert len(catalog) == len(tiny_workdir.vocab["products"]["codes"])
    assert (catalog["price_min"] <= catalog["base_price"] + 1e-9).all()
    assert (catalog["price_max"] >= catalog["base_price"] - 1e-9).all()
    assert (catalog["price_max"] >= catalog["base_price"] * 1.1 - 0.01).all()  # the minimum spread
    truth = pd.read_parquet(tiny_workdir.workdir.parent / "raw" / "ground_truth" / "products.parquet")
    costs = catalog.set_index("PROD_CODE")["unit_cost"]
    assert np.allclose(costs, truth.set_index("PROD_CODE").loc[costs.index, "unit_cost"])
    assert scenario.reference_prices.shape == (len(scenario.stores) + 1, tiny_workdir.n_products)
    assert (scenario.shoppers["visit_rate"] > 0).all() and (scenario.shoppers["basket_items"] >= 1).all()
    quantities = scenario.basket_quantities  # the pipeline's table, by vocabulary row
    source = pd.read_parquet(tiny_workdir.workdir / "processed" / "basket_quantities.parquet")
    codes = catalog.set_index("row").loc[quantities["row"], "PROD_CODE"].to_numpy()
    assert sorted(zip(codes, quantities["QUANTITY"], quantities["baskets"])) == sorted(
        zip(source["PROD_CODE"], source["QUANTITY"], source["baskets"]))  # fmt: skip
    scenario.verify()
    assert not tiny_scenario_dir.with_name(tiny_scenario_dir.name + ".partial").exists()


def test_bundle_holds_the_workdirs_season_index(tiny_scenario_dir, tiny_workdir) -> None:
    """The index is the fit on the work directory's training weeks, in the bundle's calendar; the seasonal
    history multiplier differs from the plain one (the market's exact replay of the history with seasons
    is checked in test_demand)."""
    scenario = Scenario(tiny_scenario_dir)
    fitted = estimate_seasons(tiny_workdir.workdir / "processed" / "prices_derived.parquet",
                              PriceResponse.load(tiny_workdir.workdir), scenario.meta["calendar"]["first_monday"])  # fmt: skip
    index = scenario.season_index
    assert index.categories == fitted.categories == tuple(sorted(set(scenario.response.product_category.values())))
    assert np.allclose(index.season, fitted.season) and np.array_equal(index.covered, fitted.covered)
    assert 0 < index.covered.sum() < index.covered.size  # the tiny market's weeks cover part of a year
    plain, seasonal = scenario.history_levels[1], scenario.history_seasonal_multiplier
    assert seasonal.shape == plain.shape and not np.allclose(seasonal, plain)


def test_a_season_index_without_its_history_multiplier_or_malformed_is_refused(tiny_scenario_dir, tmp_path) -> None:
    copy = shutil.copytree(tiny_scenario_dir, tmp_path / "copy")
    pd.read_parquet(copy / SEASON_INDEX).iloc[1:].to_parquet(copy / SEASON_INDEX, index=False)
    with pytest.raises(RetailSimError, match=rf"{SEASON_INDEX}: a season table needs each WEEK_OF_YEAR"):
        Scenario(copy).season_index
    (copy / HISTORY_SEASONAL_MULTIPLIER).unlink()
    with pytest.raises(RetailSimError, match=rf"{SEASON_INDEX}: the bundle has no {HISTORY_SEASONAL_MULTIPLIER}"):
        Scenario(copy).season_index


def test_damaged_bundle_is_detected(tiny_scenario_dir, tmp_path) -> None:
    copy = shutil.copytree(tiny_scenario_dir, tmp_path / "copy")
    catalog = pd.read_parquet(copy / "catalog.parquet")
    catalog.loc[0, "unit_cost"] = 0.0
    catalog.to_parquet(copy / "catalog.parquet", index=False)
    with pytest.raises(RetailSimError, match="catalog.parquet: hash differs"):
        Scenario(copy).verify()


def test_costs_fall_back_to_the_cost_ratio_without_ground_truth(tiny_workdir, tmp_path) -> None:
    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    scenario = Scenario(build_scenario(tiny_workdir.workdir, basket, store, tmp_path / "scenario"))
    catalog = scenario.catalog
    assert not scenario.has_ground_truth and scenario.meta["cost_source"].startswith("0.7")
    assert np.allclose(catalog["unit_cost"], catalog["base_price"] * 0.7)


def test_a_non_empty_out_is_refused_unless_overwrite_and_then_replaced_whole(tiny_workdir, tmp_path) -> None:
    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    out = tmp_path / "scenario"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RetailSimError, match=r"--out: .*not empty \(pass --overwrite, or overwrite=True in Python\)"):
        build_scenario(tiny_workdir.workdir, basket, store, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    Scenario(build_scenario(tiny_workdir.workdir, basket, store, out, overwrite=True)).verify()
    assert not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "scenario"]  # no partial or aside left


def test_bad_inputs_name_the_argument(tiny_workdir, tmp_path) -> None:
    with pytest.raises(RetailSimError, match=r"scenario: .* \(no scenario.json\)"):
        resolve_scenario(tmp_path)
    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    with pytest.raises(RetailSimError, match="--ground-truth"):
        build_scenario(tiny_workdir.workdir, basket, store, tmp_path / "s", ground_truth=tmp_path)
    scenario = Scenario(default_scenario_path())
    with pytest.raises(RetailSimError, match="stores: NOPE"):
        scenario.store_rows(["NOPE"])
    with pytest.raises(RetailSimError, match="products: 100000"):
        scenario.product_rows(100000)


def _moved_department(products: pd.DataFrame) -> pd.DataFrame:
    first = products.index[0]
    products.loc[first, "PROD_CODE_20"] = products.loc[products["PROD_CODE_20"] != products.loc[first, "PROD_CODE_20"],
                                                       "PROD_CODE_20"].iloc[0]  # fmt: skip
    return products


@pytest.mark.parametrize("table,damage,message", [
    ("products", lambda t: t.iloc[1:], "1 of .* products of .* are not in it"),
    ("products", _moved_department, "1 of .* products of .* sit elsewhere in its product hierarchy"),
    ("stores", lambda t: t.iloc[1:], "1 stores of .* are not in it"),
    ("weeks", lambda t: t.iloc[2:], "covers the weeks of"),
])  # fmt: skip
def test_another_markets_ground_truth_is_refused_before_anything_is_written(table, damage, message, tiny_workdir,
                                                                            tmp_path) -> None:  # fmt: skip
    """The oracle of a bundle over another market's truth crashed, or ran the wrong market silently."""
    truth = tmp_path / "ground_truth"
    shutil.copytree(tiny_workdir.workdir.parent / "raw" / "ground_truth", truth)
    damage(pd.read_parquet(truth / f"{table}.parquet")).to_parquet(truth / f"{table}.parquet")
    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    with pytest.raises(RetailSimError, match=f"^--ground-truth: {truth}:? {message}"):
        build_scenario(tiny_workdir.workdir, basket, store, tmp_path / "s", ground_truth=truth)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ground_truth", "models"]


def test_models_of_another_work_directory_or_a_bad_cost_ratio_are_refused(tiny_workdir, tmp_path) -> None:
    import torch

    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    checkpoint = torch.load(store, weights_only=False)
    name = next(k for k, v in checkpoint["model"].items() if v.ndim == 2)  # another vocabulary: one row more
    checkpoint["model"][name] = torch.cat([checkpoint["model"][name], checkpoint["model"][name][:1]])
    torch.save(checkpoint, tmp_path / "models" / "other.pt")
    with pytest.raises(RetailSimError, match="other.pt: does not fit this work directory's vocabularies"):
        build_scenario(tiny_workdir.workdir, basket, tmp_path / "models" / "other.pt", tmp_path / "s")
    for ratio in (0.0, -1.0, float("nan")):
        with pytest.raises(RetailSimError, match="--cost-ratio: .* must be a finite number above 0"):
            BuildConfig(cost_ratio=ratio)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_a_work_directory_without_basket_quantities_is_refused_before_anything_is_written(tiny_workdir, tmp_path) -> None:
    """A work directory from before the stage: one line saying to rerun the pipeline, no bundle."""
    work = tmp_path / "work"
    shutil.copytree(tiny_workdir.workdir, work, ignore=shutil.ignore_patterns("basket_quantities.parquet"))
    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    with pytest.raises(RetailSimError, match=r"basket_quantities.parquet: missing; run `retailsim pipeline run`"):
        build_scenario(work, basket, store, tmp_path / "scenario")
    assert not (tmp_path / "scenario").exists() and not (tmp_path / "scenario.partial").exists()


def test_cli_builds_a_scenario(tiny_workdir, tmp_path, capsys) -> None:
    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    code = main(["scenario", "build", str(tiny_workdir.workdir), "--world-model", str(basket), "--store-visit",
                 str(store), "--out", str(tmp_path / "cli")])  # fmt: skip
    assert code == 0 and "products" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "scenario.json").read_text())["name"] == "cli"
    assert main(["scenario", "build", str(tmp_path), "--world-model", str(basket), "--store-visit", str(store),
                 "--out", str(tmp_path / "bad")]) == 2  # fmt: skip


def test_shipped_default_scenario_is_small_and_complete(default_scenario) -> None:
    default_scenario.verify()
    size = sum(p.stat().st_size for p in default_scenario.path.rglob("*") if p.is_file())
    assert size < 10 * 2**20
    assert default_scenario.has_ground_truth and len(default_scenario.shoppers) > 100


def test_one_product_code_is_one_product_and_the_store_count_is_checked(default_scenario) -> None:
    code = default_scenario.catalog["PROD_CODE"].iloc[0]
    assert default_scenario.product_rows(code).tolist() == default_scenario.product_rows([code]).tolist()
    stores = len(default_scenario.stores)
    assert len(default_scenario.store_rows(None, count=stores)) == stores
    for count in (0, stores + 1):
        with pytest.raises(RetailSimError, match=f"n_stores: {count} stores asked, the scenario has {stores}"):
            default_scenario.store_rows(None, count=count)


def test_code_lists_that_are_empty_repeated_or_not_codes_are_refused(default_scenario) -> None:
    store = default_scenario.stores["STORE_CODE"].iloc[0]
    product = default_scenario.catalog["PROD_CODE"].iloc[0]
    cases = [("store_rows", [store, store], f"stores: {store} given more than once"),
             ("store_rows", [], "stores: an empty list"),
             ("product_rows", [product, product], f"products: {product} given more than once"),
             ("product_rows", [], "products: an empty list"),
             ("product_rows", 2.5, r"products: one code or a list of codes, got 2.5"),
             ("product_rows", True, r"products: a count or product codes, got True")]  # fmt: skip
    for method, codes, message in cases:
        with pytest.raises(RetailSimError, match=message):
            getattr(default_scenario, method)(codes)


def test_make_default_rebuilds_the_shipped_data_around_its_models(tmp_path) -> None:
    """``--models-from``: generation, ingest and pipeline run, training does not. The shipped bundle is
    reproducible from the code: the same files with the same contents (arrays and tables compared by value,
    not bytes, which a library version may change; floats to ``REBUILD_RTOL`` / ``REBUILD_ATOL``: torch's
    float32 kernels and parallel sums differ by CPU in the last digits), so its models, history levels and
    data stay in step."""
    from retailsim_env.make_default import REBUILD_ATOL, REBUILD_RTOL, make_default

    source = Scenario(default_scenario_path())
    out = make_default(tmp_path / "work", tmp_path / "out", progress=False, models_from=source.path)
    rebuilt = Scenario(out)
    rebuilt.verify()
    assert not (tmp_path / "work" / "basket").exists()  # nothing trained
    assert set(rebuilt.meta["files"]) == set(source.meta["files"])
    for name in source.meta["files"]:
        if name.endswith(".npy"):
            rebuilt_array, source_array = np.load(out / name), np.load(source.path / name)
            assert rebuilt_array.dtype == source_array.dtype, name
            np.testing.assert_allclose(rebuilt_array, source_array, rtol=REBUILD_RTOL, atol=REBUILD_ATOL, err_msg=name)
        elif name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(source.path / name),
                                          rtol=REBUILD_RTOL, atol=REBUILD_ATOL, obj=name)  # fmt: skip
    rebuilt_categories, source_categories = (r.response.to_dict()["categories"] for r in (rebuilt, source))
    assert rebuilt_categories == [pytest.approx(c, rel=1e-9) for c in source_categories]  # CPUs differ in the last digits


def test_make_default_refuses_models_trained_on_other_data(tmp_path) -> None:
    from retailsim_env.make_default import DefaultScenarioConfig, make_default

    config = DefaultScenarioConfig(customers=60, products=40, stores=2, weeks=6, train_end=4, valid_end=5)
    with pytest.raises(RetailSimError, match=r"--models-from: .* trained on other data \(prepared/vocab.json"):
        make_default(tmp_path / "work", tmp_path / "out", config, progress=False, models_from=default_scenario_path())
    assert not (tmp_path / "out").exists()


def test_swapped_or_masked_checkpoints_are_refused_before_anything_is_written(tiny_workdir, tmp_path, capsys) -> None:
    """The bundle would build and the environment crash at its first step (KeyError); the CLIs that load
    the models refuse them the same way, in one line naming the file."""
    from tests.retailsim_env.conftest import tiny_basket, write_model_checkpoint

    basket, store = tiny_models(tiny_workdir, tmp_path / "models")
    masked = write_model_checkpoint(tmp_path / "models" / "masked.pt", tiny_basket(tiny_workdir, objective="masked"), "basket")
    for world_model, store_visit, message in ((store, basket, "sv.pt: a store-visit model, where a basket model"),
                                              (basket, basket, "basket.pt: a basket model trained with the next-basket "
                                                               "objective, where a store-visit model"),
                                              (masked, store, "masked.pt: a masked-objective basket model, where")):  # fmt: skip
        with pytest.raises(RetailSimError, match=message):
            build_scenario(tiny_workdir.workdir, world_model, store_visit, tmp_path / "scenario")
        assert not (tmp_path / "scenario").exists() and not (tmp_path / "scenario.partial").exists()
    work = str(tiny_workdir.workdir)
    for command in (["evaluate", work, "--world-model", str(store), "--out", str(tmp_path / "m.json")],
                    ["whatif", work, "--world-model", str(store), "--store-visit", str(basket), "--store", "S",
                     "--set", "P=+1%"]):  # fmt: skip
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "sv.pt: a store-visit model, where a basket model" in err and err.count("\n") == 1
