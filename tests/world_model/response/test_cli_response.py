import json

import pytest

from pathlib import Path

from retailsim.cli import main
from world_model.pipeline.loader import PreparedData
from world_model.response.model import PriceResponse


@pytest.fixture(scope="module")
def checkpoints(prepared_with_response, tmp_path_factory):
    out = tmp_path_factory.mktemp("response-models")
    work = str(prepared_with_response.workdir)
    common = ["--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "16", "--device", "cpu", "--quiet"]
    assert main(["train", "store-visit", work, "--out", str(out / "sv"), *common]) == 0
    assert main(["train", "world-model", work, "--out", str(out / "wm"), *common]) == 0
    return work, str(out / "wm"), str(out / "sv")


def test_evaluate_response_writes_the_report_and_the_plot(checkpoints, tmp_path, capsys) -> None:
    work, wm, sv = checkpoints
    ground_truth = str(Path(work).parent / "raw" / "ground_truth")
    out = tmp_path / "report" / "response.json"
    code = main(["evaluate-response", work, "--world-model", wm, "--store-visit", sv, "--ground-truth", ground_truth,
                 "--out", str(out), "--device", "cpu"])  # fmt: skip
    report = json.loads(out.read_text())
    assert code == (0 if report["checks_passed"] else 1)
    assert out.with_suffix(".png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "median abs rel error" in printed and "monotonicity" in printed


def test_evaluate_response_refuses_another_markets_ground_truth(checkpoints, tmp_path, capsys) -> None:
    """It scored the estimates against another market's parameters (better than the true market's)."""
    import shutil

    import pandas as pd

    work, wm, sv = checkpoints
    truth = tmp_path / "ground_truth"
    shutil.copytree(Path(work).parent / "raw" / "ground_truth", truth)
    products = pd.read_parquet(truth / "products.parquet")
    products["PROD_CODE_20"] = products["PROD_CODE_20"].sample(frac=1.0, random_state=0).to_numpy()  # another draw
    products.to_parquet(truth / "products.parquet")
    out = tmp_path / "response.json"
    assert main(["evaluate-response", work, "--world-model", wm, "--store-visit", sv, "--ground-truth", str(truth),
                 "--out", str(out), "--device", "cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "sit elsewhere in its product hierarchy" in err and err.count("\n") == 1 and not out.exists()


def test_whatif_prints_the_change(checkpoints, capsys) -> None:
    work, wm, sv = checkpoints
    product = next(iter(PriceResponse.load(work).product_category))
    store = PreparedData(work).vocab["stores"]["codes"][0]
    assert main(["whatif", work, "--world-model", wm, "--store-visit", sv, "--store", store, "--set", f"{product}=+10%",
                 "--weeks", "2", "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert product in printed and "store" in printed and "over 2 weeks" in printed and "no season" in printed
    assert main(["whatif", work, "--world-model", wm, "--store-visit", sv, "--store", store, "--set", f"{product}=+10%",
                 "--weeks", "2", "--from-week", "3", "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "over 2 weeks from data week 3" in printed and "with the season index of those weeks" in printed


def test_whatif_bad_store_is_a_one_line_error(checkpoints, capsys) -> None:
    work, wm, sv = checkpoints
    product = next(iter(PriceResponse.load(work).product_category))
    assert main(["whatif", work, "--world-model", wm, "--store-visit", sv, "--store", "NOPE", "--set", f"{product}=+1%",
                 "--device", "cpu"]) == 2  # fmt: skip
    assert "--store: NOPE" in capsys.readouterr().err


@pytest.mark.parametrize("option,value,message", [
    ("--set", "NOPE=+10%", "--set: NOPE is neither a product code nor a category key of this work directory"),
    ("--promo", "DEP99999=20%", "--promo: DEP99999 is neither a product code nor a category key"),
    ("--promo", "{product}=3%", "--promo: depth 3% of {product} must be in (5%, 100%)"),
    ("--set", "{product}=-100%", "--set: -100% would make the price of {product} <= 0"),
])  # fmt: skip
def test_whatif_bad_product_or_too_shallow_promotion_is_a_one_line_error(checkpoints, capsys, option, value, message) -> None:
    """A depth no deeper than the estimator's promotion threshold would get the whole estimated lift."""
    work, wm, sv = checkpoints
    product = next(iter(PriceResponse.load(work).product_category))
    store = PreparedData(work).vocab["stores"]["codes"][0]
    assert main(["whatif", work, "--world-model", wm, "--store-visit", sv, "--store", store,
                 option, value.format(product=product), "--device", "cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert message.format(product=product) in err and err.count("\n") == 1
