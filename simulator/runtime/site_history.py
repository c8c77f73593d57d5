"""Each site's power and grid limit over the last hour, for the location page's chart.

The page draws the site's power against its limit as the summaries come; opened (or
reloaded) mid-afternoon it showed nothing of the hour before. The worker therefore keeps,
for each site it runs chargers of, one point per STEP_S seconds over the last SPAN_S: the
mean of the site's power as sampled in that step (a short peak between points still
counts) and its grid limit at the step's end. 360 points a site, 16 bytes each (time as a
float64, power and limit as float32) in flat arrays: under 6 KB a site, however long the
worker runs. A site no longer sampled (its chargers moved to another worker or were
removed) is forgotten once its newest point is older than the span.

Steps are aligned on the epoch (a point's time is a multiple of STEP_S), the same on every
worker: a site whose chargers run on several workers is added up step by step on the web
side, as its live power is (`chargers.engine_client.add_up_history`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping

from simulator import contract

# A point every 10 s for an hour: the chart of an hour reads well at 360 points, and a
# point every 10 s still shows a session's start or a limit's change where it happened.
STEP_S = 10.0
SPAN_S = 3600.0
# A step is given out once it ended this long ago: by then every worker (each samples
# about once a second, their clocks within a second of each other) has closed its part,
# so that the last point of a site split over workers is not one worker's alone.
SETTLED_S = 3.0
_NAN = float("nan")


class _Series:
    """One site's points (oldest first) and the step being sampled."""

    __slots__ = ("ends", "last_limit_w", "limit_w", "power_w", "samples", "step", "sum_w")

    def __init__(self) -> None:
        self.ends = array("d")  # end of each step, epoch s
        self.power_w = array("f")  # mean power over the step
        self.limit_w = array("f")  # the grid limit at its end (NaN: none)
        self.step = -1  # index of the step being sampled (-1: none yet)
        self.sum_w = 0.0
        self.samples = 0
        self.last_limit_w = _NAN


class SiteHistory:
    def __init__(self, step_s: float = STEP_S, span_s: float = SPAN_S) -> None:
        if step_s <= 0 or span_s < step_s:
            raise ValueError("a site history needs a positive step no longer than its span")
        self.step_s = step_s
        self.span_s = span_s
        self.capacity = math.ceil(span_s / step_s)
        self._sites: dict[int, _Series] = {}

    def __len__(self) -> int:
        """How many sites have a history."""
        return len(self._sites)

    def record(self, at: float, sites: Mapping[int, contract.SiteCounts]) -> None:
        """A sample at `at` (epoch s) of every site the worker runs chargers of (the
        tally's counts). Called about once a second; a step's points are made when a
        sample of a later step comes."""
        step = math.floor(at / self.step_s)
        for pk, counts in sites.items():
            series = self._sites.get(pk)
            if series is None:
                series = self._sites[pk] = _Series()
            if series.step != step:
                self._close(series)
                series.step = step
            series.sum_w += counts["power_w"]
            series.samples += 1
            limit = counts["grid_limit_w"]
            series.last_limit_w = _NAN if limit is None else limit
        oldest = at - self.span_s
        for pk, series in list(self._sites.items()):
            if pk in sites:
                continue
            if series.step != step:  # not sampled in this step: its last one is over
                self._close(series)
            if not series.samples and (not series.ends or series.ends[-1] < oldest):
                del self._sites[pk]

    def _close(self, series: _Series) -> None:
        end = (series.step + 1) * self.step_s
        # Not after the last point: the host's clock was set back. Dropped, so that the
        # points stay in time order (the chart and the adding up over workers need it).
        if series.samples and (not series.ends or end > series.ends[-1]):
            series.ends.append(end)
            series.power_w.append(series.sum_w / series.samples)
            series.limit_w.append(series.last_limit_w)
            if len(series.ends) > self.capacity:
                # One at a time (a step a call at most): a shift of 360 values, not a copy.
                del series.ends[0], series.power_w[0], series.limit_w[0]
        series.sum_w, series.samples = 0.0, 0
        series.step = -1

    def points(self, location: int, now: float) -> list[list[float | None]]:
        """The site's steps of the last span that ended SETTLED_S ago, oldest first: [end of the step
        (epoch s), mean power W, grid limit W or None] (`contract.ShardSummary.history`)."""
        series = self._sites.get(location)
        if series is None:
            return []
        oldest, newest = now - self.span_s, now - SETTLED_S
        out: list[list[float | None]] = []
        for end, power, limit in zip(series.ends, series.power_w, series.limit_w, strict=True):
            if end < oldest:
                continue
            if end > newest:
                break
            out.append([end, round(power, 1), None if limit != limit else round(limit, 1)])
        return out
