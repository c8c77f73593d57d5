"""OCPP-J 1.6 framing for the charge point's own calls: camelCase dicts, schema-checked.

The `ocpp` library builds a dataclass, converts case, validates with jsonschema and
serialises with json for every message (about 0.4 ms for a MeterValues). Our outgoing
frames are built directly as camelCase dicts, checked against the library's own 1.6 schema
files by validators compiled from them (`schema_check`: the same verdicts as the
library's Draft4Validator, about 5 µs for a 9-value MeterValues) and serialised with
orjson: the frames stay exactly as valid at a small fraction of the cost.
"""

from __future__ import annotations

import itertools
import os
import secrets
from typing import Any

import orjson

from simulator.ocpp16.schema_check import (
    SchemaError,
    Validator,
    drop_optional_nulls,
    ints_for_integral_floats,
    load_validator,
)
from simulator.ocpp16.value_ranges import OutOfRange, check_response

CALL, CALLRESULT, CALLERROR = 2, 3, 4


class SchemaViolation(ValueError):
    """A frame does not satisfy the OCPP 1.6 JSON schema."""


class Checked(dict[str, Any]):
    """A MeterValues payload that `messages.Ocpp16Messages.meter_values` built from parts
    checked once: `send_call` does not run the schema check on it again.

    The builder gives this type only when its inputs make the payload valid by
    construction (an int connector and transaction id, a str timestamp, at least one
    reading, every value a str, every (context, quantity) template passing the full check
    at import); `tests/test_trusted_payloads.py` proves with hypothesis that every payload
    so marked passes `validate_request`. Every other payload (scenarios, the API, raw
    sends, a message restored from the database: a plain dict) is checked in full. Only
    `at_send` changes one after it is built, and only to another int transaction id.

    `text` is the payload's JSON as the durable outbox stored it (set when the
    `Checkpointer` takes the message): `send_call` frames it as is instead of encoding the
    payload a second time. None until then, and again once `at_send` changes the payload.
    """

    __slots__ = ("text",)
    text: str | None


def validate_request(action: str, payload: dict[str, Any]) -> None:
    try:
        load_validator(action)(payload)
    except SchemaError as exc:
        raise SchemaViolation(f"{action}: {exc}") from None


def validate_response(action: str, payload: dict[str, Any]) -> str | None:
    """Check an answer to one of our calls: SchemaViolation if it breaks its schema. An
    answer that is valid but for properties the schema does not name (a CSMS's vendor
    fields), for nulls where it may leave a property out (removed from `payload`), or for
    integral floats where it says integer (replaced in `payload` by their integers), is
    taken, and the note returned says what was ignored (None: nothing was).

    A real charge point reads the fields it knows. Refusing such an answer failed the call:
    a StartTransaction the CSMS had accepted was sent again, and the CSMS opened a second
    transaction for the same session."""
    # Every answer to our calls comes here: one look-up by the action, not a new name
    # string hashed into `load_validator`'s cache.
    validate = _response_validators.get(action)
    if validate is None:
        validate = _response_validators[action] = load_validator(f"{action}Response")
    try:
        validate(payload)
    except SchemaError as exc:
        error = exc
    else:
        return None
    # A null for a property it may leave out, as the JSON serialisers of many CSMSs write
    # one they did not set ("expiryDate": null): read as absent, for the same reason as a
    # vendor property (refused, an Authorize fails, a StartTransaction is sent again).
    notes = [
        f"{path}: null, read as absent"
        for path in drop_optional_nulls(f"{action}Response", payload)
    ]
    # An integer written as 300.0 (C# and Python serialisers): read as 300. Refused, a
    # BootNotification's "interval": 300.0 kept the charger from ever registering.
    notes += [
        f"{path}: integral float, read as an integer"
        for path in ints_for_integral_floats(f"{action}Response", payload)
    ]
    if notes:
        try:
            validate(payload)
        except SchemaError as exc:
            error = exc
        else:
            return f"{action}Response: {'; '.join(notes)}; ignored"
    if error.rule != "additionalProperties":
        raise SchemaViolation(f"{action}Response: {error}") from None
    try:
        load_validator(f"{action}Response", open_objects=True)(payload)
    except SchemaError as other:
        raise SchemaViolation(f"{action}Response: {other}") from None
    notes.append(str(error))
    return f"{action}Response: {'; '.join(notes)}; ignored"


_response_validators: dict[str, Validator] = {}


def answer_refusal(action: str, payload: Any) -> str | None:
    """Why the charger refuses `payload`, a CALLRESULT's payload to its own `action` CALL
    (the call then fails as a FormationViolation): the checks of
    `ChargePointClient._answer`, for a reader that has the frame only (the event stream's,
    which a scenario judges the CSMS by). None: the charger takes it."""
    if not isinstance(payload, dict):
        return "is not a JSON object"
    try:
        validate_response(action, payload)
        check_response(action, payload)
    except SchemaViolation as exc:
        # The violation names the schema ("HeartbeatResponse: "); the reader names the action.
        text = str(exc).removeprefix(f"{action}Response: ")
        return f"breaks the OCPP 1.6 schema: {text}"
    except OutOfRange as exc:
        return f"holds a value the charger cannot take: {exc}"
    return None


_ENVELOPE_LENGTHS = {CALL: ("CALL", 4), CALLRESULT: ("CALLRESULT", 3), CALLERROR: ("CALLERROR", 5)}
# How `ChargePointClient.route_message` writes a binary frame to the listeners (it has no
# text): such a frame is no OCPP-J message either.
BINARY_FRAME_NOTE = "[binary frame of {size} bytes, ignored (OCPP-J uses text frames)]"
_BINARY_HEAD, _BINARY_TAIL = BINARY_FRAME_NOTE.split("{size}")
_JSON_KINDS = {
    dict: "object",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def frame_problem(text: str) -> str | None:
    """What makes `text`, a frame the CSMS sent, no OCPP-J message the charger can read
    (it ignores it, or answers a CALL it cannot read with a CALLERROR), said briefly and
    without quoting the frame: "is not JSON (unexpected end of data at character 22)".
    None when it is a message: a JSON array of a message type (2, 3 or 4), a string id and
    the elements of that type. Whether an answer's payload is good is `answer_refusal`'s."""
    if text.startswith(_BINARY_HEAD) and text.endswith(_BINARY_TAIL):
        return "is a binary frame (OCPP-J uses text frames)"
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"is not JSON ({exc.msg} at character {exc.pos})"
    return message_problem(message)


def message_problem(message: Any) -> str | None:
    """`frame_problem` of a frame already decoded."""
    if type(message) is not list:
        return f"is a JSON {_JSON_KINDS.get(type(message), 'value')}, not an OCPP-J array"
    if not message or type(message[0]) is not int:
        return "does not start with a message type (2, 3 or 4)"
    envelope = _ENVELOPE_LENGTHS.get(message[0])
    if envelope is None:
        return f"has the unknown message type {message[0]}"
    name, length = envelope
    # The charger reads an answer of 3 elements (a CALLERROR's code alone, say); a CALL
    # needs its action and payload.
    if len(message) < (length if message[0] == CALL else 3):
        return f"is a {name} of {len(message)} elements ({length} expected)"
    if type(message[1]) is not str:
        return "has a message id that is not a string"
    return None


_PROCESS_PREFIX = f"{os.getpid() % 0xFFFF:04x}{secrets.token_hex(4)}"
# What every id is made of, for `ChargePointClient.send_call` to build one inline (a Python
# call less per CALL): the same counter, so ids stay unique whichever way they are made.
ID_HEAD = f"{_PROCESS_PREFIX}-"
next_message_number = itertools.count(1).__next__


def new_message_id() -> str:
    """Unique per process run (random prefix + counter): at most 36 characters."""
    return f"{ID_HEAD}{next_message_number()}"


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    return orjson.dumps([CALL, unique_id, action, payload]).decode()


def frame_call(unique_id: str, action: str, payload_text: str) -> str:
    """`encode_call` of a payload already encoded (`payload_text` is its `orjson.dumps`):
    the same text, byte for byte (orjson writes no spaces; our ids and action names need
    no escaping)."""
    return f'[2,"{unique_id}","{action}",{payload_text}]'


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    return orjson.dumps([CALLRESULT, unique_id, payload]).decode()


def encode_error(
    unique_id: str, code: str, description: str = "", details: dict | None = None
) -> str:
    return orjson.dumps([CALLERROR, unique_id, code, description, details or {}]).decode()


def encode_error_to_id_text(
    id_text: str, code: str, description: str = "", details: dict | None = None
) -> str:
    """`encode_error` for a CALL whose unique id was no string: `id_text` is the id's JSON
    text as the CSMS sent it (a number), written back unchanged."""
    tail = orjson.dumps([code, description, details or {}]).decode()
    return f"[{CALLERROR},{id_text},{tail[1:]}"


def decode(raw: str | bytes) -> Any:
    return orjson.loads(raw)
