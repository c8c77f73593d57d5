"""The simulator process: load the fleet, keep chargers connected, tick, checkpoint, stop.

One lifecycle for every mode (embedded with the web server, or a worker alone): startup,
main loop, graceful shutdown with a bounded wait, then cancel what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async

from simulator.core.charge_point import BootState, Charger, LinkState, Listener
from simulator.ocpp16.client import run_connection
from simulator.runtime.meter_engine import MeterEngine
from simulator.runtime.persistence import Batch, Checkpointer, load_fleet
from simulator.runtime.store import Store

log = logging.getLogger(__name__)


class SimulatorService:
    def __init__(
        self,
        *,
        shard: int = 0,
        shards: int = 1,
        tick_seconds: float = 1.0,
        checkpoint_seconds: float = 1.0,
        reconnect_cap: float = 60.0,
        listener: Listener | None = None,
        only_ids: list[str] | None = None,
    ) -> None:
        self.shard = shard
        self.shards = shards
        self.checkpoint_seconds = checkpoint_seconds
        self.reconnect_cap = reconnect_cap
        self.only_ids = only_ids
        self.store = Store()
        self.checkpointer = Checkpointer(downstream=listener)
        self.engine = MeterEngine(self.store, tick_seconds)
        self.connections: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._failed_batch: Batch | None = None
        self._checkpoint_lock = asyncio.Lock()
        # One writer thread for every checkpoint: batches stay in order and the thread
        # keeps its database connection.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")

    # -- startup ------------------------------------------------------------------------------

    async def start(self, *, connect: bool = True) -> None:
        chargers = await database_sync_to_async(load_fleet, thread_sensitive=False)(
            self.checkpointer, shard=self.shard, shards=self.shards, ids=self.only_ids
        )
        for charger in chargers:
            self.store.add(charger)
        log.info("loaded %d chargers (shard %d/%d)", len(chargers), self.shard, self.shards)
        if connect:
            for charger in chargers:
                if charger.spec.auto_connect and charger.spec.csms_url:
                    self.connect(charger)
        self._tasks.append(asyncio.create_task(self.engine.run(), name="meter-engine"))
        self._tasks.append(asyncio.create_task(self._checkpoint_loop(), name="checkpoints"))

    def connect(self, charger: Charger) -> None:
        task = self.connections.get(charger.id)
        if task is not None and not task.done():
            return
        if not charger.spec.csms_url:
            raise ValueError(f"{charger.id} has no CSMS URL")
        self.connections[charger.id] = asyncio.create_task(
            run_connection(charger, reconnect_cap=self.reconnect_cap), name=f"ocpp:{charger.id}"
        )

    async def disconnect(self, charger: Charger) -> None:
        task = self.connections.pop(charger.id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        charger.detach()

    # -- steady state ---------------------------------------------------------------------------

    async def checkpoint(self, *, full: bool = True) -> None:
        """Write what changed; a batch that fails is written again before anything newer.
        One checkpoint at a time: batches must reach the database in the order taken."""
        async with self._checkpoint_lock:
            if self._failed_batch is not None:
                batch, self._failed_batch = self._failed_batch, None
                await self._write(batch)
            batch = self.checkpointer.take(full=full)
            if batch:
                await self._write(batch)

    async def _write(self, batch: Batch) -> None:
        # The write runs in a thread that a cancellation cannot stop: shield it, and on
        # cancellation wait for the thread so that the batch is known written (or failed)
        # before anything else is written.
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writer, Checkpointer.write, batch)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await future
            self._settle(batch, future)
            raise
        except Exception:
            self._failed_batch = batch
            raise
        self.checkpointer.written(batch)

    def _settle(self, batch: Batch, future: asyncio.Future[None]) -> None:
        if future.done() and not future.cancelled() and future.exception() is None:
            self.checkpointer.written(batch)
        else:
            self._failed_batch = batch

    async def _checkpoint_loop(self) -> None:
        """Group commit: flush transaction messages at once (with their chargers' registers),
        and everything else every `checkpoint_seconds`."""
        urgent = self.checkpointer.urgent
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.checkpoint_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(urgent.wait(), max(next_full - loop.time(), 0.0))
            urgent.clear()
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + self.checkpoint_seconds
            try:
                await self.checkpoint(full=full)
            except Exception:
                log.exception("checkpoint failed; retrying")
                await asyncio.sleep(min(self.checkpoint_seconds, 1.0))

    def progress(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for charger in self.store:
            if charger.boot is BootState.ACCEPTED and charger.link is LinkState.ONLINE:
                counts["accepted"] += 1
            elif charger.link is LinkState.ONLINE:
                counts[f"boot {charger.boot.value.lower()}"] += 1
            elif charger.link_error:
                counts["failing"] += 1
            elif charger.id in self.connections:
                counts["connecting"] += 1
            else:
                counts["idle"] += 1
        return counts

    async def report_progress(self, write: Callable[[str], None], every: float = 1.0) -> None:
        """A terminal line while the fleet comes up: connected / accepted / failing counts."""
        wanted = len(self.connections)
        started = time.monotonic()
        while wanted:
            counts = self.progress()
            write(
                f"\rfleet: {counts['accepted']}/{wanted} accepted, "
                f"{counts['connecting']} connecting, {counts['failing']} failing "
                f"({time.monotonic() - started:.0f} s)"
            )
            if counts["accepted"] >= wanted:
                write("\n")
                return
            await asyncio.sleep(every)

    async def publisher_loop(self) -> None:
        """Publish state to the channel layer, if the listener is an EventPublisher."""
        from channels.layers import get_channel_layer

        from simulator.runtime.events import EventPublisher

        publisher = self.checkpointer.downstream
        layer = get_channel_layer()
        if isinstance(publisher, EventPublisher) and layer is not None:
            await publisher.run(layer)

    # -- shutdown -------------------------------------------------------------------------------

    async def stop(self, timeout: float = 10.0) -> None:
        """Save state, close every connection, stop the loops; bounded by `timeout`."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        connections = list(self.connections.values())
        for task in connections:
            task.cancel()
        if connections:
            _done, pending = await asyncio.wait(connections, timeout=timeout)
            if pending:
                log.warning("%d connections did not close in %.0f s", len(pending), timeout)
        for charger in self.store:
            charger.cancel_timers()
        self.checkpointer.mark_all(self.store)
        try:
            await asyncio.wait_for(self.checkpoint(), timeout)
        except Exception:
            log.exception("final checkpoint failed")
        with contextlib.suppress(Exception):  # bounded: a write may still hold the thread
            closing = asyncio.get_running_loop().run_in_executor(self._writer, Checkpointer.close)
            await asyncio.wait_for(closing, timeout)
        self._writer.shutdown(wait=False)

    async def command_loop(self) -> None:
        """Answer dashboard commands from the channel layer and publish fleet summaries.

        The task registers itself so that `stop()` cancels it with the other loops.
        """
        from channels.layers import get_channel_layer

        from simulator.runtime.commands import CommandServer

        task = asyncio.current_task()
        if task is not None:
            self._tasks.append(task)
        layer = get_channel_layer()
        if layer is not None:
            await CommandServer(self, layer).run()
