"""Prometheus metrics of the OCPP traffic, as the chargers see it.

Defined once per process in prometheus_client's default registry, so that whatever serves
that registry (the web side's /metrics in the embedded mode, a worker's --metrics-port)
shows them. The send path counts each CALL once, when it is settled (answered, timed out or
lost with the connection), so a CALL costs one counter increment and, when answered, one
histogram observation: the labelled children are created once and kept in dicts
(`_Children`), never looked up by `labels()` on the hot path.

Label values are bounded whatever the CSMS sends: actions outside OCPP 1.6 count as
`unknown`, CALLERROR codes outside OCPP-J 1.6's list as `other`, and a result is either a
status from the answer's schema-checked enumeration or one of our own words.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

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

CALLS_SENT = Counter(
    "chargesim_ocpp_calls_sent",
    "CALLs the chargers sent, counted when settled, by action and result: the answer's "
    "status lower-cased (accepted, rejected, pending, blocked, ...), ok for an answer "
    "without a status, callerror, malformed (an answer that failed the schema or range "
    "checks), timeout, or lost (the connection closed first).",
    ["action", "result"],
)
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
RESPONSE_SECONDS = Histogram(
    "chargesim_ocpp_response_seconds",
    "Time from a charger's CALL written to the socket to the CSMS's CALLRESULT or CALLERROR "
    "read, by action (timeouts and lost calls are counted in chargesim_ocpp_calls_sent).",
    ["action"],
    buckets=RESPONSE_BUCKETS,
)
RECONNECTS = Counter(
    "chargesim_reconnects",
    "Connections to the CSMS opened again after a charger's previous connection closed "
    "(dropped, cut, closed by the CSMS); a charger's first connection is not counted.",
)
CONNECT_FAILURES = Counter(
    "chargesim_connect_failures",
    "Attempts to connect to the CSMS that failed (refused, 401/404, TLS, timeout...).",
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


_sent = _Children(CALLS_SENT)
_received = _Children(CALLS_RECEIVED)
_errors_in = _Children(CALLERRORS_RECEIVED)
_errors_out = _Children(CALLERRORS_SENT)
_response = _Children(RESPONSE_SECONDS)


def answered(action: str, result: str, seconds: float) -> None:
    """A charger's CALL got its answer after `seconds`; `result` from `result_of`, or
    `callerror` / `malformed`."""
    _sent[action, result].inc()
    _response[action].observe(seconds)


def unanswered(action: str, why: str) -> None:
    """A charger's CALL got no answer: `timeout` or `lost`."""
    _sent[action, why].inc()


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
