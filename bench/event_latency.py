"""Dashboard event latency: a state change in the engine -> the message at a browser consumer.

    python bench/event_latency.py [--chargers 1000] [--samples 200] [--charging 0.5]
                                  [--redis redis://127.0.0.1:6379/9] [--rate 2]

What it does, in one process and one event loop (as `runsimulator` embedded does):

1. a throwaway SQLite database (temp dir through CHARGESIM_VAR_DIR) gets --chargers AC
   chargers with 2 EVSEs each, all pointed at the built-in CSMS on loopback;
2. a Simulator loads them, connects every one, ticks the meter engine, publishes
   snapshots through EventPublisher (--rate per charger per second, the default 2) and
   answers commands (start(channels=True)); it waits until every charger has booted;
3. a simulated driver starts a session on connector 1 of --charging of the chargers, so
   that many chargers change every tick (background traffic on the channel layer);
4. a fleet page (the real FleetConsumer through a WebsocketCommunicator, logged in) watches
   the first 50 chargers, like the first page of the fleet;
5. --samples times, at a random moment: inject a fault on connector 2 of a watched charger
   (or clear it), note the time, and wait for the first charger.state at the consumer that
   shows the new status.

Prints p50 / p95 / max in ms. The latency includes the throttle: a change waits for the
publisher's next flush (every 1/rate s), so about half a period on average. With --redis
the channel layer is channels-redis on that URL (use a database nobody else uses).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--charging", type=float, default=0.5, help="share with a session")
    parser.add_argument("--redis", help="channels-redis layer on this URL (default in-memory)")
    parser.add_argument("--rate", type=float, default=2.0, help="snapshots per charger per s")
    return parser.parse_args()


def setup_django(var_dir: str, redis: str | None) -> None:
    os.environ["CHARGESIM_VAR_DIR"] = var_dir
    os.environ.pop("DATABASE_URL", None)
    if redis:
        os.environ["REDIS_URL"] = redis
    else:
        os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import logging

    import django

    django.setup()
    logging.getLogger("simulator").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_fleet(count: int, csms_url: str) -> None:
    from chargers.models import Charger, Evse
    from locations.models import Location
    from vehicles.models import VehicleModel

    VehicleModel.objects.seed_catalogue()
    Location.objects.seed_defaults()
    locations = list(Location.objects.all())
    chargers = Charger.objects.bulk_create(
        Charger(
            charge_point_id=f"LAT-{n:05d}",
            location=locations[n % len(locations)],
            csms_url=csms_url,
        )
        for n in range(count)
    )
    Evse.objects.bulk_create(
        Evse(charger=c, connector_id=k, max_power_kw=22) for c in chargers for k in (1, 2)
    )


async def measure(args: argparse.Namespace) -> list[float]:
    from asgiref.sync import sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model

    from chargers.dashboard.routing import websocket_urlpatterns
    from simulator.core.charge_point import BootState
    from simulator.csms import CentralSystem
    from simulator.runtime.events import EventPublisher
    from simulator.runtime.lifecycle import Simulator

    csms = CentralSystem(keep_log=False)
    await csms.start(host="127.0.0.1", port=0)
    await sync_to_async(make_fleet)(args.chargers, f"{csms.url}/ocpp")
    service = Simulator(listener=EventPublisher(rate=args.rate))
    await service.start(channels=True)  # events and commands too; service.stop() ends them
    started = time.monotonic()
    chargers = sorted(service.store, key=lambda c: c.id)
    while not all(c.boot is BootState.ACCEPTED and c.online for c in chargers):
        if time.monotonic() - started > 120:
            raise SystemExit("the fleet did not boot within 120 s")
        await asyncio.sleep(0.2)
    print(f"{len(chargers)} chargers booted in {time.monotonic() - started:.1f} s", flush=True)

    random.seed(7)
    for charger in random.sample(chargers, int(len(chargers) * args.charging)):
        vehicle = charger.pick_vehicle()
        assert vehicle is not None  # the demo fleet's chargers all have vehicles
        charger.plug_in(1, vehicle, soc=20)
        await charger.present_id_tag(1, "BENCH")
    await asyncio.sleep(2)

    user = await sync_to_async(get_user_model().objects.create_superuser)("bench", "", "bench")
    page = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), "/ws/fleet/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    page.scope["user"] = user
    assert (await page.connect())[0]
    watched = chargers[:50]
    await page.send_json_to({"type": "watch", "chargers": [c.spec.db_id for c in watched]})

    latencies: list[float] = []
    try:
        for n in range(args.samples):
            await asyncio.sleep(random.uniform(0.05, 0.6))
            charger = watched[n % len(watched)]
            evse = charger.evse(2)
            faulted = str(evse.status) == "Faulted"
            want = "Available" if faulted else "Faulted"
            t0 = time.perf_counter()
            if faulted:
                charger.clear_fault(2)
            else:
                charger.inject_fault(2, "OtherError")
            while True:
                message = await page.receive_json_from(timeout=10)
                if (
                    message["type"] == "charger.state"
                    and message["charger"]["id"] == charger.spec.db_id
                    and message["charger"]["evses"][1]["status"] == want
                ):
                    latencies.append((time.perf_counter() - t0) * 1000)
                    break
    finally:
        await page.disconnect()
        await service.stop()
        await csms.stop()
    return latencies


def main() -> None:
    args = parse()
    with tempfile.TemporaryDirectory(prefix="chargesim-latency-") as var_dir:
        setup_django(var_dir, args.redis)
        latencies = asyncio.run(measure(args))
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]
    layer = f"channels-redis ({args.redis})" if args.redis else "in-memory"
    print(
        f"{args.chargers} chargers live ({args.charging:.0%} charging), {layer} layer, "
        f"{args.rate:g} snapshots/s per charger, {len(latencies)} samples: "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms"
    )


if __name__ == "__main__":
    main()
