"""The demo fleet and its simulated drivers, so that a newcomer sees chargers charging."""

from __future__ import annotations

import asyncio
import logging
import random

from django.db import transaction

from chargers.models import Charger as ChargerRow
from chargers.models import Evse as EvseRow
from locations.models import Location
from simulator.core.charge_point import ActionError, BootState, Charger
from simulator.csms.showcase import DRIVER_TAGS
from simulator.runtime.store import Store

log = logging.getLogger(__name__)

DEMO_PREFIX = "DEMO-"


def ensure_demo_fleet(count: int, csms_url: str) -> int:
    """Create the missing chargers of DEMO-0001..DEMO-NNNN; return how many were created.

    A demo charger that exists keeps its site, settings and register (a restart, or a
    location added since, must not move or reset it); only its CSMS URL follows this
    run's, so that it reaches the CSMS the demo was started with."""
    locations = list(Location.objects.all()) or [
        Location.objects.create(name="Demo Site", time_zone="UTC")
    ]
    wanted = {f"{DEMO_PREFIX}{n:04d}": n for n in range(1, count + 1)}
    existing = set(
        ChargerRow.objects.filter(charge_point_id__in=wanted).values_list(
            "charge_point_id", flat=True
        )
    )
    # A charger of the user's named as a demo one in other letter case (demo-0001): the
    # database refuses a second one, and a CSMS may take the two for one charger.
    demo_ids = {cp_id.lower(): cp_id for cp_id in wanted}
    for folded, cp_id in ChargerRow.objects.case_twins(wanted).items():
        if cp_id not in wanted:
            log.warning(
                "%s is not created: charger %s exists, whose id differs only in letter case",
                demo_ids[folded],
                cp_id,
            )
            existing.add(demo_ids[folded])
    created = 0
    with transaction.atomic():
        ChargerRow.objects.filter(charge_point_id__in=existing).exclude(csms_url=csms_url).update(
            csms_url=csms_url
        )
        for cp_id, n in wanted.items():
            if cp_id in existing:
                continue
            dc = n % 3 == 0
            charger = ChargerRow.objects.create(
                charge_point_id=cp_id,
                location=locations[(n - 1) % len(locations)],
                vendor="ChargeSim",
                model="Virtual DC 150" if dc else "Virtual AC 22",
                serial_number=f"CS-DEMO-{n:05d}",
                power_type="DC" if dc else "AC",
                max_power_kw=150.0 if dc else 22.0,
                phases=3,
                csms_url=csms_url,
                auto_connect=True,
                enabled=True,
                simulate_ev_on_remote_start=True,
            )
            created += 1
            EvseRow.objects.bulk_create(
                EvseRow(
                    charger=charger,
                    connector_id=c,
                    connector_type="CCS2" if dc else "Type2",
                    max_power_kw=150.0 if dc else 22.0,
                )
                for c in (1, 2)
            )
            charger.sync_number_of_connectors()  # seeded with 1 before the EVSEs existed
    return created


async def drive_demo(store: Store, share: float = 0.5) -> None:
    """Have a vehicle charging on `share` of the demo connectors: plug one in and start a
    session on enough free connectors, each once its charger has booted.

    The vehicles a restart plugged back in (parked cars resume after the power cycle)
    count towards the share: each restart of the demo added a new share on top of them."""
    chargers = [c for c in store if c.id.startswith(DEMO_PREFIX)]
    rng = random.Random(7)
    picked = _connectors_to_fill(chargers, share, rng)
    pending = [c for c in chargers if c.id in picked]
    for _ in range(120):
        still = []
        for charger in pending:
            if charger.boot is BootState.ACCEPTED and charger.online:
                await _start_sessions(charger, picked[charger.id], rng)
            else:
                still.append(charger)
        pending = still
        if not pending:
            return
        await asyncio.sleep(0.5)


def _connectors_to_fill(
    chargers: list[Charger], share: float, rng: random.Random
) -> dict[str, list[int]]:
    """Charger id -> the free connectors to start a session on, so that with the ones
    that have a vehicle already, `share` of all the demo connectors have one."""
    free = [(c.id, e.connector_id) for c in chargers for e in c.evses if e.battery is None]
    taken = sum(len(c.evses) for c in chargers) - len(free)
    wanted = round(share * (len(free) + taken)) - taken
    picked: dict[str, list[int]] = {}
    for cp_id, connector_id in sorted(rng.sample(free, max(0, min(wanted, len(free))))):
        picked.setdefault(cp_id, []).append(connector_id)
    return picked


async def _start_sessions(charger: Charger, connector_ids: list[int], rng: random.Random) -> None:
    for connector_id in connector_ids:
        if charger.evse(connector_id).battery is not None:  # plugged in meanwhile
            continue
        vehicle = charger.pick_vehicle()
        if vehicle is None:
            continue
        try:
            charger.plug_in(connector_id, vehicle, soc=round(rng.uniform(10, 60), 1))
            await charger.present_id_tag(connector_id, rng.choice(DRIVER_TAGS))
        except ActionError as exc:
            log.info("%s: demo session not started: %s", charger.id, exc)
