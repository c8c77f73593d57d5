"""The worker's two frame logs (the stored message log and the dashboard's) share one entry
per frame: one clock read and one secret test, the checkpoint writer's, for both. What
each log holds must be what it held when each did its own work."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.charge_point import Charger, Fanout, Listener
from simulator.core.drops import DROPPED
from simulator.ocpp16.redaction import REDACTED, may_hold_secret, redact_frame
from simulator.runtime import frame_log
from simulator.runtime.events import EventPublisher
from simulator.runtime.persistence import Checkpointer
from tests.engine import runtime_charger

KEY = '[2,"k1","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cret"}]'
URL = '[2,"u1","UpdateFirmware",{"location":"ftp://fw:s3cret@10.0.0.1/a.bin"}]'
ESCAPED = '[2,"e1","ChangeConfiguration",{"key":"\\u0041uthorizationKey","value":"s3cret"}]'
SIGNED = '[2,"s1","GetDiagnostics",{"location":"https://h/up/?sig=s3cret&v=1"}]'
LOWER = '[2,"k2","ChangeConfiguration",{"key":"authorizationkey","value":"s3cret"}]'


class Frames(Listener):
    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str, str]] = []

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str = "", action: str = ""
    ) -> None:
        self.heard.append((direction, text, message_id, action))


def _charger(listener: Listener) -> Charger:
    charger = runtime_charger("CP-SHARED", "ws://127.0.0.1:1/ocpp", evses=1, listener=listener)
    charger.spec.db_id = 1
    return charger


def test_the_dashboard_log_takes_the_stored_entrys_time_and_redacted_text():
    publisher = EventPublisher()
    checkpointer = Checkpointer(downstream=Fanout(publisher, Listener()))
    assert checkpointer._log_frame == publisher.log_frame
    charger = _charger(checkpointer)
    for text in ('[2,"1","Heartbeat",{}]', KEY, URL, ESCAPED, SIGNED, LOWER):
        checkpointer.on_frame(charger, "in", text, "1", "X")
    stored = checkpointer.take().frames
    shown = list(publisher.frames["CP-SHARED"])
    assert [(entry[1], entry[3], entry[7]) for entry in stored] == shown
    assert all("s3cret" not in text for _at, _d, text in shown)
    assert f'"value":"{REDACTED}"' in shown[1][2]
    assert [entry[6] for entry in stored] == [len(text) for _at, _d, text in shown]


def test_any_other_listener_downstream_hears_every_frame_as_on_the_wire():
    frames = Frames()
    publisher = EventPublisher()
    for downstream in (frames, Fanout(publisher, frames)):
        checkpointer = Checkpointer(downstream=downstream)
        assert checkpointer._log_frame is None
        checkpointer.on_frame(_charger(checkpointer), "in", KEY, "k1", "ChangeConfiguration")
        assert frames.heard.pop() == ("in", KEY, "k1", "ChangeConfiguration")
        # and what is stored is redacted all the same
        assert "s3cret" not in checkpointer.take().frames[0][7]
    assert [text for _at, _d, text in publisher.frames["CP-SHARED"]] == [redact_frame(KEY)]


def test_a_publisher_with_its_own_on_frame_is_told_on_frame():
    class Own(EventPublisher):
        def on_frame(self, *args: object, **kwargs: object) -> None:
            self.told = args

    own = Own()
    checkpointer = Checkpointer(downstream=own)
    assert checkpointer._log_frame is None
    checkpointer.on_frame(_charger(checkpointer), "out", "[2]", "i", "A")
    assert own.told[1:] == ("out", "[2]", "i", "A")


def test_the_event_stream_still_hears_the_frame_as_on_the_wire():
    publisher = EventPublisher()
    heard: list[str] = []
    publisher.stream.active = True

    def on_frame(charger: Charger, direction: str, text: str, message_id: str, action: str) -> None:
        heard.append(text)

    publisher.stream.on_frame = on_frame  # type: ignore[method-assign]
    checkpointer = Checkpointer(downstream=publisher)
    checkpointer.on_frame(_charger(checkpointer), "in", KEY, "k1", "ChangeConfiguration")
    assert heard == [KEY]  # the stream redacts it itself (`EventStream.on_frame`)


def test_a_connection_event_is_stored_redacted():
    checkpointer = Checkpointer()
    charger = _charger(checkpointer)
    checkpointer.on_connection(charger, "connect_failed", {"url": "ws://cp:s3cret@host/ocpp"})
    (entry,) = checkpointer.take().frames
    assert "s3cret" not in entry[7]
    assert entry[6] == len(entry[7])
    rows = frame_log.rows([entry], 65_536, redacted=True)
    assert rows[0][7] == entry[7]


# Texts that exercise every branch: the secret markers, JSON escapes, NUL, long names.
_PIECES = st.sampled_from(
    [
        '[2,"1","Heartbeat",{}]',
        '[3,"1",{}]',
        '[4,"1","InternalError","",{}]',
        KEY,
        URL,
        ESCAPED,
        LOWER,
        '{"a":"K\\\\"}',
        "a@b",
        "\x00",
        "K",
        "[2,",
        "x" * 50,
    ]
)
_TEXTS = st.lists(_PIECES, min_size=1, max_size=3).map("".join)
_FRAMES = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.sampled_from(["in", "out"]),
        st.sampled_from(["1", "2", "x" * 130, "\x00"]),
        st.sampled_from(["Heartbeat", "", "A" * 130, "a\x00"]),
        _TEXTS,
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(frames=_FRAMES, payload_chars=st.sampled_from([5, 40, 65_536]))
def test_the_stored_rows_are_those_of_the_raw_frames_redacted_in_the_writer(frames, payload_chars):
    checkpointer = Checkpointer()
    charger = _charger(checkpointer)
    raw: list[frame_log.Pending] = []
    for pk, direction, message_id, action, text in frames:
        if direction == "out":  # our own frames are JSON we wrote: never a NUL in them
            text = text.replace("\x00", "")
        charger.spec.db_id = pk
        checkpointer.on_frame(charger, direction, text, message_id, action)
        at = checkpointer._frames[-1][1]  # type: ignore[index]  # the log is on
        raw.append((pk, at, "frame", direction, message_id, action, len(text), text))
    shared = frame_log.rows(checkpointer.take().frames, payload_chars, redacted=True)
    assert shared == frame_log.rows(raw, payload_chars)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.tuples(st.sampled_from(["in", "out"]), _TEXTS), max_size=12))
def test_the_dashboard_log_holds_what_it_held_on_its_own(frames):
    alone, shared = EventPublisher(log_bytes=1_000), EventPublisher(log_bytes=1_000)
    checkpointer = Checkpointer(downstream=shared)
    charger = _charger(checkpointer)
    for direction, text in frames:
        alone.on_frame(charger, direction, text, "1", "X")
        checkpointer.on_frame(charger, direction, text, "1", "X")
    texts = [(d, t) for _at, d, t in alone.frames.get("CP-SHARED", ())]
    assert [(d, t) for _at, d, t in shared.frames.get("CP-SHARED", ())] == texts
    assert all(not may_hold_secret(t) or redact_frame(t) == t for _d, t in texts)


def _reference_keep(
    log: deque[tuple[float, str, str]],
    size: int,
    entry: tuple[float, str, str],
    limit: int,
    cap: int,
) -> tuple[int, int]:
    """The dashboard log's bound as it was first written: (new size, entries dropped)."""
    log.append(entry)
    size += len(entry[2]) + 150
    popped = 0
    while len(log) > 1 and (len(log) > limit or size > cap):
        size -= len(log.popleft()[2]) + 150
        popped += 1
    return size, popped


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3_000), max_size=40),
    limit=st.integers(1, 6),
    cap=st.integers(100, 5_000),
)
def test_the_dashboard_log_keeps_the_newest_within_its_count_and_bytes(sizes, limit, cap):
    # `_keep` (the publisher's own frames and events) and `log_frame`, which has it inlined
    # (the frames the checkpoint writer shares): both keep what the reference keeps.
    publisher = EventPublisher(log_limit=limit, log_bytes=cap)
    shared = EventPublisher(log_limit=limit, log_bytes=cap)
    charger = _charger(publisher)
    reference: deque[tuple[float, str, str]] = deque()
    size = 0
    for n, length in enumerate(sizes):
        entry = (float(n), "in", "x" * length)
        before = DROPPED["message_log"]
        publisher._keep(charger, entry)
        size, popped = _reference_keep(reference, size, entry, limit, cap)
        assert DROPPED["message_log"] - before == popped
        assert list(publisher.frames["CP-SHARED"]) == list(reference)
        assert publisher.frames["CP-SHARED"].size == size
        before = DROPPED["message_log"]
        shared.log_frame(charger, "in", "raw", "1", "X", entry[0], entry[2])
        assert DROPPED["message_log"] - before == popped
        assert list(shared.frames["CP-SHARED"]) == list(reference)
        assert shared.frames["CP-SHARED"].size == size


def _reference_values(pending: list[frame_log.Pending], payload_chars: int, redacted: bool) -> list:
    """`frame_log.values` as it was before it unpacked each entry once (the rows it builds
    must not change)."""
    out: list = []
    calls: dict[tuple[int, str, str], int] = {}
    for entry in pending:
        text = entry[7]
        if (
            entry[6] > payload_chars
            or (not redacted and may_hold_secret(text))
            or len(entry[4]) > frame_log.NAME_CHARS
            or len(entry[5]) > frame_log.NAME_CHARS
            or "\x00" in entry[4]
            or "\x00" in entry[5]
            or (entry[3] == "in" and "\x00" in text)
        ):
            entry = frame_log._cleaned(entry, payload_chars, redacted)
            text = entry[7]
        if entry[4] and len(text) > 2 and text[0] == "[" and text[2] == ",":
            kind = text[1]
            if kind == "2":
                calls[(entry[0], entry[4], entry[3])] = len(out)
            elif kind == "3" or kind == "4":
                other = {"in": "out", "out": "in", "": ""}[entry[3]]
                start = calls.pop((entry[0], entry[4], other), None)
                if start is not None:
                    out[start + 8 : start + 11] = [entry[1], entry[6], text]
                    continue
        out.extend(entry)
        out.extend((None, None, ""))
    return out


# Frames as recorded, answers to earlier CALLs included (same pk, message id, the other way).
_PENDING = st.lists(
    st.tuples(
        st.integers(1, 2),
        st.sampled_from(["in", "out", ""]),
        st.sampled_from(["1", "2", "", "x" * 130, "\x00"]),
        st.sampled_from(["MeterValues", "", "A" * 130, "a\x00"]),
        st.sampled_from(
            ['[2,"1","Heartbeat",{}]', '[3,"1",{}]', '[4,"1","E","",{}]', "[3,", "x", "\x00", KEY]
        ),
    ).map(lambda f: (f[0], 1.5, "frame", f[1], f[2], f[3], len(f[4]), f[4])),
    max_size=16,
)


@settings(max_examples=500, deadline=None)
@given(pending=_PENDING, payload_chars=st.sampled_from([3, 12, 65_536]), redacted=st.booleans())
def test_the_stored_values_are_those_the_first_writer_built(pending, payload_chars, redacted):
    assert frame_log.values(pending, payload_chars, redacted=redacted) == _reference_values(
        pending, payload_chars, redacted
    )
