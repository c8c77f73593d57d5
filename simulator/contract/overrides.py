"""Answer overrides, network conditions and clock skew: their shapes and their checks.

Defined here, below everything, because three sides read the same rules: the engine (the
drive commands `set_answer_override`, `set_network`, `close_connection`, `set_clock_skew`),
the charger model and its admin form, and the API. Each check raises `ValueError` with a
message for the person who typed the value; the engine, the model and the API only
translate that into their own kind of error.

An answer override says how a charger answers the CSMS's CALLs of one action, instead of
what it would do: a status in its normal answer (the handler's side effects do not
happen: a Rejected RemoteStartTransaction starts nothing), a CALLERROR, the normal answer
but late, or no answer at all. A "next" rule is used once, an "every" rule stays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict

# The status values of each CSMS-initiated 1.6 action's answer (the `status` enum of the
# `*Response.json` schemas shipped with the `ocpp` package, security whitepaper included;
# tests/test_answer_overrides.py checks this table against those files). An action whose
# answer has no status (GetConfiguration, GetDiagnostics, GetLocalListVersion,
# UpdateFirmware) maps to () and takes only the other kinds of rule.
ANSWER_STATUSES: Final[Mapping[str, tuple[str, ...]]] = {
    "CancelReservation": ("Accepted", "Rejected"),
    "CertificateSigned": ("Accepted", "Rejected"),
    "ChangeAvailability": ("Accepted", "Rejected", "Scheduled"),
    "ChangeConfiguration": ("Accepted", "Rejected", "RebootRequired", "NotSupported"),
    "ClearCache": ("Accepted", "Rejected"),
    "ClearChargingProfile": ("Accepted", "Unknown"),
    "DataTransfer": ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"),
    "DeleteCertificate": ("Accepted", "Failed", "NotFound"),
    "ExtendedTriggerMessage": ("Accepted", "Rejected", "NotImplemented"),
    "GetCompositeSchedule": ("Accepted", "Rejected"),
    "GetConfiguration": (),
    "GetDiagnostics": (),
    "GetInstalledCertificateIds": ("Accepted", "NotFound"),
    "GetLocalListVersion": (),
    "GetLog": ("Accepted", "Rejected", "AcceptedCanceled"),
    "InstallCertificate": ("Accepted", "Failed", "Rejected"),
    "RemoteStartTransaction": ("Accepted", "Rejected"),
    "RemoteStopTransaction": ("Accepted", "Rejected"),
    "ReserveNow": ("Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"),
    "Reset": ("Accepted", "Rejected"),
    "SendLocalList": ("Accepted", "Failed", "NotSupported", "VersionMismatch"),
    "SetChargingProfile": ("Accepted", "Rejected", "NotSupported"),
    "SignedUpdateFirmware": (
        "Accepted",
        "Rejected",
        "AcceptedCanceled",
        "InvalidCertificate",
        "RevokedCertificate",
    ),
    "TriggerMessage": ("Accepted", "Rejected", "NotImplemented"),
    "UnlockConnector": ("Unlocked", "UnlockFailed", "NotSupported"),
    "UpdateFirmware": (),
}

# OCPP-J 1.6 section 4.2.3 (its spelling: FormationViolation, OccurenceConstraintViolation).
CALL_ERROR_CODES: Final = (
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
)

MODES: Final = ("next", "every")
KINDS: Final = ("status", "call_error", "delay", "no_answer")
DELAY_MAX_S: Final = 3600.0
DESCRIPTION_MAX: Final = 255
LATENCY_MAX_MS: Final = 60_000
SKEW_MAX_S: Final = 10 * 365 * 86_400  # ten years either way
# How long a network cut may last (`cut_network`): the engine refuses others, and a
# scenario file's check says so before the run (scenarios.format).
CUT_MIN_S: Final = 1.0
CUT_MAX_S: Final = 86_400.0
# The close codes an endpoint may send (RFC 6455 7.4.1; 1005, 1006 and 1015 never go on the
# wire), and the application's own 3000-4999.
CLOSE_CODES: Final = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
CLOSE_REASON_MAX_BYTES: Final = 123  # a close frame's payload is at most 125 bytes
EXAMPLE_RULE: Final = {"action": "RemoteStartTransaction", "mode": "every", "status": "Rejected"}


class AnswerRule(TypedDict):
    """One rule as JSON carries it: `action`, `mode` and exactly one of the kinds."""

    action: str
    mode: Literal["next", "every"]
    status: NotRequired[str]
    call_error: NotRequired[str]
    description: NotRequired[str]  # with call_error only
    delay: NotRequired[float]  # seconds
    no_answer: NotRequired[Literal[True]]


class NetworkArgs(TypedDict, total=False):
    latency_ms: int
    jitter_ms: int
    drop_rate: float  # 0..1


class CloseArgs(TypedDict, total=False):
    code: int  # 1000 when missing
    reason: str


class ClockSkewArgs(TypedDict, total=False):
    seconds: float


class AnswerOverrideArgs(TypedDict, total=False):
    """`set_answer_override`: a rule (its keys at the top level, or under `rule`), or
    `clear: true` (with `action`: only that action's rules)."""

    rule: AnswerRule
    clear: bool
    action: str


class FieldError(ValueError):
    """A bad value; `field`, the argument it is about, when one is (the API's 422 names it
    in `errors[].field`)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_rule(raw: Any, *, stored: bool = False) -> AnswerRule:
    """One rule from outside, checked and normalised; ValueError says what is wrong.

    `stored`: a rule of the charger's row, which applies to every call ("every", also
    when left out); a run-time rule is "next" when left out."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a rule must be an object like {EXAMPLE_RULE}, not {_short(raw)}")
    known = {"action", "mode", "description", *KINDS}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in a rule (known: {_list(known)})")
    action = raw.get("action")
    if action is None:
        raise FieldError(
            f"action is required: the CSMS's CALL the rule is for (one of "
            f"{_list(ANSWER_STATUSES)})",
            "action",
        )
    if not isinstance(action, str) or action not in ANSWER_STATUSES:
        raise FieldError(
            f"action {_short(action)} is not a CALL the CSMS sends a 1.6 charger "
            f"(one of {_list(ANSWER_STATUSES)})",
            "action",
        )
    mode = raw.get("mode", "every" if stored else "next")
    if stored and mode != "every":
        raise FieldError(
            f"mode {_short(mode)}: a charger's stored rules apply to every call (mode "
            '"every", or leave it out); "next" is for a scenario step or a drive command',
            "mode",
        )
    if mode not in MODES:
        raise FieldError(f"mode {_short(mode)} must be next or every", "mode")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise ValueError(
            f"a rule needs exactly one of {', '.join(KINDS)} (got {', '.join(kinds) or 'none'})"
        )
    kind = kinds[0]
    rule: AnswerRule = {"action": action, "mode": mode}
    value = raw[kind]
    if "description" in raw and kind != "call_error":
        raise FieldError("description goes only with call_error", "description")
    if kind == "status":
        allowed = ANSWER_STATUSES[action]
        if not allowed:
            raise FieldError(
                f"the answer to {action} has no status: use call_error, delay or no_answer",
                "status",
            )
        if value not in allowed:
            raise FieldError(
                f"status {_short(value)} is not valid in a {action} answer "
                f"(one of {', '.join(allowed)})",
                "status",
            )
        rule["status"] = value
    elif kind == "call_error":
        if value not in CALL_ERROR_CODES:
            raise FieldError(
                f"call_error {_short(value)} is not an OCPP 1.6 CALLERROR code "
                f"(one of {', '.join(CALL_ERROR_CODES)})",
                "call_error",
            )
        rule["call_error"] = value
        description = raw.get("description", "")
        if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
            raise FieldError(
                f"description must be text of at most {DESCRIPTION_MAX} characters", "description"
            )
        if "\x00" in description:
            # A charger's rules are stored: PostgreSQL refuses a NUL in JSON text.
            raise FieldError(
                "description holds a NUL character (U+0000), which cannot be stored", "description"
            )
        if description:
            rule["description"] = description
    elif kind == "delay":
        rule["delay"] = number(value, "delay", 0.001, DELAY_MAX_S)
    else:
        if value is not True:
            raise FieldError("no_answer must be true (leave it out otherwise)", "no_answer")
        rule["no_answer"] = True
    return rule


def check_rules(raw: Any) -> list[AnswerRule]:
    """The charger's stored rules (a list, "every" rules); the message names the bad rule."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise ValueError(f"answer overrides must be a list of rules like [{EXAMPLE_RULE}]")
    rules = []
    for index, item in enumerate(raw, start=1):
        try:
            rules.append(check_rule(item, stored=True))
        except ValueError as exc:
            raise ValueError(f"rule {index}: {exc}") from None
    return rules


def check_network(raw: Mapping[str, Any]) -> NetworkArgs:
    """The values of `raw` that are given, checked (latency and jitter in whole ms)."""
    checked: NetworkArgs = {}
    for name in ("latency_ms", "jitter_ms"):
        if raw.get(name) not in (None, ""):
            value = number(raw[name], name, 0, LATENCY_MAX_MS)
            if value != int(value):
                raise ValueError(f"{name} must be a whole number of milliseconds")
            checked[name] = int(value)
    if raw.get("drop_rate") not in (None, ""):
        checked["drop_rate"] = number(raw["drop_rate"], "drop_rate", 0, 1)
    return checked


def check_close(raw: Mapping[str, Any]) -> tuple[int, str]:
    """A close code and reason a charger may send (1000 and "" when missing)."""
    code_raw = raw.get("code")
    code = 1000 if code_raw in (None, "") else number(code_raw, "code", 1000, 4999)
    if code != int(code) or not (int(code) in CLOSE_CODES or code >= 3000):
        raise ValueError(
            f"close code {_short(code_raw)} cannot be sent: use 1000-1003, 1007-1014 "
            "or 3000-4999 (1004-1006 and 1015 are reserved)"
        )
    reason = raw.get("reason") or ""
    if not isinstance(reason, str) or len(reason.encode()) > CLOSE_REASON_MAX_BYTES:
        raise ValueError(f"reason must be text of at most {CLOSE_REASON_MAX_BYTES} bytes")
    return int(code), reason


def check_skew(raw: Any) -> float:
    return number(raw, "clock skew seconds", -SKEW_MAX_S, SKEW_MAX_S)


def number(raw: Any, name: str, low: float, high: float) -> float:
    if isinstance(raw, bool) or raw is None:
        raise FieldError(f"{name} must be a number", name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FieldError(f"{name} must be a number, not {_short(raw)}", name) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise FieldError(f"{name} must be within {low:g} and {high:g}", name)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _list(names: Any) -> str:
    return ", ".join(sorted(names))
