"""The engine's Prometheus metrics that are not counted on the OCPP path.

- `FleetCollector`: gauges read from the live chargers when Prometheus scrapes (chargers by
  link and boot state, connectors by status, outbox depth and the age of its oldest
  message) and the dropped-events counter (`simulator.core.drops`); nothing is updated
  per tick or per frame for them. The chargers belong to the event loop: a scrape from
  another thread (a worker's --metrics-port server) reads them on the loop.
- The meter engine's tick lag and tick duration (`meter_engine.MeterEngine.run`).
- `serve_http`: a worker's own metrics on --metrics-port (prometheus_client's server).

Everything is in prometheus_client's default registry, with the OCPP counters of
`simulator.ocpp16.metrics` and the process collector (CPU, memory, open files).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from simulator import contract
from simulator.core.charge_point import BootState, Charger, LinkState
from simulator.core.drops import DROPPED, REASONS

log = logging.getLogger(__name__)

# How long a scrape from another thread waits for the loop to count the fleet.
CENSUS_TIMEOUT_SECONDS = 5.0

_TICK_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

TICK_LAG = Histogram(
    "chargesim_tick_lag_seconds",
    "How late each meter-engine tick started against its schedule (a busy event loop).",
    buckets=_TICK_BUCKETS,
)
TICK_DURATION = Histogram(
    "chargesim_tick_duration_seconds",
    "How long each meter-engine tick took (every EVSE of every charger advanced).",
    buckets=_TICK_BUCKETS,
)

# Background traffic (simulator.runtime.traffic): what became of each arrival (started,
# refused, turned_away, failed) and how sessions ended (left, stayed plugged in).
TRAFFIC_ARRIVALS = PromCounter(
    "chargesim_traffic_arrivals",
    "Drivers of the background traffic, by what became of them: started (a session), "
    "turned_away (no free connector), refused (idTag not accepted), failed.",
    ["outcome"],
)
TRAFFIC_DEPARTURES = PromCounter(
    "chargesim_traffic_departures",
    "Background-traffic sessions at the end of their dwell: left (stopped and unplugged) "
    "or stayed (a driver who never unplugs).",
    ["kind"],
)
# Every label value shown from the start at 0: a series that appears only at its first
# increment makes rate() and increase() miss that first event.
for _outcome in ("started", "turned_away", "refused", "failed"):
    TRAFFIC_ARRIVALS.labels(outcome=_outcome)
for _kind in ("left", "stayed"):
    TRAFFIC_DEPARTURES.labels(kind=_kind)


@dataclass
class Census:
    """The fleet's gauges at one instant."""

    chargers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (link, boot)
    connectors: Counter[str] = field(default_factory=Counter)  # status
    outbox: int = 0
    oldest_queued_at: float | None = None  # epoch seconds

    @classmethod
    def of(cls, chargers: Iterable[Charger]) -> Census:
        census = cls()
        links, statuses = census.chargers, census.connectors
        oldest = None
        for charger in chargers:
            links[charger.link.value, charger.boot.value] += 1
            for evse in charger.evses:
                statuses[evse.status.value] += 1
            queue = charger.queue
            if queue:
                census.outbox += len(queue)
                head = queue.head()
                if head is not None and (oldest is None or head.queued_at < oldest):
                    oldest = head.queued_at
        census.oldest_queued_at = oldest
        return census

    def add(self, other: Census) -> None:
        self.chargers.update(other.chargers)
        self.connectors.update(other.connectors)
        self.outbox += other.outbox
        if other.oldest_queued_at is not None and (
            self.oldest_queued_at is None or other.oldest_queued_at < self.oldest_queued_at
        ):
            self.oldest_queued_at = other.oldest_queued_at


class FleetCollector(Collector):
    """Reads the attached simulators' chargers at scrape time."""

    def __init__(self) -> None:
        # id(store) -> (its chargers, the loop that owns them); more than one in tests.
        self._fleets: dict[int, tuple[Iterable[Charger], asyncio.AbstractEventLoop]] = {}

    def attach(self, chargers: Iterable[Charger], loop: asyncio.AbstractEventLoop) -> None:
        self._fleets[id(chargers)] = (chargers, loop)

    def detach(self, chargers: Iterable[Charger]) -> None:
        self._fleets.pop(id(chargers), None)

    def describe(self) -> Iterator[Metric]:
        # The names, so that the registry refuses a clash; no samples.
        yield from self._families(Census(), 0.0)
        yield self._dropped({})

    def collect(self) -> Iterator[Metric]:
        total = Census()
        for key, (chargers, loop) in list(self._fleets.items()):
            if loop.is_closed():
                # Its simulator ended without stopping (a crash, or a test's loop torn
                # down): nothing of it runs any more, so nothing of it is counted.
                self._fleets.pop(key, None)
                continue
            census = _census_on_loop(chargers, loop)
            if census is not None:
                total.add(census)
        now = time.time()
        age = 0.0 if total.oldest_queued_at is None else max(now - total.oldest_queued_at, 0.0)
        yield from self._families(total, age)
        yield self._dropped(dict(DROPPED))

    @staticmethod
    def _families(census: Census, age: float) -> Iterator[Metric]:
        chargers = GaugeMetricFamily(
            "chargesim_chargers",
            "Chargers this process runs, by link state (offline, connecting, online) and boot "
            "state (None, Pending, Accepted, Rejected).",
            labels=["link", "boot"],
        )
        for link in LinkState:
            for boot in BootState:
                chargers.add_metric(
                    [link.value, boot.value], census.chargers[link.value, boot.value]
                )
        yield chargers
        connectors = GaugeMetricFamily(
            "chargesim_connectors",
            "Connectors (EVSEs) of the chargers this process runs, by OCPP status.",
            labels=["status"],
        )
        for status in contract.CONNECTOR_STATUSES:
            connectors.add_metric([status], census.connectors[status])
        yield connectors
        yield GaugeMetricFamily(
            "chargesim_outbox_messages",
            "Messages waiting in the chargers' outboxes (the one awaiting its answer included).",
            value=census.outbox,
        )
        yield GaugeMetricFamily(
            "chargesim_outbox_oldest_age_seconds",
            "Age of the oldest message in any charger's outbox (0 when all are empty).",
            value=age,
        )

    @staticmethod
    def _dropped(counts: dict[str, int]) -> Metric:
        family = CounterMetricFamily(
            "chargesim_dropped_events",
            "Things the engine dropped, by reason: "
            + "; ".join(f"{reason}: {text}" for reason, text in REASONS.items())
            + ".",
            labels=["reason"],
        )
        for reason in sorted(counts):
            family.add_metric([reason], counts[reason])
        return family


def _census_on_loop(chargers: Iterable[Charger], loop: asyncio.AbstractEventLoop) -> Census | None:
    """Count on the loop that owns the chargers: at once when called on it (the web
    side's /metrics in the embedded mode), else handed to it and waited for."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        return Census.of(list(chargers))
    answer: concurrent.futures.Future[Census] = concurrent.futures.Future()

    def count() -> None:
        try:
            answer.set_result(Census.of(list(chargers)))
        except BaseException as exc:
            answer.set_exception(exc)

    try:
        loop.call_soon_threadsafe(count)
        return answer.result(timeout=CENSUS_TIMEOUT_SECONDS)
    except RuntimeError:  # the loop closed meanwhile
        return None
    except concurrent.futures.TimeoutError:
        log.warning(
            "metrics: the event loop did not count the fleet within %g s", CENSUS_TIMEOUT_SECONDS
        )
        return None


FLEET: Final = FleetCollector()
REGISTRY.register(FLEET)


class MetricsServerError(Exception):
    """The metrics port cannot be served, in words for the command line."""


def serve_http(port: int, bind: str = "127.0.0.1") -> Callable[[], None]:
    """Serve this process's metrics at http://bind:port/metrics from a thread
    (prometheus_client's server, no authentication: bind it to a private address).
    Returns the function that stops it."""
    try:
        server, thread = start_http_server(port, addr=bind)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise MetricsServerError(
            f"--metrics-port {port}: cannot listen on {bind} ({reason})"
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
