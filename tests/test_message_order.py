"""The message-order rule (issue 18) as a property: over random sequences of what drivers,
the central system and the durable outbox do, a charger's frames leave in the order their
events happened, and a session's StartTransaction goes before anything reported about it.

The toy protocol adapter and a fake transport that answers at once keep it free of
sockets; the durability sink holds transaction messages until a "commit" step, as the
writer's group commit does, so that later messages have the chance to overtake them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.charge_point import ActionError, Charger, ChargerSpec
from simulator.core.evse import Evse, IllegalTransition
from simulator.core.outbox import Outgoing
from tests.test_protocol_adapter import CAR, toy_csms
from tests.toy_protocol import FakeClock, FakeTransport, Toy

STEPS = ("plug", "start", "stop", "unplug", "inoperative", "operative", "commit", "status")


def two_connector_charger(clock: FakeClock) -> Charger:
    config = {"MeterValueSampleInterval": "10", "StopTxnSampledData": ""}
    evses = [Evse(connector_id=n, max_power_w=11_000) for n in (1, 2)]
    return Charger(ChargerSpec("TOY-2"), evses, config, messages=Toy(), clock=clock)


class SlowSink:
    """Transaction messages become durable only when `commit` runs, then the queue wakes."""

    def __init__(self) -> None:
        self.waiting: list[Outgoing] = []
        self.charger: Charger | None = None

    def outbox_added(self, item: Outgoing) -> None:
        self.waiting.append(item)

    def outbox_removed(self, item: Outgoing) -> None:
        pass

    def held_for_state(self, item: Outgoing) -> None:
        self.waiting.append(item)

    def commit(self) -> None:
        for item in self.waiting:
            item.durable = True
        self.waiting.clear()
        assert self.charger is not None
        self.charger.wake()


def driver_event(charger: Charger, step: str, connector: int) -> bool:
    """What the driver (or the charger by itself) does, shared by the order tests; False
    if `step` is not one of these. Raises what the charger raises for a refused step."""
    if step == "plug":
        charger.plug_in(connector, CAR, soc=20)
    elif step == "start":
        charger.start_transaction(connector, "GOOD")
    elif step == "stop":
        if connector in charger.transactions:
            charger.stop_transaction(connector)
    elif step == "unplug":
        charger.unplug(connector)
    elif step == "status":
        charger.send_status(connector)
    else:
        return False
    return True


def run(charger: Charger, sink: SlowSink, step: str, connector: int) -> None:
    try:
        if driver_event(charger, step, connector):
            pass
        elif step == "inoperative":
            charger.change_availability(connector, "Inoperative")
        elif step == "operative":
            charger.change_availability(connector, "Operative")
        elif step == "commit":
            sink.commit()
    except (ActionError, IllegalTransition):
        pass  # a step the charger refuses in its present state: nothing is queued


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STEPS), st.integers(1, 2)), max_size=40))
async def test_frames_leave_in_the_order_their_events_happened(steps: list[Any]) -> None:
    clock = FakeClock()
    charger = two_connector_charger(clock)
    transport = FakeTransport(toy_csms)
    charger.attach(transport)
    await charger.boot_sequence()
    sink = SlowSink()
    sink.charger = charger
    charger.queue.sink = sink
    queued: list[tuple[str, dict[str, Any]]] = []
    enqueue = charger.outbox.enqueue

    def record(item: Outgoing) -> None:
        queued.append((item.action, dict(item.payload)))
        enqueue(item)

    charger.outbox.enqueue = record  # type: ignore[method-assign]  # records the order
    sent_before = len(transport.sent)
    for step, connector in steps:
        run(charger, sink, step, connector)
    sink.commit()  # whatever still waits goes out

    sent = [action for action, _payload in transport.sent[sent_before:]]
    # Everything queued went out, in the order it was queued (no retries here, so nothing
    # may overtake anything).
    assert sent == [action for action, _payload in queued]
    # And so a session's opening goes before the status that says it is charging.
    for index, (action, payload) in enumerate(transport.sent[sent_before:]):
        if action == "socket" and payload.get("state") == "charging":
            opened = [a for a, _ in transport.sent[sent_before : sent_before + index]]
            assert "session-open" in opened


_QUEUED = st.lists(
    st.tuples(
        st.booleans(),  # transactional
        st.booleans(),  # durable (only a transaction message waits to be durable)
        st.sampled_from([0.0, 999.0, 1_000.0, 1_001.0]),  # not_before around now (1,000)
        st.integers(0, 2),  # attempts
    ),
    min_size=1,
    max_size=6,
)


@given(_QUEUED)
def test_the_outbox_sends_what_next_ready_picks(queued: list[Any]) -> None:
    # `wake` takes the head without asking `next_ready` when it may go now: the
    # message sent is the one `next_ready` picks (or none), for any queue.
    from simulator.core.outbox import Outbox

    clock = FakeClock(start=1_000.0)
    sent: list[str] = []

    class Recorder:
        def send_call(self, action: str, payload: Any, done: Any) -> None:
            sent.append(action)

    transport: Any = Recorder()  # only `send_call` of the Transport protocol is used
    outbox = Outbox(
        "CP", clock, lambda: transport, lambda: True, lambda: (3, 60), lambda a, p, t: p
    )
    for n, (transactional, durable, not_before, attempts) in enumerate(queued):
        item = Outgoing(f"A{n}", {}, transactional, durable=durable or not transactional)
        item.not_before, item.attempts = not_before, attempts
        outbox.queue.restore(item)
        item.durable = durable or not transactional
    expected = outbox.queue.next_ready(clock.monotonic())
    outbox.wake()
    assert sent == ([] if expected is None else [expected.action])
    assert outbox.in_flight is expected


@given(_QUEUED)
def test_an_answer_removes_its_message_wherever_it_stands(queued: list[Any]) -> None:
    # `Outbox._answered` removes the head itself and leaves any other place to
    # `MessageQueue.remove`: either way the answered message leaves the queue, the others
    # stay in their order, and the sink hears of a transaction message's removal once.
    from simulator.core.outbox import Outbox

    clock = FakeClock(start=1_000.0)
    answers: list[Any] = []
    removed: list[Outgoing] = []

    class Sink:
        def outbox_added(self, item: Outgoing) -> None:
            pass

        def outbox_removed(self, item: Outgoing) -> None:
            removed.append(item)

        def held_for_state(self, item: Outgoing) -> None:
            pass

    class Recorder:
        def send_call(self, action: str, payload: Any, done: Any) -> None:
            answers.append(done)

    transport: Any = Recorder()
    outbox = Outbox(
        "CP", clock, lambda: transport, lambda: True, lambda: (3, 60), lambda a, p, t: p
    )
    outbox.queue.sink = Sink()
    for n, (transactional, durable, not_before, attempts) in enumerate(queued):
        item = Outgoing(f"A{n}", {}, transactional, durable=durable or not transactional)
        item.not_before, item.attempts = not_before, attempts
        outbox.queue.restore(item)
        item.durable = durable or not transactional
    before = list(outbox.queue)
    outbox.wake()
    answered = outbox.in_flight
    if answered is None:
        return
    transport_off: Any = None
    outbox._ready = lambda: transport_off  # hold what the answer would send next
    answers[0]({}, None)
    assert list(outbox.queue) == [item for item in before if item is not answered]
    assert removed == ([answered] if answered.transactional else [])
