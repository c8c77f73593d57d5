"""The ordered outgoing queue of one charger, with the durable transaction outbox in it.

Every CALL the charger makes goes through here, one at a time. Transaction messages
(StartTransaction, StopTransaction, transaction MeterValues) are numbered, handed to a
durability sink before they may be sent, kept while the charger is offline, retried on a
CALLERROR or timeout (TransactionMessageAttempts, TransactionMessageRetryInterval × n)
and removed only when the CSMS confirms them. Other messages are sent only while online,
in order, but may go ahead of a transaction message that waits for its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})


class TransactionRef(Protocol):
    local_id: str

    @property
    def wire_id(self) -> int: ...


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

    def wire_payload(self) -> dict[str, Any]:
        """The payload as sent now: a transaction's id is filled in at send time, so that
        messages queued before StartTransaction was confirmed carry the real id (or -1)."""
        if self.tx is not None and self.action != "StartTransaction":
            self.payload["transactionId"] = self.tx.wire_id
        return self.payload


class DurabilitySink(Protocol):
    def outbox_added(self, item: Outgoing) -> None: ...

    def outbox_removed(self, item: Outgoing) -> None: ...


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

    def append(self, item: Outgoing) -> None:
        if item.transactional:
            item.seq = self.next_seq
            self.next_seq += 1
            if self.sink is not None:
                item.durable = False
                self.sink.outbox_added(item)
        self._items.append(item)

    def restore(self, item: Outgoing) -> None:
        """Put back a transaction message read from durable storage (already durable)."""
        item.durable = True
        self.next_seq = max(self.next_seq, item.seq + 1)
        self._items.append(item)

    def next_ready(self, now: float) -> Outgoing | None:
        """The head of the queue, or, while transaction messages wait (for their retry time
        or for durability), the first message that is not one: transaction messages keep
        their order, Authorize and StatusNotification may go ahead."""
        blocked = False
        for item in self._items:
            ready = item.not_before <= now and item.durable
            if item.transactional:
                if ready and not blocked:
                    return item
                blocked = True
            elif ready:
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
        with contextlib.suppress(ValueError):
            self._items.remove(item)
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
        self._items = kept

    def retry_later(self, item: Outgoing, max_attempts: int, interval: float) -> bool:
        """Count a failed attempt; False when attempts are exhausted (the item is dropped)."""
        item.attempts += 1
        if item.attempts >= max_attempts:
            self.remove(item)
            return False
        item.not_before = time.monotonic() + interval * item.attempts
        return True
