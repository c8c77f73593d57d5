"""Prometheus metrics of the OCPP traffic, as the chargers see it.

All in prometheus_client's default registry, so that whatever serves it (the web side's
/metrics in the embedded mode, a worker's --metrics-port) shows them.

The send path counts each of the chargers' CALLs once, when it is settled (answered, timed
out, or lost with its connection), and times each answer. That is the hot path (a fleet
sends thousands of MeterValues a second), so both are one plain tally (`answered`: a dict
lookup, a C bisect, two list increments), turned into a counter and a histogram by
`CallCollector` when Prometheus scrapes. prometheus_client's own `Counter.inc` and
`Histogram.observe` (three locks and several Python calls per CALL) showed as 3.2 % of a
2,000-charger worker's CPU in py-spy; the tally costs about a third of that
(bench/call_path.py). The CSMS's CALLs, the CALLERROR codes and the connection counters are
rare: ordinary `Counter`s, with their labelled children cached (`_Children`).

Label values are bounded whatever the CSMS sends: actions outside OCPP 1.6 count as
`unknown`, CALLERROR codes outside OCPP-J 1.6's list as `other`, and a result is either a
status from the answer's schema-checked enumeration or one of our own words.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client import REGISTRY, Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from simulator.ocpp16.call_errors import KNOWN_ACTIONS

# 1 ms (a CSMS on the same machine) to 30 s (MessageTimeout's usual ceiling).
RESPONSE_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# OCPP-J 1.6 section 4.2.3.
ERROR_CODES: Final = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

# No `_created` series: the collectors of the hot tally have none, so counters had them or
# not by how they are counted, and they double the series a scrape carries. The counters'
# start is the process's (process_start_time_seconds).
disable_created_metrics()

CALLS_RECEIVED = Counter(
    "chargesim_ocpp_calls_received",
    "CALLs from the CSMS, by action and the chargers' answer: its status lower-cased, ok "
    "for an answer without a status, callerror, or unanswered (a charger whose boot was "
    "Rejected answers nothing).",
    ["action", "result"],
)
CALLERRORS_RECEIVED = Counter(
    "chargesim_ocpp_callerrors_received",
    "CALLERRORs the CSMS answered to the chargers' CALLs, by error code.",
    ["code"],
)
CALLERRORS_SENT = Counter(
    "chargesim_ocpp_callerrors_sent",
    "CALLERRORs the chargers answered to the CSMS's CALLs, by error code.",
    ["code"],
)
RECONNECTS = Counter(
    "chargesim_reconnects",
    "Connections to the CSMS opened again after a charger's previous connection ended by "
    "no choice of its own (dropped, cut, closed by the CSMS, failed); not a first "
    "connection, nor one after the charger's own close (a reboot for a Reset, new "
    "firmware or from the API, a new security profile, a disconnect).",
)
CONNECT_FAILURES = Counter(
    "chargesim_connect_failures",
    "Attempts to connect to the CSMS that failed (refused, 401/404, TLS, timeout...).",
)
KEEPALIVE_TIMEOUTS = Counter(
    "chargesim_keepalive_timeouts",
    "Connections the chargers closed (1011) because the CSMS did not answer a WebSocket "
    "keepalive ping before the next one was due (WebSocketPingInterval).",
)


class _Children(dict[Any, Any]):
    """A metric's labelled children by label values, each made once on first use."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, key: Any) -> Any:
        values = key if isinstance(key, tuple) else (key,)
        child = self[key] = self.metric.labels(*values)
        return child


_received = _Children(CALLS_RECEIVED)
_errors_in = _Children(CALLERRORS_RECEIVED)
_errors_out = _Children(CALLERRORS_SENT)
# The codes are known: each shows from the start at 0, so that rate() and increase() see
# a first CALLERROR (a series born at its first increment hides it).
for _code in (*sorted(ERROR_CODES), "other"):
    _errors_in[_code]
    _errors_out[_code]

# The hot tally: (action, result) -> the answers' count per bucket (the one after the
# largest bound is +Inf's) followed by the sum of their times; a count of the unanswered.
# The counter of CALLs and the histogram by action are added up from these rows when
# Prometheus scrapes: an answer costs one dict lookup and two list increments. Written
# only on the event loop; a scrape from another thread copies them (each copy is one C
# call under the GIL).
_answers: dict[tuple[str, str], list[float]] = {}
_unanswered: dict[tuple[str, str], int] = {}
SUM: Final = len(RESPONSE_BUCKETS) + 1  # index of the sum in a row of `_answers`
_SUM: Final = SUM


def answered(action: str, payload: dict[str, Any], seconds: float) -> None:
    """A charger's CALL got its CALLRESULT, whose payload passed the checks, after
    `seconds`; counted under the answer's status (`result_of`, inlined: this runs for every
    MeterValues, where a Python call costs as much as the rest)."""
    if not payload:  # MeterValues.conf, StatusNotification.conf: the hot path
        result = "ok"
    elif (status := payload.get("status")) is None:
        result = "ok" if payload.get("idTagInfo") is None else result_of(payload)
    else:
        result = status.lower() if isinstance(status, str) else "ok"
    row = _answers.get((action, result))
    if row is None:
        row = _answers[action, result] = [0] * (_SUM + 1)
    row[bisect.bisect_left(RESPONSE_BUCKETS, seconds)] += 1  # bounds are "less or equal"
    row[_SUM] += seconds


def tally_row(action: str, result: str) -> list[float]:
    """The tally row of `action`'s answers counted as `result`, made on first use. Rows are
    never replaced nor removed, so a caller may keep one and add to it as `answered_as`
    does (the client's path for the empty CALLRESULT, without this module's calls)."""
    row = _answers.get((action, result))
    if row is None:
        row = _answers[action, result] = [0] * (_SUM + 1)
    return row


def answered_as(action: str, result: str, seconds: float) -> None:
    """A charger's CALL got an answer after `seconds`, counted as `result` (`callerror`,
    `malformed`, or a status)."""
    row = _answers.get((action, result))
    if row is None:
        row = _answers[action, result] = [0] * (_SUM + 1)
    row[bisect.bisect_left(RESPONSE_BUCKETS, seconds)] += 1  # bounds are "less or equal"
    row[_SUM] += seconds


def unanswered(action: str, why: str) -> None:
    """A charger's CALL got no answer: `timeout` or `lost`."""
    key = (action, why)
    _unanswered[key] = _unanswered.get(key, 0) + 1


def calls_total() -> int:
    """Every CALL so far, both ways: the chargers' once settled, the CSMS's once answered.
    Read once a second for the terminal's messages per second; never on the hot path."""
    sent = sum(sum(row[:_SUM]) for row in list(_answers.values()))
    sent += sum(_unanswered.values())
    received = sum(
        sample.value
        for family in CALLS_RECEIVED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    return int(sent + received)


class CallCollector(Collector):
    """The tallies of `answered` / `unanswered` as a counter and a histogram."""

    def describe(self) -> Iterator[Metric]:
        return self._families({}, {})

    def collect(self) -> Iterator[Metric]:
        rows = {key: list(row) for key, row in list(_answers.items())}
        return self._families(rows, dict(_unanswered))

    @staticmethod
    def _families(
        rows: dict[tuple[str, str], list[float]], unanswered: dict[tuple[str, str], int]
    ) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "chargesim_ocpp_calls_sent",
            "CALLs the chargers sent, counted when settled, by action and result: the "
            "answer's status lower-cased (accepted, rejected, pending, blocked, ...), ok for "
            "an answer without a status, callerror, malformed (an answer that failed the "
            "schema or range checks), timeout, or lost (the connection closed first).",
            labels=["action", "result"],
        )
        counts = {key: sum(row[:_SUM]) for key, row in rows.items()}
        counts.update(unanswered)
        for (action, result), count in sorted(counts.items()):
            calls.add_metric([action, result], count)
        yield calls
        by_action: dict[str, list[float]] = {}
        for (action, _result), row in rows.items():
            total = by_action.setdefault(action, [0.0] * (_SUM + 1))
            for i, value in enumerate(row):
                total[i] += value
        response = HistogramMetricFamily(
            "chargesim_ocpp_response_seconds",
            "Time from a charger's CALL written to the socket to the CSMS's CALLRESULT or "
            "CALLERROR read, by action (timeouts and lost calls are counted in "
            "chargesim_ocpp_calls_sent).",
            labels=["action"],
        )
        for action, row in sorted(by_action.items()):
            buckets = []
            running = 0.0
            for bound, answers in zip((*_BOUNDS, "+Inf"), row[:_SUM], strict=True):
                running += answers
                buckets.append((bound, running))
            response.add_metric([action], buckets, row[_SUM])
        yield response


_BOUNDS: Final = tuple(floatToGoString(bound) for bound in RESPONSE_BUCKETS)
REGISTRY.register(CallCollector())


def callerror_received(code: str) -> None:
    _errors_in[code if code in ERROR_CODES else "other"].inc()


def call_received(action: str, answer: list[Any] | None) -> None:
    """The charger answered a CALL of the CSMS with `answer` (a decoded CALLRESULT or
    CALLERROR frame), or not at all (None)."""
    if answer is None:
        result = "unanswered"
    elif answer[0] == 4:  # CALLERROR
        result = "callerror"
        code = answer[2] if len(answer) > 2 else ""
        _errors_out[code if code in ERROR_CODES else "other"].inc()
    else:
        result = result_of(answer[2]) if len(answer) > 2 and isinstance(answer[2], dict) else "ok"
    _received[action if action in KNOWN_ACTIONS else "unknown", result].inc()


def result_of(payload: dict[str, Any]) -> str:
    """The result label of an answer that passed the schema: its `status`, or its
    `idTagInfo.status` (Authorize, Start/StopTransaction), lower-cased; `ok` without one."""
    status = payload.get("status")
    if status is None:
        info = payload.get("idTagInfo")
        if info is None:
            return "ok"
        status = info.get("status")
    return status.lower() if isinstance(status, str) else "ok"
