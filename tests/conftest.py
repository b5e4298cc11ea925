"""Shared fixtures: tiny hand-made LGSR files and the location of the real sample."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from world_model.data.schema import layout_columns

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgsr_sample"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the real sample is ``slow`` (the marker's meaning), so ``-m "not slow"`` leaves them out."""
    for item in items:
        if "real_sample" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def lgsr_row(**overrides: str) -> dict[str, str]:
    """One valid "seg"-layout row (Saturday 2006-04-15, week 200607); keyword arguments override fields."""
    row = {
        "SHOP_WEEK": "200607",
        "SHOP_DATE": "20060415",
        "SHOP_WEEKDAY": "7",
        "SHOP_HOUR": "19",
        "QUANTITY": "1",
        "SPEND": "0.93",
        "PROD_CODE": "PRD0900033",
        "PROD_CODE_10": "CL00201",
        "PROD_CODE_20": "DEP00067",
        "PROD_CODE_30": "G00021",
        "PROD_CODE_40": "D00005",
        "CUST_CODE": "CUST0000410727",
        "seg_1": "BG",
        "seg_2": "BU",
        "BASKET_ID": "994100100398294",
        "BASKET_SIZE": "L",
        "BASKET_PRICE_SENSITIVITY": "MM",
        "BASKET_TYPE": "Full Shop",
        "BASKET_DOMINANT_MISSION": "Mixed",
        "STORE_CODE": "STORE00001",
        "STORE_FORMAT": "LS",
        "STORE_REGION": "E02",
    }
    row.update(overrides)
    return row


def write_lgsr(path: Path, rows: list[dict[str, str]], layout: str = "seg", extra_lines: list[str] = ()) -> Path:
    """Write rows as an LGSR CSV (gzip when the name ends in .gz); ``extra_lines`` are appended verbatim."""
    columns = list(layout_columns(layout))
    if layout == "cust":
        rows = [
            {**{k: v for k, v in r.items() if k not in ("seg_1", "seg_2")},
             "CUST_PRICE_SENSITIVITY": r.get("CUST_PRICE_SENSITIVITY", "MM"),
             "CUST_LIFESTAGE": r.get("CUST_LIFESTAGE", "YF")}
            for r in rows
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def write_calendar(path: Path, weeks: dict[int, tuple[str, str]]) -> Path:
    lines = ["shop_week,date_from,date_to"] + [f"{w},{a},{b}" for w, (a, b) in sorted(weeks.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


CALENDAR_200607_200609 = {
    200607: ("20060410", "20060416"),
    200608: ("20060417", "20060423"),
    200609: ("20060424", "20060430"),
}


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "time.csv").exists():
        pytest.skip("the real LGSR sample is not in ../shared/data/lgsr_sample")
    return REAL_SAMPLE
