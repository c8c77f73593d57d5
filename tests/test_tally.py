"""The fleet's counts (fleet and location pages, terminal status line) are counted again only
after something they count changed, and every kind of change shows in the next count."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from channels.layers import InMemoryChannelLayer

from simulator import contract
from simulator.contract.statuses import ConnectorStatus as S
from simulator.core.link import BootState
from simulator.runtime import commands
from simulator.runtime.commands import CommandServer
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.load_management import Site
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, connected, runtime_charger, wait_until

SITE = 3


@pytest.fixture
def service() -> Simulator:
    """A simulator (not started) with two chargers at one site and one at none."""
    service = Simulator(RunOptions())
    for n, location_id in enumerate((SITE, SITE, None)):
        charger = runtime_charger(f"CP-{n}", "ws://127.0.0.1:1/ocpp", location_id=location_id)
        service.store.add(charger)
    return service


class Unused:
    """A transport nothing is sent over (the charger only holds it here)."""

    def send_call(self, action, payload, done):
        raise AssertionError("nothing is sent")

    async def call(self, action, payload):
        raise AssertionError("nothing is sent")

    async def close(self):
        pass

    def abort(self):
        pass


def summaries(service: Simulator):
    return CommandServer(service, layer=None).summaries()


async def received(layer: InMemoryChannelLayer, channel: str) -> dict:
    return await asyncio.wait_for(layer.receive(channel), 5)


def recounted(service: Simulator) -> bool:
    """Whether the next count walks the fleet (and it is then taken)."""
    before = service.tally.passes
    service.tally.counts()
    return service.tally.passes == before + 1


def test_without_a_change_the_counts_are_not_taken_again(service):
    first = summaries(service)
    status = service.status()
    assert service.tally.passes == 1  # the status line and the summaries share the pass
    assert summaries(service) == first and summaries(service)[0] is first[0]
    assert service.status().links == status.links
    assert service.tally.passes == 1
    assert first[0]["chargers"] == 3 and first[1][SITE]["chargers"] == 2


def test_a_status_change_shows_in_the_next_counts(service):
    summaries(service)
    charger = service.store.get("CP-0")
    charger.set_status(charger.evse(1), S.FAULTED, "GroundFailure")
    fleet, locations = summaries(service)
    assert fleet["statuses"] == {"Available": 5, "Faulted": 1}
    assert locations[SITE]["statuses"] == {"Available": 3, "Faulted": 1}
    # A report of the status it already has changes nothing and counts nothing again.
    charger.set_status(charger.evse(1), S.FAULTED, "GroundFailure")
    assert not recounted(service)


def test_link_changes_show_in_the_next_counts(service):
    service.status()
    charger = service.store.get("CP-1")
    charger.connecting()
    assert summaries(service)[1][SITE]["links"] == {"offline": 1, "connecting": 1}
    charger.detach("refused")
    assert service.status().failing == 1
    assert summaries(service)[0]["links"] == {"offline": 3}
    charger.power_cycle()
    assert recounted(service)


def test_going_online_shows_in_the_next_counts(service):
    charger = service.store.get("CP-0")
    summaries(service)
    charger.attach(Unused())
    assert summaries(service)[1][SITE]["links"] == {"offline": 1, "online": 1}
    charger.detach()
    assert summaries(service)[1][SITE]["links"] == {"offline": 2}


async def test_a_boot_accepted_after_pending_shows_in_the_next_counts(csms):
    csms.boot_status, csms.boot_interval = "Pending", 1
    service = Simulator(RunOptions())
    charger = runtime_charger("CP-BOOT", csms.url, location_id=SITE)
    service.store.add(charger)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState.PENDING, message="boot pending")
        assert summaries(service)[0]["links"] == {"online": 1}
        assert service.status().accepted == 0
        csms.boot_status = "Accepted"
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot accepted")
        assert service.status().accepted == 1
    assert service.status().accepted == 0
    assert summaries(service)[0]["links"] == {"offline": 1}


def test_power_the_meter_engine_meters_shows_in_the_next_counts():
    service = Simulator(RunOptions())
    charger = runtime_charger(
        "CP-DC", "ws://127.0.0.1:1/ocpp", evses=1, power_type="DC", max_kw=150
    )
    service.store.add(charger)
    charger.plug_in(1, COMPACT, soc=99.9)  # full within a minute: the power then falls
    charger.start_transaction(1, "TAG")
    assert service.status().charging == 1
    assert summaries(service)[0]["power_w"] == 0.0  # nothing metered yet
    engine = MeterEngine(service.store, tick_seconds=1.0, sites=service.sites)
    now = time.monotonic()
    engine.tick(now)  # the first visit shows the power offered
    shown = charger.evse(1).power_w
    assert shown > 0
    assert summaries(service)[0]["power_w"] == round(shown, 1)
    engine.tick(now + 61)  # an interval in which the battery filled: a lower average
    metered = charger.evse(1).power_w
    assert 0 < metered < shown and charger.evse(1).status is S.CHARGING
    assert summaries(service)[0]["power_w"] == round(metered, 1)
    charger.evse(1).stop_flow()
    assert summaries(service)[0]["power_w"] == 0.0
    assert service.status().charging == 1


def test_chargers_added_to_and_removed_from_the_store_show_in_the_next_counts(service):
    assert summaries(service)[0]["chargers"] == 3
    service.store.add(runtime_charger("CP-9", "ws://127.0.0.1:1/ocpp", location_id=SITE))
    fleet, locations = summaries(service)
    assert (fleet["chargers"], locations[SITE]["chargers"]) == (4, 3)
    service.store.remove("CP-0")
    service.store.remove("CP-9")
    fleet, locations = summaries(service)
    assert (fleet["chargers"], locations[SITE]["chargers"]) == (2, 1)
    service.store.remove("CP-0")  # not there: nothing changed
    assert not recounted(service)


def test_a_charger_moved_to_another_location_shows_in_the_next_counts(service):
    assert set(summaries(service)[1]) == {SITE}
    charger = service.store.get("CP-2")
    charger.respec(replace(charger.spec, location_id=SITE + 1), {})
    locations = summaries(service)[1]
    assert (locations[SITE]["chargers"], locations[SITE + 1]["chargers"]) == (2, 1)


async def test_connection_tasks_started_and_stopped_show_in_the_status_line(service):
    charger = service.store.get("CP-0")
    assert (service.status().wanted, service.status().connecting) == (0, 0)
    service.connect(charger)
    assert (service.status().wanted, service.status().connecting) == (1, 1)
    await service.disconnect(charger)
    assert (service.status().wanted, service.status().connecting) == (0, 0)


def test_a_site_holding_back_shows_in_the_next_counts(service):
    chargers = [service.store.get("CP-0"), service.store.get("CP-1")]
    for charger in chargers:
        charger.plug_in(1, COMPACT, soc=20)
        charger.start_transaction(1, "T-" + charger.id)
    assert summaries(service)[1][SITE]["held_back"] == 0
    service.sites.use({SITE: Site(1_000.0, True)})
    service.sites.apply(service.store)
    assert summaries(service)[1][SITE]["held_back"] == 2
    service.sites.apply(service.store)  # the same on the next tick: nothing to count again
    assert not recounted(service)
    service.sites.use({})
    service.sites.apply(service.store)
    assert summaries(service)[1][SITE]["held_back"] == 0


def test_a_sites_settings_edited_show_in_the_next_counts(service):
    """A grid limit or load management changed in the admin reaches the location pages
    with the next summary, though no charger changed: they are counted as a change."""
    site = summaries(service)[1][SITE]
    assert (site["grid_limit_w"], site["load_management"]) == (None, False)
    service.sites.use({SITE: Site(50_000.0, False)})
    site = summaries(service)[1][SITE]
    assert (site["grid_limit_w"], site["load_management"]) == (50_000.0, False)
    service.sites.use({SITE: Site(50_000.0, False)})  # read again, unchanged
    assert not recounted(service)
    service.sites.use({SITE: Site(40_000.0, True)})
    site = summaries(service)[1][SITE]
    assert (site["grid_limit_w"], site["load_management"]) == (40_000.0, True)
    assert service.sites.grid_limits_w == {SITE: 40_000.0}
    service.sites.use({SITE: Site(None, True)})  # on, without a limit: nothing to manage
    assert summaries(service)[1][SITE]["grid_limit_w"] is None
    assert service.sites.grid_limits_w == {}


async def test_unchanged_summaries_are_not_published_again_until_the_keep_alive(
    service, monkeypatch
):
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(contract.FLEET_SUMMARY_GROUP, channel)
    server = CommandServer(service, layer)
    await server.publish_summaries()
    assert (await received(layer, channel))["statuses"] == {"Available": 6}
    await server.publish_summaries()
    assert service.tally.passes == 1
    assert layer.channels.get(channel) is None or layer.channels[channel].empty()
    charger = service.store.get("CP-2")
    charger.set_status(charger.evse(2), S.UNAVAILABLE)
    await server.publish_summaries()
    assert (await received(layer, channel))["statuses"] == {"Available": 5, "Unavailable": 1}
    monkeypatch.setattr(commands, "SUMMARY_KEEPALIVE_SECONDS", 0.0)  # always due: sent again
    await server.publish_summaries()
    assert (await received(layer, channel))["statuses"] == {"Available": 5, "Unavailable": 1}
    assert service.tally.passes == 2


async def test_summaries_the_layer_refused_are_sent_again_at_the_next_round(service):
    """A send the channel layer refused counted as sent: the next round skipped it, so the
    worker logged "publishing summaries works again" two seconds into a Redis outage (with
    Redis still away), and once Redis was back the pages waited for the keep-alive."""
    from channels_redis.core import RedisChannelLayer

    from simulator.contract.failures import layer_errors
    from tests.process import free_port

    away = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])  # nobody listens
    server = CommandServer(service, away)
    for _ in range(2):  # each round tries again, and fails again
        with pytest.raises(layer_errors()):
            await server.publish_summaries()
    # Redis is back (the worker's layer answers again): the counts go out at once.
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(contract.FLEET_SUMMARY_GROUP, channel)
    server.layer = layer
    await server.publish_summaries()
    assert (await received(layer, channel))["statuses"] == {"Available": 6}


async def test_an_idle_connected_fleet_moves_nothing_the_counts_read(csms):
    # Heartbeats and the meter engine's visits of idle chargers change no count: were one of
    # them to bump the revision, an idle fleet would be counted again every second.
    csms.boot_interval = 1  # a heartbeat a second
    service = Simulator(RunOptions())
    chargers = [runtime_charger(f"CP-IDLE-{n}", csms.url, location_id=SITE) for n in range(2)]
    for charger in chargers:
        service.store.add(charger)
    engine = MeterEngine(service.store, tick_seconds=0.05, sites=service.sites)
    task = asyncio.get_running_loop().create_task(engine.run())
    try:
        async with connected(chargers[0]), connected(chargers[1]):
            service.status()
            passes, mark = service.tally.passes, len(csms.log)

            def heartbeats(cp_id: str) -> int:
                return sum(
                    e.cp_id == cp_id and e.action == "Heartbeat" and e.message_type == 3
                    for e in csms.log[mark:]
                )

            await wait_until(
                lambda: all(heartbeats(c.id) >= 2 for c in chargers), message="two heartbeats each"
            )
            assert service.status().accepted == 2
            assert summaries(service)[0]["links"] == {"online": 2}
            assert service.tally.passes == passes
    finally:
        task.cancel()
