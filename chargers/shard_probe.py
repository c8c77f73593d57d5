"""Whether the worker that acknowledged a command still runs its shard: one question per
shard for every command of this process that waits on it.

A command awaited for its result (a `wait_for` of up to an hour) would wait for its whole
timeout, and a minute more, if its worker were killed meanwhile; so the waiting side asks
the shard every few seconds for its summary, whose `started` tells the worker that
acknowledged from one started since. Asked by each waiting call, 1,000 open waits were
some 200 questions a second to one worker, each answered with the shard's counts; here
every wait of this event loop on one shard shares one question per interval.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
import weakref
from typing import Any

from simulator import contract


class Gone(enum.Enum):
    """Why a waiter's worker no longer runs its shard."""

    STOPPED = "stopped answering"  # no answer within the answer time
    RESTARTED = "restarted"  # answered, with another start time than it acknowledged with


class ShardProbe:
    """Asks the worker of `shard` every `every` s for its summary while anyone waits on it,
    and tells the waiters it no longer serves (`watch`).

    A waiter is judged by a question sent after it started waiting (it was acknowledged
    moments ago: an older question's silence, or its answer, says nothing of it)."""

    def __init__(self, layer: Any, shard: int, every: float, answer_within: float) -> None:
        self.layer = layer
        self.shard = shard
        self.every = every
        self.answer_within = answer_within
        # Each waiter's future (its verdict) -> the start time its worker acknowledged with.
        self._waiters: dict[asyncio.Future[Gone], Any] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, started: Any) -> asyncio.Future[Gone]:
        """A future that is set when the worker that acknowledged with `started` (None: a
        worker that does not say, then only its silence counts) stops answering or
        restarts; an exception in it when the channel layer failed. `unwatch` it after."""
        loop = asyncio.get_running_loop()
        verdict: asyncio.Future[Gone] = loop.create_future()
        self._waiters[verdict] = started
        if self._task is None:
            self._task = loop.create_task(self._ask(), name=f"probe:shard {self.shard}")
        return verdict

    def unwatch(self, verdict: asyncio.Future[Gone]) -> None:
        self._waiters.pop(verdict, None)
        if not self._waiters:
            self.close()

    def close(self) -> None:
        """No one waits: stop asking (the next `watch` starts again)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._forget()

    def _forget(self) -> None:
        probes = _probes.get(asyncio.get_running_loop())
        key = (self.layer, self.shard, self.every, self.answer_within)
        if probes is not None and probes.get(key) is self:
            del probes[key]

    async def _ask(self) -> None:
        channel: str | None = None
        while True:
            await asyncio.sleep(self.every)
            judged = dict(self._waiters)
            try:
                if channel is None:
                    channel = await self.layer.new_channel()
                answer = await self._question(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the layer away: each waiter says so, as it would
                for verdict in judged:
                    if not verdict.done():
                        verdict.set_exception(exc)
                continue
            for verdict, started in judged.items():
                if verdict.done():
                    continue
                if answer is None:
                    verdict.set_result(Gone.STOPPED)
                elif started is not None and answer.get("started") != started:
                    verdict.set_result(Gone.RESTARTED)

    async def _question(self, channel: str) -> dict[str, Any] | None:
        """The shard's summary, or None when its worker did not answer in time."""
        request_id = uuid.uuid4().hex
        question = contract.summary_request(channel, request_id)
        await self.layer.group_send(contract.engine_group(self.shard), question)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_within
        while (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(self.layer.receive(channel), left)
            except TimeoutError:
                return None
            # An answer to an earlier question, late, says nothing of this one.
            if isinstance(message, dict) and message.get("request_id") == request_id:
                return message
        return None


# The probes of each event loop (a web process has one; a test has one per test), by
# (layer, shard, interval, answer time): waits that ask alike share one. A probe is here
# only while someone waits on it.
_probes: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, int, float, float], ShardProbe]
] = weakref.WeakKeyDictionary()


def probe_of(layer: Any, shard: int, every: float, answer_within: float) -> ShardProbe:
    """The running loop's probe of `shard` on `layer` (made if none is running)."""
    probes = _probes.setdefault(asyncio.get_running_loop(), {})
    key = (layer, shard, every, answer_within)
    probe = probes.get(key)
    if probe is None:
        probe = probes[key] = ShardProbe(layer, shard, every, answer_within)
    return probe
