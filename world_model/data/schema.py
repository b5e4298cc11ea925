"""The two LGSR column layouts, the canonical schema ingest writes, and quarantine reason codes.

The dunnhumby "Let's Get Sort-of-Real" transactions circulate in two layouts that differ only in the
two customer-segment columns: ``seg_1, seg_2`` ("seg") or ``CUST_PRICE_SENSITIVITY, CUST_LIFESTAGE``
("cust"). The two pairs use different code books, so the canonical schema keeps all four columns and
leaves the pair the input did not have as null rather than pretending they mean the same thing.
"""

from __future__ import annotations

import pyarrow as pa

COMMON_COLUMNS: tuple[str, ...] = (
    "SHOP_WEEK",
    "SHOP_DATE",
    "SHOP_WEEKDAY",
    "SHOP_HOUR",
    "QUANTITY",
    "SPEND",
    "PROD_CODE",
    "PROD_CODE_10",
    "PROD_CODE_20",
    "PROD_CODE_30",
    "PROD_CODE_40",
    "CUST_CODE",
    "BASKET_ID",
    "BASKET_SIZE",
    "BASKET_PRICE_SENSITIVITY",
    "BASKET_TYPE",
    "BASKET_DOMINANT_MISSION",
    "STORE_CODE",
    "STORE_FORMAT",
    "STORE_REGION",
)

LAYOUT_SEGMENT_COLUMNS: dict[str, tuple[str, str]] = {
    "seg": ("seg_1", "seg_2"),
    "cust": ("CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE"),
}


def layout_columns(layout: str) -> tuple[str, ...]:
    """Column order of a raw LGSR file in ``layout`` ("seg" or "cust")."""
    seg_a, seg_b = LAYOUT_SEGMENT_COLUMNS[layout]
    cols = list(COMMON_COLUMNS)
    at = cols.index("CUST_CODE") + 1
    cols[at:at] = [seg_a, seg_b]
    return tuple(cols)


def detect_layout(columns: list[str] | tuple[str, ...]) -> str | None:
    """Return "seg" or "cust" when ``columns`` hold one layout's segment pair, else None."""
    present = set(columns)
    for layout, pair in LAYOUT_SEGMENT_COLUMNS.items():
        if set(pair) <= present:
            return layout
    return None


# Columns parsed as integers (SPEND as a float; everything else stays text).
INTEGER_COLUMNS: tuple[str, ...] = ("SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "QUANTITY")

# The columns that identify one shopping trip when BASKET_ID was destroyed (e.g. saved as 9.94E+14).
BASKET_REBUILD_KEY: tuple[str, ...] = (
    "CUST_CODE",
    "STORE_CODE",
    "SHOP_DATE",
    "SHOP_HOUR",
    "BASKET_SIZE",
    "BASKET_TYPE",
    "BASKET_DOMINANT_MISSION",
    "BASKET_PRICE_SENSITIVITY",
)

CANONICAL_SCHEMA = pa.schema(
    [
        ("SHOP_WEEK", pa.int32()),
        ("SHOP_DATE", pa.date32()),
        ("SHOP_WEEKDAY", pa.int8()),  # LGSR convention: 1 = Sunday ... 7 = Saturday
        ("SHOP_HOUR", pa.int8()),
        ("QUANTITY", pa.int32()),
        ("SPEND", pa.float64()),
        ("PROD_CODE", pa.string()),
        ("PROD_CODE_10", pa.string()),
        ("PROD_CODE_20", pa.string()),
        ("PROD_CODE_30", pa.string()),
        ("PROD_CODE_40", pa.string()),
        ("CUST_CODE", pa.string()),  # null = anonymous shopper
        ("seg_1", pa.string()),
        ("seg_2", pa.string()),
        ("CUST_PRICE_SENSITIVITY", pa.string()),
        ("CUST_LIFESTAGE", pa.string()),
        ("BASKET_ID", pa.string()),
        ("BASKET_SIZE", pa.string()),
        ("BASKET_PRICE_SENSITIVITY", pa.string()),
        ("BASKET_TYPE", pa.string()),
        ("BASKET_DOMINANT_MISSION", pa.string()),
        ("STORE_CODE", pa.string()),
        ("STORE_FORMAT", pa.string()),
        ("STORE_REGION", pa.string()),
        ("BASKET_ID_REBUILT", pa.bool_()),  # true where ingest replaced a destroyed BASKET_ID
    ]
)


class Reason:
    """Quarantine reason codes, in the order a row is checked (a row carries its first failing check)."""

    MALFORMED_LINE = "malformed_line"  # wrong number of fields
    UNPARSEABLE_NUMBER = "unparseable_number"  # a numeric column holds text or is empty
    INVALID_DATE = "invalid_date"  # SHOP_DATE is not a calendar date (yyyymmdd)
    MISSING_PROD_CODE = "missing_prod_code"
    MISSING_STORE_CODE = "missing_store_code"
    MISSING_BASKET_ID = "missing_basket_id"
    NONPOSITIVE_QUANTITY = "nonpositive_quantity"  # QUANTITY <= 0
    NEGATIVE_SPEND = "negative_spend"  # SPEND < 0
    HOUR_OUT_OF_RANGE = "hour_out_of_range"  # SHOP_HOUR outside 0..23
    WEEKDAY_MISMATCH = "weekday_mismatch"  # SHOP_WEEKDAY disagrees with SHOP_DATE
    DATE_OUTSIDE_WEEK = "date_outside_week"  # SHOP_DATE not within SHOP_WEEK's calendar dates
    DUPLICATE_LINE = "duplicate_line"  # exact copy of an earlier line of the same week

    ALL: tuple[str, ...] = (
        MALFORMED_LINE,
        UNPARSEABLE_NUMBER,
        INVALID_DATE,
        MISSING_PROD_CODE,
        MISSING_STORE_CODE,
        MISSING_BASKET_ID,
        NONPOSITIVE_QUANTITY,
        NEGATIVE_SPEND,
        HOUR_OUT_OF_RANGE,
        WEEKDAY_MISMATCH,
        DATE_OUTSIDE_WEEK,
        DUPLICATE_LINE,
    )
