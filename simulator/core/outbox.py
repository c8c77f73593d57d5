"""The ordered outgoing queue of one charger, with the durable transaction outbox in it.

Every CALL the charger makes goes through here, one at a time. Transaction messages
(StartTransaction, StopTransaction, transaction MeterValues) are numbered, handed to a
durability sink before they may be sent, kept while the charger is offline, retried on a
CALLERROR or timeout (TransactionMessageAttempts, TransactionMessageRetryInterval × n)
and removed only when the CSMS confirms them. Other messages are sent only while online,
in order, but may go ahead of a transaction message that waits for its retry (never of one
not yet sent: every message makes its first attempt in the order it was queued).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from simulator.core.drops import dropped
from simulator.core.link import CallFailed, LinkLost, Transport
from simulator.core.protocol import Payload, TransactionRef
from simulator.core.timers import Clock, Handle

log = logging.getLogger(__name__)

# CALLERROR codes that say the CSMS does not take an action at all.
_NOT_TAKEN = frozenset({"NotImplemented", "NotSupported"})


@dataclass(slots=True, eq=False)
class Outgoing:
    action: str
    payload: dict[str, Any]
    transactional: bool = False
    tx: TransactionRef | None = None
    attempts: int = 0
    not_before: float = 0.0
    seq: int = 0
    durable: bool = True
    on_result: Callable[[dict[str, Any]], None] | None = None
    future: asyncio.Future[dict[str, Any]] | None = None
    queued_at: float = 0.0  # wall-clock epoch seconds it was queued (the outbox's age metric)
    # A periodic sample of a transaction: one of those a long backlog drops every second of
    # (`Outbox.thin`). Start, Stop and clock-aligned samples never are.
    thinnable: bool = False


class DurabilitySink(Protocol):
    def outbox_added(self, item: Outgoing) -> None: ...

    def outbox_removed(self, item: Outgoing) -> None: ...

    def held_for_state(self, item: Outgoing) -> None: ...


_NEVER = 2**62  # a queue length no queue reaches


def _never_ready() -> Transport | None:
    return None


def _offline() -> bool:
    return False


def _no_retries() -> tuple[int, int]:
    return (0, 0)


class MessageQueue:
    def __init__(self, sink: DurabilitySink | None = None) -> None:
        self._items: deque[Outgoing] = deque()
        self.sink = sink
        self.next_seq = 1

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def head(self) -> Outgoing | None:
        """The oldest message (messages are queued in order; restored ones come first).
        One indexing, safe to call from another thread while the loop changes the queue."""
        try:
            return self._items[0]
        except IndexError:
            return None

    def append(self, item: Outgoing) -> None:
        if item.transactional:
            item.seq = self.next_seq
            self.next_seq += 1
            if self.sink is not None:
                item.durable = False
                self.sink.outbox_added(item)
        elif not item.durable:
            # Not a transaction message, but it carries a value the store must hold before
            # the CSMS has it (a triggered sample's live register): it waits for the next
            # group commit of its charger's state, as a transaction message does.
            if self.sink is not None:
                self.sink.held_for_state(item)
            else:
                item.durable = True
        self._items.append(item)

    def restore(self, item: Outgoing) -> None:
        """Put back a transaction message read from durable storage (already durable)."""
        item.durable = True
        self.next_seq = max(self.next_seq, item.seq + 1)
        self._items.append(item)

    def next_ready(self, now: float) -> Outgoing | None:
        """The next message to send. Messages leave in the order their events happened:
        nothing overtakes a transaction message still waiting to be durable (a moment, the
        writer's next group commit), so e.g. StatusNotification(Charging) never goes before
        the StartTransaction of its session. Only a transaction message waiting for its
        retry time (after a failed attempt) lets Authorize and StatusNotification go ahead;
        transaction messages always keep their order. So every message makes its first
        attempt in the order it was queued: a transaction message held behind one that
        waits for its retry, never sent yet, holds back what was queued after it too (the
        StatusNotification(Charging) of a second session waits for that session's
        StartTransaction)."""
        blocked = False
        for item in self._items:
            if item.transactional:
                if not item.durable:
                    return None
                if not blocked:
                    if item.not_before <= now:
                        return item
                    blocked = True  # waiting for its retry: what follows may go ahead
                elif item.attempts == 0:
                    return None  # not sent yet: nothing queued after it may go first
            elif not item.durable:
                return None  # held for its charger's state (`append`): a moment
            elif item.not_before <= now:
                return item
        return None

    def soonest_retry(self) -> float | None:
        soonest = None
        for item in self._items:
            when = item.not_before
            if when and item.durable and (soonest is None or when < soonest):
                soonest = when
        return soonest

    def remove(self, item: Outgoing) -> None:
        items = self._items
        if items and items[0] is item:  # the answered message is nearly always the head
            items.popleft()
        else:
            try:
                items.remove(item)
            except ValueError:
                return
        if item.transactional and self.sink is not None:
            self.sink.outbox_removed(item)

    def drop_non_transactional(self, reason: BaseException) -> None:
        """Going offline: only transaction messages are kept (the current status is sent
        again after reconnecting); anyone waiting for an answer is told."""
        kept: deque[Outgoing] = deque()
        for item in self._items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(reason)
            item.future = None
            if item.transactional:
                kept.append(item)
        if len(kept) < len(self._items):
            dropped("outbox_offline", len(self._items) - len(kept))
        self._items = kept

    def retry_later(self, item: Outgoing, max_attempts: int, interval: float, now: float) -> bool:
        """Count a failed attempt; False when attempts are exhausted (the item is dropped)."""
        item.attempts += 1
        if item.attempts >= max_attempts:
            self.remove(item)
            dropped("outbox_attempts")
            return False
        item.not_before = now + interval * item.attempts
        return True


# Messages a charger's queue holds before it thins its periodic samples (`Outbox.thin`):
# a charger's storage is finite, and a long outage of a large fleet must not take the
# worker's memory (2 to 3 KB a queued MeterValues). 0: no bound.
BACKLOG_LIMIT = 500


class Outbox:
    """The sending side of one charge point: its queue, drained one CALL at a time.

    `ready()` gives the transport when the charge point may send now (online and booted),
    `online()` whether it is connected at all, `retry()` the current
    (TransactionMessageAttempts, TransactionMessageRetryInterval), `prepare()` the payload
    as it goes on the wire now (the protocol adapter fills in what is known only then). The queue is drained by
    callbacks, not by a task: each answer sends the next message at once.
    """

    def __init__(
        self,
        owner: str,
        clock: Clock,
        ready: Callable[[], Transport | None],
        online: Callable[[], bool],
        retry: Callable[[], tuple[int, int]],
        prepare: Callable[[str, Payload, TransactionRef | None], Payload],
        backlog_limit: int = BACKLOG_LIMIT,
    ) -> None:
        self.owner = owner
        self.clock = clock
        self.queue = MessageQueue()
        self.backlog_limit = backlog_limit
        # The queue's length at which `thin` runs next (no bound: never).
        self._thin_at = backlog_limit if backlog_limit > 0 else _NEVER
        self._ready = ready
        self._online = online
        self._retry = retry
        self._prepare = prepare  # the adapter's last touch before the wire (`Messages.at_send`)
        self._wall_time = clock.time  # looked up once: it dates every message queued
        self.in_flight: Outgoing | None = None  # the queue's CALL awaiting its answer
        self._pumping = False
        self._pump_again = False
        self._wake_handle: Handle | None = None
        # While the charger handles a CALL from the central system, what the call causes
        # waits: the answer goes first (`hold` / `release`, by the protocol adapter).
        self._held = False

    def enqueue(self, item: Outgoing) -> None:
        if not item.transactional and not self._online():
            if item.future is not None and not item.future.done():
                item.future.set_exception(LinkLost(f"{self.owner} is offline"))
            dropped("outbox_offline")
            return
        item.queued_at = self._wall_time()
        queue = self.queue
        queue.append(item)
        if len(queue._items) >= self._thin_at:  # one comparison a message: a backlog only
            self.thin()
        if item.durable:  # else the group commit that makes it durable wakes the queue
            self.wake()

    def thin(self) -> int:
        """A backlog as long as `backlog_limit` (the charger offline for long, or a CSMS
        slower than its samples) drops every second of its queued periodic samples, oldest
        first, and their rows; the number dropped. Run again each time the backlog reaches
        the limit, so the older part of a long outage keeps ever fewer samples and the
        recent part more, and the queue stays within the limit: a charger with finite
        storage keeps the shape of a long session this way, not its first or its last hour.
        Start and Stop, clock-aligned samples, a message in flight or already tried are kept.
        """
        queue = self.queue
        items = queue._items
        periodic = [
            item
            for item in items
            if item.thinnable and item.attempts == 0 and item is not self.in_flight
        ]
        gone = set(map(id, periodic[1::2]))
        if gone:
            queue._items = deque(item for item in items if id(item) not in gone)
            sink = queue.sink
            if sink is not None:
                for item in periodic[1::2]:
                    sink.outbox_removed(item)
            dropped("outbox_thinned", len(gone))
            log.info(
                "%s: %d messages queued: %d periodic samples dropped, every second one",
                self.owner,
                len(items),
                len(gone),
            )
        # Next at the limit again; but when little could be dropped (the queue is mostly
        # Start, Stop and clock-aligned samples), once half the limit more is queued: a pass
        # is a walk of the queue, and must not come at every message.
        limit = self.backlog_limit
        if len(gone) >= max(limit // 4, 1):
            self._thin_at = limit
        else:
            self._thin_at = len(queue._items) + max(limit // 2, 1)
        return len(gone)

    def can_send(self) -> bool:
        """Whether the queue may send now: its charger is online and booted."""
        return self._ready() is not None

    def finishing(self, within: float) -> list[Outgoing]:
        """What this queue can send, in order, within `within` seconds if the central system
        answers: the conversations a graceful stop lets finish. Nothing while it cannot send,
        and nothing from the first message that waits for a retry later than that (the
        simple bound: a message behind it may be held back by it)."""
        if self._ready() is None:
            return []
        until = self.clock.monotonic() + within
        kept = []
        for item in self.queue:
            if item.not_before > until:
                break
            kept.append(item)
        return kept

    def hold(self) -> None:
        """Send nothing new until `release` (the answer to a CALL is being made)."""
        self._held = True

    def release(self) -> None:
        """The answer is out: send what is ready, in order."""
        if self._held:
            self._held = False
            self.wake()

    def link_lost(self) -> None:
        """The connection is gone: forget the outstanding CALL (it is sent again after
        reconnecting if it is a transaction message); drop the others."""
        self.in_flight = None
        self.queue.drop_non_transactional(LinkLost(f"{self.owner} went offline"))

    def wake(self) -> None:
        """Send the next ready message if nothing is outstanding (one CALL at a time, in
        order, as OCPP-J requires)."""
        if self._pumping:
            self._pump_again = True  # an answer arrived while sending: go round again
            return
        self._pumping = True
        try:
            # One round sends at most one message; another follows only when its answer
            # (or a failure) came while it was being sent. The round is inline, not a
            # method: every message sent, from a written batch or an answer, comes here.
            while True:
                self._pump_again = False
                # The deque itself, not `MessageQueue.__bool__`: one Python call less.
                items = self.queue._items
                if self.in_flight is not None or not items or self._held:
                    return
                transport = self._ready()
                if transport is None:
                    return
                # The head when it may go now (nearly always: the answered message was the
                # head) is what `next_ready` returns first for it; otherwise ask it.
                now = self.clock.monotonic()
                head = items[0]
                item = (
                    head if head.durable and head.not_before <= now else self.queue.next_ready(now)
                )
                if item is None:
                    soonest = self.queue.soonest_retry()
                    if soonest is not None:
                        self._schedule_wake(max(soonest - self.clock.monotonic(), 0.0))
                    return  # else waiting for durability: the sink wakes us
                self.in_flight = item
                try:
                    transport.send_call(
                        item.action,
                        self._prepare(item.action, item.payload, item.tx),
                        # A partial, not a lambda: its call goes straight to `_answered`.
                        partial(self._answered, item),
                    )
                except Exception as exc:  # a message we built wrong can never go: drop it
                    log.exception("%s: %s cannot be sent; dropped", self.owner, item.action)
                    dropped("outbox_unsendable")
                    if self.in_flight is item:
                        self.in_flight = None
                    self.queue.remove(item)
                    if item.future is not None and not item.future.done():
                        item.future.set_exception(CallFailed("InternalError", str(exc)))
                    continue
                if not self._pump_again:
                    return
        finally:
            self._pumping = False

    def _answered(
        self, item: Outgoing, result: dict[str, Any] | None, error: Exception | None
    ) -> None:
        if self.in_flight is not item:
            return  # an answer for a connection that is gone
        self.in_flight = None
        if error is None:  # the common case first
            assert result is not None  # a transport gives a result or an error
            queue = self.queue
            items = queue._items
            # `queue.remove(item)` for the head, the answered message nearly always (every
            # MeterValues'), without its call.
            if items and items[0] is item:
                items.popleft()
                if item.transactional and (sink := queue.sink) is not None:
                    sink.outbox_removed(item)
            else:
                queue.remove(item)
            if item.on_result is not None:
                try:
                    item.on_result(result)
                except Exception:
                    log.exception("%s: handling the answer to %s failed", self.owner, item.action)
            if item.future is not None and not item.future.done():
                item.future.set_result(result)
        elif isinstance(error, CallFailed):
            self._failed(item, error)
        else:
            return  # the link is gone: reconnecting wakes the queue again
        self.wake()

    def _failed(self, item: Outgoing, exc: CallFailed) -> None:
        if not item.transactional:
            log.info("%s: %s failed (%s); not retried", self.owner, item.action, exc)
            self.queue.remove(item)
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc)
            return
        if item.tx is None and exc.code in _NOT_TAKEN:
            # A durable message that is no transaction's (a SecurityEventNotification) and
            # that this CSMS does not implement (a 1.6 CSMS without the security
            # whitepaper): no retry can succeed, and transaction messages wait behind it.
            log.info("%s: %s not taken by the CSMS (%s); dropped", self.owner, item.action, exc)
            self.queue.remove(item)
            dropped("outbox_not_taken")
            return
        attempts, interval = self._retry()
        if self.queue.retry_later(item, attempts, interval, self.clock.monotonic()):
            log.info(
                "%s: %s failed (%s); attempt %d in %ss",
                self.owner,
                item.action,
                exc,
                item.attempts + 1,
                interval * item.attempts,
            )
        else:
            log.warning(
                "%s: dropping %s after %d failed attempts (last: %s)",
                self.owner,
                item.action,
                item.attempts,
                exc,
            )

    def _schedule_wake(self, delay: float) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_handle = self.clock.call_later(delay, self.wake)

    def cancel_wake(self) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()

    def dispose(self) -> None:
        """Its charger is gone for good (replaced by a reboot, retired, its last state
        saved): let go of the charger's callbacks, which made the charger and this outbox a
        reference cycle that only a full collection could free. A late call (an answer, a
        wake) finds it offline and unable to send: nothing more leaves, nothing is queued."""
        self.cancel_wake()
        self._wake_handle = None
        self._ready = _never_ready
        self._online = _offline
        self._retry = _no_retries
        self.queue.sink = None
        self.in_flight = None
