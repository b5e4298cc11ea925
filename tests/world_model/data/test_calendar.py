from datetime import date

import pyarrow as pa
import pytest

from world_model.data.calendar import CALENDAR_SCHEMA, complete_inferred_calendar, read_calendar
from world_model.errors import RetailSimError

HEADER = "shop_week,date_from,date_to\n"


@pytest.mark.parametrize("lines, message", [
    ("200607,20060410,20060416\n200608,20060417,20060423\n200607,20060424,20060430\n",
     r"line 4: shop_week 200607 again \(first on line 2\)"),
    ("200607,20060410,20060416\n200608,20060416,20060422\n",
     r"shop_week 200608 starts on 2006-04-16, within shop_week 200607 \(to 2006-04-16\)"),
])  # fmt: skip
def test_a_week_twice_or_two_weeks_sharing_a_date_are_refused(tmp_path, lines, message) -> None:
    path = tmp_path / "time.csv"
    path.write_text(HEADER + lines)
    with pytest.raises(RetailSimError, match=rf"time.csv: {message}"):
        read_calendar(path)


def test_completion_fills_lgsr_weeks_and_stops_at_a_week_53() -> None:
    inferred = pa.table([[200651, 200702, 200753, 200699], [date(2007, 2, 12), date(2007, 3, 5), date(2008, 1, 7),
                                                            date(2007, 3, 5)],
                         [date(2007, 2, 18), date(2007, 3, 11), date(2008, 1, 13), date(2007, 3, 11)]],
                        schema=CALENDAR_SCHEMA)  # fmt: skip
    completed = complete_inferred_calendar(inferred)
    assert completed.column("shop_week").to_pylist() == [200651, 200652, 200701, 200702, 200753]
    assert completed.column("date_from").to_pylist()[1:3] == [date(2007, 2, 19), date(2007, 2, 26)]
    assert completed.column("date_to").to_pylist()[1] == date(2007, 2, 25)
