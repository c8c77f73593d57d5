"""OCPP-J 1.6 CALLERROR codes for what a central system sends us.

The `ocpp` library answers schema failures with `FormatViolation` (1.6 says
`FormationViolation`) and swaps `NotImplemented` / `NotSupported`. We check incoming CALLs
ourselves first and answer with the 1.6 codes: NotImplemented for an unknown action,
NotSupported for a known one this charger does not handle, OccurenceConstraintViolation for
a missing field, TypeConstraintViolation for a wrong type (not for an integral float where
an integer is due: `"connectorId": 1.0` is read as 1), PropertyConstraintViolation for a
value out of range or not in an enumeration (also one the schema allows but we cannot hold:
see `value_ranges`), FormationViolation for anything else malformed, a unique id that is
not a string included.
"""

from __future__ import annotations

import decimal
import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft4Validator
from ocpp.v16.enums import Action

from simulator.ocpp16.redaction import is_secret_name
from simulator.ocpp16.schema_check import SCHEMA_DIR, ints_for_integral_floats
from simulator.ocpp16.value_ranges import OutOfRange
from simulator.ocpp16.value_ranges import check as check_ranges
from simulator.ocpp16.wire import (
    SchemaViolation,
    decode,
    encode_error,
    encode_error_to_id_text,
    validate_request,
)

KNOWN_ACTIONS = frozenset(action.value for action in Action)

_PROPERTY_VALIDATORS = frozenset(
    {
        "enum",
        "maxLength",
        "minLength",
        "maximum",
        "minimum",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "multipleOf",
        "pattern",
        "format",
        "maxItems",
        "minItems",
    }
)


# A description quotes the offending value: keep an answer to a huge frame small.
_MAX_DESCRIPTION = 255


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str | None  # None: no string id (see id_text)
    code: str
    description: str
    # A unique id that is a JSON number, not the string OCPP-J asks for: its text as sent.
    # The answer echoes it exactly, so the CSMS can match it to its call (orjson reads an
    # integer beyond 64 bits as a float, which would echo another number).
    id_text: str | None = None

    def answer(self) -> str | None:
        """The CALLERROR frame, or None when the CALL has no id to address one to."""
        if self.unique_id is not None:
            return encode_error(self.unique_id, self.code, self.description)
        if self.id_text is not None:
            return encode_error_to_id_text(self.id_text, self.code, self.description)
        return None


@cache
def _validator(action: str) -> Draft4Validator:
    with open(SCHEMA_DIR / f"{action}.json", encoding="utf-8") as handle:
        schema = json.load(handle, parse_float=decimal.Decimal)
    return Draft4Validator(schema)


def check_call(
    raw: str,
    message: Any,
    handled: frozenset[str] | set[str],
    *,
    max_keys: int = 0,
    read_as_ints: list[str] | None = None,
) -> CallError | None:
    """A CALLERROR to answer this CALL with, or None if it is well formed and handled.

    `max_keys` is the charger's GetConfigurationMaxKeys (0: no limit). An integral float
    where the schema says integer (`"connectorId": 1.0`) is replaced in the payload by
    its integer; `read_as_ints`, when given, gets the paths of those replaced (the caller
    then hands on the payload, not `raw`). One with a fraction is a type error as ever.

    `message` is the decoded frame (a list starting with 2). A unique id that is a number
    gets FormationViolation with that number echoed; one that cannot be echoed (none, null, a
    boolean, a list, an object) gets a CallError without an answer (`answer()` is None): the
    caller ignores the frame, as there is nothing to address an answer to.
    """
    unique_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
    if unique_id is None:
        id_text = readable_number_id(raw)
        if id_text is not None:
            # OCPP-J 1.6 section 4.1.3: the id is a string. The frame does not have the
            # RPC structure, so it is not acted on, but the CSMS can still be told.
            text = "The uniqueId must be a string (OCPP-J 1.6, 4.1.3), not a number."
            return CallError(None, "FormationViolation", text, id_text=id_text)
        return CallError(None, "ProtocolError", "no unique id")
    if len(message) > 4:
        # OCPP-J 1.6 (4.2.3): ProtocolError is a payload "incomplete", as a CALL without one
        # is below; elements past the payload leave nothing missing, the frame just does not
        # conform to the CALL's structure: FormationViolation. Not acted on, as the library
        # would not either (it cannot build a CALL from five elements).
        text = f"A CALL is [2, uniqueId, action, payload], not {len(message)} elements."
        return CallError(unique_id, "FormationViolation", text)
    if len(message) != 4 or not isinstance(message[2], str):
        return CallError(unique_id, "ProtocolError", "A CALL is [2, uniqueId, action, payload].")
    if len(unique_id) > 36:
        # Answered with the id as sent: a shortened one would name a call nobody made.
        return CallError(unique_id, "ProtocolError", "uniqueId longer than 36 characters.")
    action, payload = message[2], message[3]
    if action not in KNOWN_ACTIONS:
        return CallError(unique_id, "NotImplemented", _short(f"Unknown action {action!r}."))
    if action not in handled:
        return CallError(unique_id, "NotSupported", f"{action} is not supported by this charger.")
    if not isinstance(payload, dict):
        return CallError(unique_id, "FormationViolation", "The payload must be a JSON object.")
    try:
        validate_request(action, payload)
    except SchemaViolation:
        # An integer written as 1.0 (C# and Python serialisers) is read as 1, in place:
        # here, on the failure path, so that a valid CALL pays nothing for it.
        replaced = ints_for_integral_floats(action, payload)
        if read_as_ints is not None:
            read_as_ints += replaced
        if not (replaced and _valid(action, payload)):
            # Classify the failure (or clear a float multipleOf false alarm).
            error = _classify(raw, action, unique_id)
            if error is not None:
                return error
    try:
        check_ranges(action, payload)
    except OutOfRange as exc:
        return CallError(unique_id, "PropertyConstraintViolation", _short(str(exc)))
    if action == "GetConfiguration" and max_keys > 0:
        return _too_many_keys(unique_id, payload.get("key"), max_keys)
    return None


def _valid(action: str, payload: dict[str, Any]) -> bool:
    try:
        validate_request(action, payload)
    except SchemaViolation:
        return False
    return True


def _too_many_keys(unique_id: str, keys: list[str] | None, max_keys: int) -> CallError | None:
    """1.6 (5.8): the number of keys one GetConfiguration names MAY be limited, and
    GetConfigurationMaxKeys says to what. More is a field that occurs more often than allowed:
    answered as a whole, not cut short (a shortened answer would drop keys without a word).
    A key named twice, in any case (keys are CiString50), counts once, as it is answered
    once."""
    wanted = len({key.casefold() for key in keys or ()})
    if wanted <= max_keys:
        return None
    text = f"{wanted} keys requested; at most {max_keys} per request (GetConfigurationMaxKeys)."
    return CallError(unique_id, "OccurenceConstraintViolation", text)


def _classify(raw: str, action: str, unique_id: str) -> CallError | None:
    """The 1.6 code of a schema failure, from jsonschema's first error closest to the root."""
    try:
        # Re-read numbers as Decimal, as the schemas' multipleOf expects.
        exact = json.loads(raw, parse_float=decimal.Decimal)[3]
        # Judged as `check_call` reads it: the integers written as 1.0 are integers.
        ints_for_integral_floats(action, exact)
        error = next(iter(sorted(_validator(action).iter_errors(exact), key=_depth)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        message = error.message
        if isinstance(exact, dict) and is_secret_name(exact.get("key")):
            # jsonschema's message quotes the value, here the AuthorizationKey: the answer
            # goes to the frame logs, which redact it by name, not inside a text.
            message = (
                f"fails {error.validator} {error.validator_value!r} (AuthorizationKey, not shown)"
            )
        return CallError(unique_id, _code(error.validator), _short(f"{where}: {message}"))
    except (RecursionError, ValueError):
        # Nested deeper than json (or a message's repr) can follow, or digits beyond
        # int()'s limit: malformed either way, and not worth a closer look.
        return CallError(
            unique_id, "FormationViolation", "The payload cannot be read (nested too deeply?)."
        )


def _short(text: str) -> str:
    return text if len(text) <= _MAX_DESCRIPTION else text[: _MAX_DESCRIPTION - 3] + "..."


# The start of a CALL, `[2, "<uniqueId>"`, read without parsing the rest of the frame.
# A byte order mark first is not JSON (RFC 8259 forbids one), but the id is still readable.
_CALL_HEAD = re.compile(r'\A\ufeff?\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)


# The start of a CALL whose unique id is a JSON number, `[2, -12.5e3,`: the number's text,
# read without parsing the rest of the frame (a byte order mark first, as `_CALL_HEAD`).
# The number must end (`,` or `]`): `[2, 12` may be 123 cut short.
_NUMBER_ID_HEAD = re.compile(
    r"\A\ufeff?[ \t\n\r]*\[[ \t\n\r]*2[ \t\n\r]*,[ \t\n\r]*"
    r"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)[ \t\n\r]*[,\]]"
)


def readable_number_id(raw: str) -> str | None:
    """The unique id of a frame that starts as a CALL whose id is a JSON number, as its
    text as sent (parsed or not: a CALLERROR echoes it, and the message log shows it)."""
    head = _NUMBER_ID_HEAD.match(raw)
    return head.group(1) if head is not None else None


NOT_JSON = "The frame is not JSON (or nested too deeply to read)."


def _not_a_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def unreadable_frame_error(
    raw: str, unique_id: str, handled: frozenset[str] | set[str], *, max_keys: int = 0
) -> CallError:
    """The CALLERROR for a CALL with a string id that our decoder (orjson) refused.

    orjson refuses some JSON that RFC 8259 allows: a number beyond a double's range (an
    integer of 400 digits, 1e400) and a string with an unpaired surrogate escape
    (`"\\ud800"`). Such a frame is JSON: it gets what `check_call` finds in it (an unknown
    action is still NotImplemented), else PropertyConstraintViolation, as 10**30, which
    orjson reads, does: one of its values is what the charger cannot take. Anything else
    is malformed: FormationViolation. Only called on this failure path, so the standard
    library's slower parser costs nothing on the hot path."""
    try:
        message = json.loads(raw, parse_constant=_not_a_constant)  # NaN is not JSON
    except (ValueError, RecursionError):
        return CallError(unique_id, "FormationViolation", NOT_JSON)
    try:
        error = check_call(raw, message, handled, max_keys=max_keys)
    except (ValueError, RecursionError, ArithmeticError):
        # 1e400 is read as infinity, which the range and multipleOf checks cannot take.
        error = None
    if error is not None and error.unique_id == unique_id:
        return error
    text = "A value the charger cannot hold: a number beyond +-1.8e308 or an unpaired surrogate."
    return CallError(unique_id, "PropertyConstraintViolation", text)


def readable_answer_id(raw: str) -> str | None:
    """The unique id of a CALLRESULT or CALLERROR that our decoder (orjson) refused but
    the standard library reads (a number beyond a double's range, an unpaired surrogate:
    see `unreadable_frame_error`), or None. Only called on that failure path."""
    try:
        message = json.loads(raw, parse_constant=_not_a_constant)
    except (ValueError, RecursionError):
        return None
    if (
        type(message) is not list
        or len(message) < 3
        or type(message[0]) is not int
        or message[0] not in (3, 4)
        or type(message[1]) is not str
    ):
        return None
    return message[1]


UNREADABLE_ANSWER = (
    "The answer holds a value the charger cannot hold: a number beyond +-1.8e308 or an "
    "unpaired surrogate."
)


def readable_call_id(raw: str) -> str | None:
    """The unique id of a frame that starts as a CALL, even if the rest does not parse
    (truncated, nested deeper than the parser goes): such a CALL can still be answered."""
    head = _CALL_HEAD.match(raw)
    if head is None:
        return None
    try:
        unique_id = decode(f'"{head.group(1)}"')
    except ValueError:
        return None
    return unique_id if isinstance(unique_id, str) else None


def _depth(error: Any) -> int:
    return len(error.absolute_path)


def _code(validator: str) -> str:
    if validator == "required":
        return "OccurenceConstraintViolation"
    if validator == "type":
        return "TypeConstraintViolation"
    if validator in _PROPERTY_VALIDATORS:
        return "PropertyConstraintViolation"
    return "FormationViolation"
