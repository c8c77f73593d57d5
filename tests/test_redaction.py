"""The AuthorizationKey a CSMS sets never sits in the message log, the CSMS's records or a
log line, while every other frame is kept exactly as sent."""

from __future__ import annotations

import logging

import pytest
from ocpp.v16 import call

from simulator.ocpp16.redaction import (
    LINE_WITHHELD,
    REDACTED,
    WITHHELD,
    RedactSecrets,
    may_hold_secret,
    redact_frame,
)
from simulator.runtime.events import EventPublisher
from tests.engine import connected, runtime_charger

SECRET = "a3e5ec2e7a3e5ec2e7a3e5ec2e7a3e16"  # 16 bytes in hex: a key the charger takes
# Every logger a frame's text can reach: the ocpp library's, the charger's and the CSMS's.
FRAME_LOGGERS = (
    "ocpp",
    "chargesim.ocpp.frames",
    "simulator.ocpp16.client",
    "simulator.csms",
    "simulator.csms.frames",
)


async def test_a_key_set_over_a_real_socket_is_in_no_frame_log_nor_log_record(csms, caplog):
    publisher = EventPublisher()
    charger = runtime_charger("CP-SECRET", csms.url, evses=1, listener=publisher)
    async with connected(charger):
        # After connecting: the charger's client sets its own frame logger's level.
        for name in FRAME_LOGGERS:
            caplog.set_level(logging.DEBUG, logger=name)
        result = await csms.call(
            "CP-SECRET", call.ChangeConfiguration(key="AuthorizationKey", value=SECRET)
        )
        assert result.status == "Accepted"

    frames = [text for _at, _direction, text in publisher.frames["CP-SECRET"]]
    change = [text for text in frames if '"ChangeConfiguration"' in text]
    assert len(change) == 1
    assert f'{{"key":"AuthorizationKey","value":"{REDACTED}"}}' in change[0]
    assert any('"BootNotification"' in text for text in frames)  # the rest as sent
    assert all(SECRET not in text for text in frames)

    sent = next(e for e in csms.log if e.action == "ChangeConfiguration" and e.direction == "out")
    assert sent.payload == {"key": "AuthorizationKey", "value": REDACTED}
    assert all(SECRET not in entry.raw + str(entry.payload) for entry in csms.log)

    # The CSMS's frame logger wrote the frame, redacted.
    lines = [r.getMessage() for r in caplog.records if r.name == "simulator.csms.frames"]
    assert any("ChangeConfiguration" in line and REDACTED in line for line in lines)
    assert SECRET not in caplog.text
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_a_key_named_in_another_case_is_in_no_frame_log_nor_log_record(csms, caplog):
    """QA: ChangeConfiguration(authorizationkey) is the AuthorizationKey (key names are
    CiString50), but its value was kept in clear: the redaction matched the exact name only."""
    publisher = EventPublisher()
    charger = runtime_charger("CP-SECRET-LC", csms.url, evses=1, listener=publisher)
    async with connected(charger):
        for name in FRAME_LOGGERS:
            caplog.set_level(logging.DEBUG, logger=name)
        for unique_id, key in (("l1", "authorizationkey"), ("l2", "AUTHORIZATIONKEY")):
            frame = f'[2,"{unique_id}","ChangeConfiguration",{{"key":"{key}","value":"{SECRET}"}}]'
            await csms.send_raw("CP-SECRET-LC", frame)
            answer = await csms.wait_for(
                "CP-SECRET-LC", direction="in", unique_id=unique_id, timeout=3
            )
            assert answer.payload == {"status": "Accepted"}
    frames = [text for _at, _direction, text in publisher.frames["CP-SECRET-LC"]]
    change = [text for text in frames if '"ChangeConfiguration"' in text]
    assert len(change) == 2
    assert f'{{"key":"authorizationkey","value":"{REDACTED}"}}' in change[0]
    assert f'{{"key":"AUTHORIZATIONKEY","value":"{REDACTED}"}}' in change[1]
    assert all(SECRET not in text for text in frames)
    assert all(SECRET not in entry.raw + str(entry.payload) for entry in csms.log)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("name", ["authorizationkey", "AUTHORIZATIONKEY", "authorizationKey"])
def test_the_key_is_redacted_whatever_the_case_of_its_name(name):
    frames = [
        f'[2,"u1","ChangeConfiguration",{{"key":"{name}","value":"s3cret"}}]',
        f'[2,"u1","ChangeConfiguration",{{"value":"s3cret","key":"{name}"}}]',
        f'[2,"u1","DataTransfer",{{"vendorId":"x","data":{{"{name}":"s3cret"}}}}]',
        f'[3,"u1",{{"configurationKey":[{{"key":"{name}","readonly":false,"value":"s3cret"}}]}}]',
    ]
    for frame in frames:
        assert may_hold_secret(frame)
        assert "s3cret" not in redact_frame(frame), frame
    record = logging.LogRecord("ocpp", logging.INFO, "", 0, "CP-1 -> %s", (frames[0],), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == (
        f'CP-1 -> [2,"u1","ChangeConfiguration",{{"key":"{name}","value":"{REDACTED}"}}]'
    )


def test_a_key_named_in_another_case_with_escapes_is_redacted():
    frame = '[2,"u1","ChangeConfiguration",{"key":"\\u0061uthorizationkey","value":"s3cret"}]'
    assert "s3cret" not in redact_frame(frame)


async def test_a_key_of_the_wrong_type_is_quoted_in_no_call_error_nor_frame_log(csms):
    """A number where the schema wants a string got its TypeConstraintViolation, whose
    description quoted the value: in clear in the charger's frame log and the CSMS's."""
    import json

    publisher = EventPublisher()
    charger = runtime_charger("CP-SECRET-N", csms.url, evses=1, listener=publisher)
    digits = "123456789012345678"
    async with connected(charger):
        frame = json.dumps([2, "k1", "ChangeConfiguration", {"key": "AuthorizationKey"}])
        frame = frame.replace('"AuthorizationKey"}', f'"AuthorizationKey", "value": {digits}}}')
        await csms.send_raw("CP-SECRET-N", frame)
        error = await csms.wait_for("CP-SECRET-N", direction="in", unique_id="k1", timeout=3)
    assert error.message_type == 4 and error.payload["errorCode"] == "TypeConstraintViolation"
    assert "AuthorizationKey" in error.payload["errorDescription"]
    frames = " ".join(text for _at, _direction, text in publisher.frames["CP-SECRET-N"])
    assert digits not in frames
    assert all(
        digits not in entry.raw + str(entry.payload)
        for entry in csms.log
        if entry.direction == "in"
    )


@pytest.mark.parametrize("name", FRAME_LOGGERS)
def test_every_frame_logger_redacts_the_key_as_the_library_logs_a_frame(name, caplog):
    caplog.set_level(logging.DEBUG, logger=name)
    frame = f'[2,"u1","ChangeConfiguration",{{"key":"AuthorizationKey","value":"{SECRET}"}}]'
    logging.getLogger(name).info("%s: receive message %s", "CP-1", frame)
    assert caplog.records[-1].getMessage() == (
        f'CP-1: receive message [2,"u1","ChangeConfiguration",'
        f'{{"key":"AuthorizationKey","value":"{REDACTED}"}}]'
    )


def test_frames_without_the_key_are_the_same_string_and_others_are_redacted_or_withheld():
    heartbeat = '[2,"1","Heartbeat",{}]'
    assert redact_frame(heartbeat) is heartbeat
    named = '[3,"1",{"configurationKey":[{"key":"x","AuthorizationKey":"s"}]}]'
    assert (
        redact_frame(named)
        == f'[3,"1",{{"configurationKey":[{{"key":"x","AuthorizationKey":"{REDACTED}"}}]}}]'
    )
    assert (
        redact_frame('[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"s')
        == WITHHELD
    )


def test_a_log_line_that_names_the_key_without_a_frame_is_withheld_whole():
    record = logging.LogRecord(
        "ocpp",
        logging.ERROR,
        __file__,
        1,
        "Error while handling request '%s'",
        ("Call(payload={'key': 'AuthorizationKey', 'value': 's3cret'})",),
        None,
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == f"Error while handling request {LINE_WITHHELD}"


def test_a_log_line_with_an_escape_keeps_its_words_and_says_why_the_rest_is_withheld():
    """A non-JSON frame with a backslash may spell the name in an escape: its text is
    withheld, but the line keeps the charger and what happened, and does not claim the
    frame names the key. It read '[withheld: names AuthorizationKey ...]' alone."""
    record = logging.LogRecord(
        "simulator.ocpp16.client",
        logging.INFO,
        __file__,
        1,
        "%s: ignoring a frame that is not JSON: %.200r",
        ("QA-1", '\ufeff\ufeff[2,"b","Reset",{}]'),
        None,
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == f"QA-1: ignoring a frame that is not JSON: {LINE_WITHHELD}"
    line = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "AuthorizationKey set: %r", ("s\u0033cret",), None
    )
    assert RedactSecrets().filter(line)
    assert line.getMessage() == LINE_WITHHELD  # its words name the key: nothing kept


def test_a_deeply_nested_frame_naming_the_key_is_withheld_not_raised():
    # orjson accepts 1,024 levels; walking them recursively would exceed Python's limit.
    frame = "[" * 1000 + '"AuthorizationKey"' + "]" * 1000
    assert redact_frame(frame) == WITHHELD


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[2,"1","UpdateFirmware",{"location":"ftp://fw:pa%40ss@10.0.0.1/a.bin"}]',
            '[2,"1","UpdateFirmware",{"location":"ftp://fw:********@10.0.0.1/a.bin"}]',
        ),
        (  # JSON may escape the slashes
            '{"location":"https:\\/\\/u:pw@host\\/up\\/"}',
            '{"location":"https:\\/\\/u:********@host\\/up\\/"}',
        ),
        (  # an "@" in the user name (an e-mail address) or, unescaped, in the password
            '{"location":"ftp://ops@example.com:hunter2@10.0.0.1/d/","b":"ftp://u:p@ss@h/"}',
            '{"location":"ftp://ops@example.com:********@10.0.0.1/d/","b":"ftp://u:********@h/"}',
        ),
        ('{"location":"ftp://user@host:21/x@y"}', '{"location":"ftp://user@host:21/x@y"}'),
        (  # an unescaped "/" in the password: a malformed URL, but its text is a password
            '{"location":"ftp://fw:pa/ss@10.0.0.1/a.bin","b":"ftp://ops@example.com:a/b/c@h/"}',
            '{"location":"ftp://fw:********@10.0.0.1/a.bin","b":"ftp://ops@example.com:********@h/"}',
        ),
        (  # and JSON may escape that slash too
            '{"location":"ftp:\\/\\/fw:pa\\/ss@h\\/"}',
            '{"location":"ftp:\\/\\/fw:********@h\\/"}',
        ),
        # A port before a path with an "@" is not a password.
        (
            '{"u":"https://host:8080/x@y","v":"ftp://u:p@h:21/a@b"}',
            '{"u":"https://host:8080/x@y","v":"ftp://u:********@h:21/a@b"}',
        ),
        # No password, or no URL: as it was.
        ('{"location":"ftp://anonymous@host/x"}', '{"location":"ftp://anonymous@host/x"}'),
        ('{"idTag":"a@b","data":"http://host/x@y"}', '{"idTag":"a@b","data":"http://host/x@y"}'),
    ],
)
def test_a_password_in_a_location_url_is_redacted(text, expected):
    assert redact_frame(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # a pre-signed S3 URL: its signature and credential, not its other parameters
            '{"location":"https://b.s3.amazonaws.com/fw.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256'
            '&X-Amz-Credential=AKIA%2F20261205&X-Amz-Signature=5e1f&X-Amz-Expires=900"}',
            '{"location":"https://b.s3.amazonaws.com/fw.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256'
            '&X-Amz-Credential=********&X-Amz-Signature=********&X-Amz-Expires=900"}',
        ),
        (  # Azure SAS, a token, an API key; a fragment ends the value
            '{"location":"https://a.blob/fw?sv=2024&sig=Zm9v%3D&se=x","u":"http://h/?token=t0k#f",'
            '"k":"ftp://h/?api_key=k3y&v=2"}',
            '{"location":"https://a.blob/fw?sv=2024&sig=********&se=x","u":"http://h/?token=********#f",'
            '"k":"ftp://h/?api_key=********&v=2"}',
        ),
        # No such parameter: the same text.
        (
            '{"location":"https://h/fw.bin?version=2&arch=arm"}',
            '{"location":"https://h/fw.bin?version=2&arch=arm"}',
        ),
    ],
)
def test_a_signed_urls_access_granting_parameters_are_redacted(text, expected):
    assert redact_frame(text) == expected


def test_a_query_secret_spelled_with_json_escapes_is_redacted():
    frame = '[2,"u4","UpdateFirmware",{"location":"https://h/fw\\u003ftoken=s3cret"}]'
    assert "s3cret" in frame
    assert "s3cret" not in redact_frame(frame)


def test_a_log_line_with_a_signed_url_is_redacted():
    url = "https://h/fw.bin?X-Amz-Signature=s3cret&v=1"
    record = logging.LogRecord("simulator", logging.INFO, "", 0, "get %s", (url,), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "get https://h/fw.bin?X-Amz-Signature=********&v=1"


def test_a_log_line_with_a_url_password_is_redacted():
    record = logging.LogRecord("simulator", logging.INFO, "", 0, "send %s", ("ftp://a:b@h/",), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "send ftp://a:********@h/"


@pytest.mark.parametrize(
    "frame",
    [
        '[2,"u1","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cret"}]',
        '[2,"u1","DataTransfer",{"vendorId":"x","data":{"AuthorizationKey":"s3cret"}}]',
        '[3,"u1",{"configurationKey":[{"key":"AuthorizationKey","value":"s3cret"}]}]',
        '[3,"u1",{"status":"Accepted","AuthorizationKey":"s3cret"}]',  # in any answer
        '[2,"u1","MeterValues",{"connectorId":1,"AuthorizationKey":"s3cret"}]',
    ],
)
def test_the_key_is_redacted_from_any_frame_that_names_it(frame):
    # The name is searched for only in a text holding its rarest letter: any frame that
    # names it holds that letter, whatever its action or direction.
    assert "s3cret" not in redact_frame(frame)
    assert "s3cret" in frame


def test_a_frame_with_the_letter_but_not_the_name_is_the_same_string():
    frame = '[2,"1","MeterValues",{"meterValue":[{"sampledValue":[{"value":"300","unit":"K"}]}]}]'
    assert redact_frame(frame) is frame


# A hostile CSMS may spell the markers with JSON escapes: a parser reads the key's name
# and the "@", a substring test would not.
ESCAPED_KEY = '[2,"u1","ChangeConfiguration",{"key":"\\u0041uthorizationKey","value":"s3cret"}]'
ESCAPED_AT = '[2,"u2","UpdateFirmware",{"location":"ftp://fw:s3cret\\u0040host/a.bin"}]'


@pytest.mark.parametrize("frame", [ESCAPED_KEY, ESCAPED_AT])
def test_a_secret_spelled_with_json_escapes_is_redacted(frame):
    assert "s3cret" in frame
    assert "s3cret" not in redact_frame(frame)


def test_escapes_that_hide_no_secret_leave_the_frame_as_it_was():
    frame = '[2,"u3","DataTransfer",{"vendorId":"x","data":"caf\\u00e9 1.50"}]'
    assert redact_frame(frame) is frame


def test_an_escaped_secret_reaches_neither_the_dashboard_log_nor_the_log_lines(caplog):
    publisher = EventPublisher()
    charger = runtime_charger("CP-ESCAPED", "ws://127.0.0.1:1/ocpp", evses=1, listener=publisher)
    for frame in (ESCAPED_KEY, ESCAPED_AT):
        publisher.on_frame(charger, "in", frame)
        record = logging.LogRecord("ocpp", logging.INFO, "", 0, "CP-ESCAPED -> %s", (frame,), None)
        assert RedactSecrets().filter(record)
        assert "s3cret" not in record.getMessage()
    assert all("s3cret" not in text for _at, _d, text in publisher.frames["CP-ESCAPED"])
