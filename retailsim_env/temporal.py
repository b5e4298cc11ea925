"""T3 (temporal features) of simulated trips, gathered from small tables instead of computed per trip.

A simulated week's trips repeat a few inputs many times: the same shoppers (their weekday, hour and count
of earlier trips never change), the copies' few weeks, a few distinct weeks-since-last-trip. Each T3
column depends on one argument of ``temporal_features`` alone (``T3_COLUMNS_BY_INPUT``), so T3 is the sum
of three parts with disjoint columns:

- per shopper: weekday, hour, trend (the model's week index is the scenario's last data week) and earlier
  trips; computed once, when the environment is built;
- per (week, weekday): the calendar columns of the trip's date (``trip_dates``: LGSR weeks run Monday
  to Sunday, and SHOP_WEEKDAY counts 1 = Sunday, 2 = Monday .. 7 = Saturday);
- per gap: the recency columns;

the last two computed once per week and per gap, the first time one is asked for. A part is zero outside
its columns, so the sum is exactly what ``temporal_features`` gives for the trips (float32 plus zeros), at
three gathers on the model's device in place of about 2 us of numpy per trip: on 2 cores, a 64-copy
weekly step's T3 (6,800 trips) took 13.1 ms by the per-trip encoder, half the step's time outside the
model forward, and takes 0.6 ms from the tables.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from world_model.pipeline.model_inputs import T3_COLUMNS_BY_INPUT, temporal_features

from retailsim_env.transfer import to_device

_ANY_DAY = np.datetime64("2000-01-03")
"""The date given where only other columns are kept."""

ROW_BLOCK = 64
"""Weeks (or gaps) whose rows ``_BlockRows`` makes at once."""


def trip_dates(mondays: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """datetime64[D] of trips on LGSR weekday ``weekday`` (1 = Sunday .. 7 = Saturday) in the weeks
    starting ``mondays``: Monday + 0 for weekday 2, ..., + 5 for weekday 7 (Saturday), + 6 for weekday 1."""
    return np.asarray(mondays).astype("datetime64[D]") + (np.asarray(weekday, dtype=np.int64) + 5) % 7


def _keep(t3: np.ndarray, inputs: tuple[str, ...]) -> np.ndarray:
    """``t3`` with every column not determined by ``inputs`` set to zero."""
    keep = np.zeros(t3.shape[1], dtype=bool)
    keep[np.concatenate([T3_COLUMNS_BY_INPUT[name] for name in inputs])] = True
    t3[:, ~keep] = 0.0
    return t3


class _BlockRows:
    """Rows for integer keys >= 0 (``per_key`` rows each), made by ``make(keys)`` a block of ``ROW_BLOCK``
    consecutive keys at a time, the first time a key of the block is asked for. Only the blocks asked
    for are held, so memory follows the keys a run visits, not the largest: an episode at week 100,000
    holds two blocks of weeks, where a table from week 0 held 100,000 weeks (700,000 rows, 180 MB)."""

    def __init__(self, make: Callable[[np.ndarray], torch.Tensor], per_key: int, width: int, device: torch.device) -> None:
        self.make, self.per_key = make, per_key
        self.blocks = np.zeros(0, dtype=np.int64)  # sorted
        self.slots = np.zeros(0, dtype=np.int64)  # each block's place in ``rows`` (the order they were made in)
        self.rows = torch.zeros(0, width, device=device)

    def _find(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each block's slot (0 where not held), and whether the block is held."""
        if not len(self.blocks):
            return np.zeros(len(block), dtype=np.int64), np.zeros(len(block), dtype=bool)
        position = np.minimum(np.searchsorted(self.blocks, block), len(self.blocks) - 1)
        return self.slots[position], self.blocks[position] == block

    def index(self, keys: np.ndarray, offset: np.ndarray | int = 0) -> np.ndarray:
        """Row of each key's ``offset``-th row (``0 <= offset < per_key``)."""
        block, within = np.divmod(keys, ROW_BLOCK)
        slot, held = self._find(block)
        if not held.all():
            new = np.unique(block[~held])
            self.rows = torch.cat([self.rows, self.make((new[:, None] * ROW_BLOCK + np.arange(ROW_BLOCK)).ravel())])
            blocks = np.concatenate([self.blocks, new])
            slots = np.concatenate([self.slots, len(self.slots) + np.arange(len(new))])
            order = np.argsort(blocks)
            self.blocks, self.slots = blocks[order], slots[order]
            slot, _ = self._find(block)
        return (slot * ROW_BLOCK + within) * self.per_key + offset


class TripTemporalFeatures:
    """T3 of trips by shoppers ``0..N-1`` (module docstring) on ``device``.

    ``weekday`` (1..7, LGSR: 1 = Sunday), ``hour`` and ``history_trips`` [N] are the shoppers'; ``week_index``
    the index every trip is given (the model's view of "now"); ``train_end`` the split's last training week;
    ``first_monday`` the earliest week a trip may fall in. The date and gap rows are made in blocks of 64
    weeks (or gaps) as trips reach them (``_BlockRows``): 256 bytes a row, a week has one per weekday.
    """

    def __init__(self, weekday: np.ndarray, hour: np.ndarray, history_trips: np.ndarray, week_index: int,
                 train_end: int, first_monday: np.datetime64, device: torch.device) -> None:  # fmt: skip
        self.week_index, self.train_end, self.device = int(week_index), train_end, device
        self.first_monday = np.datetime64(first_monday, "D")
        self.weekdays, weekday_position = np.unique(np.asarray(weekday, dtype=np.int64), return_inverse=True)
        self.weekday_position = weekday_position.reshape(-1)
        n = len(self.weekday_position)
        shopper = temporal_features(np.full(n, _ANY_DAY), weekday, hour, np.full(n, self.week_index), np.ones(n),
                                    history_trips, train_end)  # fmt: skip
        self.shopper_rows = torch.from_numpy(_keep(shopper, ("weekday", "hour", "week_index", "history_trips"))).to(device)
        width = shopper.shape[1]
        self.date_rows = _BlockRows(self._date_part, max(len(self.weekdays), 1), width, device)  # per week, per weekday
        self.gap_rows = _BlockRows(self._gap_part, 1, width, device)

    def _part(self, dates: np.ndarray, gaps: np.ndarray, inputs: tuple[str, ...]) -> torch.Tensor:
        n = len(dates)
        weekday = (dates.astype(np.int64) + 4) % 7 + 1  # a date's own weekday; only the kept columns matter
        t3 = temporal_features(dates, weekday, np.zeros(n), np.full(n, self.week_index), gaps, np.zeros(n), self.train_end)
        return to_device(_keep(t3, inputs), self.device)  # the rows are made mid-step: wait for no queued work

    def _date_part(self, weeks: np.ndarray) -> torch.Tensor:
        """The calendar rows of weeks ``weeks`` after ``first_monday``, weekday-minor."""
        dates = trip_dates(self.first_monday + 7 * weeks[:, None], self.weekdays[None, :]).ravel()
        return self._part(dates, np.ones(len(dates)), ("dates",))

    def _gap_part(self, gaps: np.ndarray) -> torch.Tensor:
        return self._part(np.full(len(gaps), _ANY_DAY), gaps.astype(np.float64), ("week_gap",))

    def __call__(self, shoppers: np.ndarray, mondays: np.ndarray, gaps: np.ndarray) -> torch.Tensor:
        """[n, 64] float32 T3 of n trips: shopper ``shoppers[i]`` in the week starting ``mondays[i]``
        (datetime64, a whole number of weeks from ``first_monday`` on), ``gaps[i]`` (a whole number >= 0)
        weeks after their previous trip."""
        shoppers = np.asarray(shoppers, dtype=np.int64)
        days = (np.asarray(mondays).astype("datetime64[D]") - self.first_monday).astype(np.int64)
        gaps = np.asarray(gaps, dtype=np.float64)
        week, gap = days // 7, gaps.astype(np.int64)
        if len(days) and ((days % 7 != 0) | (days < 0)).any():
            raise ValueError(f"mondays must be whole weeks from {self.first_monday} on")
        if len(gaps) and ((gap != gaps) | (gaps < 0)).any():
            raise ValueError("gaps must be whole numbers of weeks >= 0 (a simulated trip has a previous one)")
        date = self.date_rows.index(week, self.weekday_position[shoppers])
        rows = to_device(np.stack([shoppers, date, self.gap_rows.index(gap)]), self.device)  # one copy: no queued work
        return (self.shopper_rows.index_select(0, rows[0]) + self.date_rows.rows.index_select(0, rows[1])
                + self.gap_rows.rows.index_select(0, rows[2]))  # fmt: skip
