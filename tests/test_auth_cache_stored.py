"""The Authorization Cache across restarts of the simulator (OCPP 1.6 section 3.5.2: its
values SHOULD be persisted across reboots and power outages), its bound, and the cache
update by a StopTransaction answered only after a restart. Real workers against the
built-in CSMS over loopback WebSockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call
from ocpp.v16.datatypes import IdTagInfo

from chargers.models import AuthCacheEntry, OutboxMessage
from tests.cast import make_charger
from tests.engine import COMPACT, wait_until
from tests.workers import running

pytestmark = pytest.mark.django_db(transaction=True)


def _stored(cp_id: str) -> list[tuple[str, str, str]]:
    rows = AuthCacheEntry.objects.filter(charger__charge_point_id=cp_id).order_by("id")
    return [(r.id_tag, r.status, r.parent_id_tag) for r in rows]


stored = database_sync_to_async(_stored)


async def test_the_cache_survives_a_restart_and_clear_cache_empties_it(csms):
    """It was kept in memory only: after a restart of the simulator a blocked card was
    unknown again, so that offline with AllowOfflineTxForUnknownId it started."""
    await database_sync_to_async(make_charger)("AC-KEEP", evses=1, csms_url=csms.url)
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    csms.authorize["KEEP"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET", expiry_date=until)
    csms.authorize["BAD"] = "Blocked"
    async with running("AC-KEEP") as charger:
        assert await charger.authorize("KEEP") == "Accepted"
        assert await charger.authorize("BAD") == "Blocked"
    assert await stored("AC-KEEP") == [("KEEP", "Accepted", "FLEET"), ("BAD", "Blocked", "")]

    async with running("AC-KEEP") as charger:
        entry = charger.auth_cache.local_entry("keep")  # a CiString: any case
        assert entry is not None
        assert (entry.status, entry.parent_id_tag, entry.expiry) == ("Accepted", "FLEET", until)
        charger.config["AllowOfflineTxForUnknownId"] = "true"
        assert charger.auth_cache.offline_status("BAD") == "Blocked"
        assert charger.auth_cache.offline_status("NEVER-SEEN") == "Accepted"
        assert await csms.call("AC-KEEP", call.ClearCache()) is not None
        assert not charger.auth_cache
    assert await stored("AC-KEEP") == []
    async with running("AC-KEEP") as charger:
        assert not charger.auth_cache


async def test_a_full_cache_lets_the_idtag_remembered_longest_ago_go(csms):
    await database_sync_to_async(make_charger)("AC-FULL", evses=1, csms_url=csms.url)
    async with running("AC-FULL") as charger:
        charger.auth_cache.limit = 3
        for id_tag in ("A", "B", "C", "D"):
            assert await charger.authorize(id_tag) == "Accepted"
        assert list(charger.auth_cache) == ["B", "C", "D"]
        assert await charger.authorize("b") == "Accepted"  # remembered again: the newest
        assert list(charger.auth_cache) == ["C", "D", "B"]
    assert [row[0] for row in await stored("AC-FULL")] == ["C", "D", "B"]
    async with running("AC-FULL") as charger:
        assert list(charger.auth_cache) == ["C", "D", "B"]


async def test_a_stop_transaction_answered_after_a_restart_updates_the_cache(csms):
    """1.6 section 4.10: StopTransaction.conf's idTagInfo updates the cache. A stop stored
    unanswered and sent again after a restart had no handler for its answer: the card the
    CSMS had blocked meanwhile stayed Accepted in the cache."""
    await database_sync_to_async(make_charger)("AC-STOP", evses=1, csms_url=csms.url)
    csms.authorize["LATER-BAD"] = "Accepted"
    async with running("AC-STOP") as charger:
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "LATER-BAD") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="started")
        await wait_until(lambda: not charger.queue, message="Charging answered")
        csms.respond = False  # the stop goes unanswered
        assert await charger.present_id_tag(1, "LATER-BAD") == "Stopped"
        await csms.wait_for("AC-STOP", "StopTransaction")
    assert await database_sync_to_async(
        OutboxMessage.objects.filter(
            charger__charge_point_id="AC-STOP", action="StopTransaction"
        ).exists
    )()
    csms.respond = True
    csms.authorize["LATER-BAD"] = "Blocked"
    async with running("AC-STOP") as charger:
        await wait_until(lambda: not charger.queue, message="the restored stop answered")
        assert charger.auth_cache["LATER-BAD"] == "Blocked"
