"""Local Auth List Management (OCPP 1.6 sections 3.5, 5.10, 5.15): SendLocalList and
GetLocalListVersion over real loopback WebSockets against the built-in CSMS, the list's
place in authorization online and offline, and the list across a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from ocpp.v16.datatypes import IdTagInfo

from chargers.models import LocalAuthEntry, RuntimeState
from tests.cast import make_charger
from tests.engine import COMPACT, connected, runtime_charger, wait_until
from tests.workers import running


def sent(csms, cp_id, action, after=0):
    return [
        e.payload
        for e in csms.log[after:]
        if e.cp_id == cp_id and e.direction == "in" and e.message_type == 2 and e.action == action
    ]


async def test_a_full_list_replaces_the_list_and_sets_its_version(csms):
    charger = runtime_charger("LL-1", csms.url, evses=1)
    async with connected(charger):
        assert await csms.get_local_list_version("LL-1") == 0  # no list yet
        status = await csms.send_local_list("LL-1", 3, {"A": "Accepted", "B": "Blocked"})
        assert status == "Accepted"
        assert await csms.get_local_list_version("LL-1") == 3
        assert set(charger.local_list.entries) == {"A", "B"}
        assert await csms.send_local_list("LL-1", 4, {"C": "Accepted"}) == "Accepted"
        assert set(charger.local_list.entries) == {"C"}
        # A full update with no entries empties the list: its version reads 0 again.
        assert await csms.send_local_list("LL-1", 5, {}) == "Accepted"
        assert await csms.get_local_list_version("LL-1") == 0


async def test_a_differential_update_adds_updates_and_removes_and_must_be_newer(csms):
    charger = runtime_charger("LL-2", csms.url, evses=1)
    async with connected(charger):
        await csms.send_local_list("LL-2", 10, {"A": "Accepted", "B": "Accepted"})
        changes = {"A": "Blocked", "B": None, "C": "Accepted"}
        assert await csms.send_local_list("LL-2", 11, changes, "Differential") == "Accepted"
        entries = {tag: str(e.status) for tag, e in charger.local_list.entries.items()}
        assert entries == {"A": "Blocked", "C": "Accepted"}
        assert csms.local_lists["LL-2"].entries == entries
        # Not newer than the list: VersionMismatch, and nothing changes.
        for version in (11, 5):
            answer = await csms.send_local_list("LL-2", version, {"D": "Accepted"}, "Differential")
            assert answer == "VersionMismatch"
        assert "D" not in charger.local_list.entries
        assert await csms.get_local_list_version("LL-2") == 11


async def test_a_list_emptied_by_a_differential_takes_a_differential_newer_than_0(csms):
    """QA: a Differential update that removes every entry leaves an empty list, whose
    version GetLocalListVersion answers 0 (1.6 section 5.10). A CSMS that asked and then
    sent a Differential of version 1 was told VersionMismatch: the charger compared it
    with the version that had emptied the list."""
    charger = runtime_charger("LL-EMPTIED", csms.url, evses=1)
    async with connected(charger):
        assert await csms.send_local_list("LL-EMPTIED", 10, {"A": "Accepted"}) == "Accepted"
        emptied = await csms.send_local_list("LL-EMPTIED", 11, {"A": None}, "Differential")
        assert emptied == "Accepted"
        assert await csms.get_local_list_version("LL-EMPTIED") == 0
        added = await csms.send_local_list("LL-EMPTIED", 1, {"B": "Accepted"}, "Differential")
        assert added == "Accepted"
        assert await csms.get_local_list_version("LL-EMPTIED") == 1
        assert set(charger.local_list.entries) == {"B"}


async def test_an_update_the_charger_cannot_hold_fails_and_changes_nothing(csms):
    charger = runtime_charger(
        "LL-3",
        csms.url,
        evses=1,
        config={"SendLocalListMaxLength": "3", "LocalAuthListMaxLength": "4"},
    )
    async with connected(charger):
        assert await csms.send_local_list("LL-3", 1, {"A": "Accepted", "B": "Accepted"}) == (
            "Accepted"
        )
        too_many = {f"T{n}": "Accepted" for n in range(4)}  # SendLocalListMaxLength 3
        assert await csms.send_local_list("LL-3", 2, too_many) == "Failed"
        three = {"C": "Accepted", "D": "Accepted", "E": "Accepted"}  # 5 > 4 in all
        assert await csms.send_local_list("LL-3", 2, three, "Differential") == "Failed"
        assert set(charger.local_list.entries) == {"A", "B"}
        assert await csms.get_local_list_version("LL-3") == 1
        # A full update must say what each idTag is: no idTagInfo is not a full list.
        assert await csms.send_local_list("LL-3", 2, {"A": "Accepted", "Z": None}) == "Failed"
        # The same idTag twice in one update.
        raw = (
            '[2,"dup","SendLocalList",{"listVersion":2,"updateType":"Full",'
            '"localAuthorizationList":[{"idTag":"A","idTagInfo":{"status":"Accepted"}},'
            '{"idTag":"A","idTagInfo":{"status":"Blocked"}}]}]'
        )
        unique_id = await csms.send_raw("LL-3", raw)
        reply = await csms.wait_for("LL-3", direction="in", unique_id=unique_id)
        assert reply.payload == {"status": "Failed"}
        assert set(charger.local_list.entries) == {"A", "B"}


async def test_a_list_with_entries_under_a_version_below_one_fails(csms):
    """QA: listVersion -1 or 0 with entries was Accepted, and GetLocalListVersion then
    answered -1 ("not supported") or 0 ("empty list") for a list with entries (1.6
    section 5.10). An update that leaves the list empty may carry 0."""
    charger = runtime_charger("LL-V0", csms.url, evses=1)
    async with connected(charger):
        assert await csms.send_local_list("LL-V0", 2, {"A": "Accepted"}) == "Accepted"
        for version in (0, -1):
            assert await csms.send_local_list("LL-V0", version, {"B": "Accepted"}) == "Failed"
        assert set(charger.local_list.entries) == {"A"}
        assert await csms.get_local_list_version("LL-V0") == 2
        # -1 is no version of any list, not even an empty one.
        assert await csms.send_local_list("LL-V0", -1, {}) == "Failed"
        assert await csms.get_local_list_version("LL-V0") == 2
        # Version 0 for a Full update with no entries: the list is cleared.
        assert await csms.send_local_list("LL-V0", 0, {}) == "Accepted"
        assert charger.local_list.entries == {}
        assert await csms.get_local_list_version("LL-V0") == 0
        # From an empty list at version 0, a Differential must still be newer than 0.
        assert await csms.send_local_list("LL-V0", 0, {"C": "Accepted"}, "Differential") == (
            "VersionMismatch"
        )
        assert await csms.send_local_list("LL-V0", 1, {"C": "Accepted"}, "Differential") == (
            "Accepted"
        )
        assert await csms.get_local_list_version("LL-V0") == 1


async def test_without_the_profile_the_list_is_not_supported(csms):
    charger = runtime_charger(
        "LL-4", csms.url, evses=1, config={"SupportedFeatureProfiles": "Core,RemoteTrigger"}
    )
    async with connected(charger):
        assert await csms.send_local_list("LL-4", 1, {"A": "Accepted"}) == "NotSupported"
        assert await csms.get_local_list_version("LL-4") == -1


async def test_the_list_decides_before_the_cache_and_the_cache_keeps_none_of_its_tags(csms):
    csms.authorize["LISTED"] = "Accepted"
    charger = runtime_charger("LL-5", csms.url, evses=2)
    async with connected(charger):
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "LISTED") == "Accepted"  # now in the cache
        assert charger.auth_cache["LISTED"] == "Accepted"
        await csms.send_local_list("LL-5", 1, {"LISTED": "Blocked"})
        assert "LISTED" not in charger.auth_cache  # the list decides it now
        charger.stop_transaction(1)
    # Offline: the list's Blocked wins over what the cache had said.
    assert charger.auth_cache.offline_status("LISTED") == "Blocked"
    charger.plug_in(2, COMPACT)
    assert await charger.present_id_tag(2, "LISTED") == "Blocked"
    assert 2 not in charger.transactions


async def test_local_pre_authorize_starts_from_the_list_without_an_authorize(csms):
    charger = runtime_charger("LL-6", csms.url, evses=1, config={"LocalPreAuthorize": "true"})
    async with connected(charger):
        await csms.send_local_list("LL-6", 1, {"FAST": "Accepted"})
        mark = len(csms.log)
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "FAST") == "Accepted"
        await csms.wait_for("LL-6", "StartTransaction", after=mark)
        assert sent(csms, "LL-6", "Authorize", mark) == []


@pytest.mark.parametrize(
    ("config", "tag", "expected"),
    [
        ({}, "GOOD", "Accepted"),  # LocalAuthorizeOffline defaults to true
        ({"LocalAuthorizeOffline": "false"}, "GOOD", "Invalid"),
        # QA: LocalPreAuthorize is the online rule (start without waiting for Authorize);
        # offline, LocalAuthorizeOffline decides, yet a pre-authorizing charger started.
        ({"LocalAuthorizeOffline": "false", "LocalPreAuthorize": "true"}, "GOOD", "Invalid"),
        ({}, "BAD", "Blocked"),
        ({}, "OLD", "Expired"),  # Accepted, but its expiryDate is past
        ({}, "UNKNOWN", "Invalid"),
        ({"AllowOfflineTxForUnknownId": "true"}, "UNKNOWN", "Accepted"),
        # QA: a listed idTag the list may not authorize offline is as unknown as any: it
        # was refused while an idTag the charger had never seen was let in.
        (
            {"LocalAuthorizeOffline": "false", "AllowOfflineTxForUnknownId": "true"},
            "GOOD",
            "Accepted",
        ),
        (
            {"LocalAuthorizeOffline": "false", "AllowOfflineTxForUnknownId": "true"},
            "BAD",
            "Blocked",
        ),
        # With the list off, its idTags are unknown (and the cache never kept them).
        ({"LocalAuthListEnabled": "false"}, "GOOD", "Invalid"),
    ],
)
async def test_offline_authorization_follows_the_list_and_the_keys(csms, config, tag, expected):
    charger = runtime_charger("LL-7", csms.url, evses=1, config=config)
    past = datetime.now(UTC) - timedelta(days=1)
    async with connected(charger):
        entries = {
            "GOOD": "Accepted",
            "BAD": "Blocked",
            "OLD": IdTagInfo(status="Accepted", expiry_date=past.isoformat()),
        }
        assert await csms.send_local_list("LL-7", 1, entries) == "Accepted"
    assert not charger.online
    charger.plug_in(1, COMPACT)
    assert await charger.present_id_tag(1, tag) == expected
    assert (1 in charger.transactions) is (expected == "Accepted")


async def test_a_cached_idtag_expires_at_the_expiry_date_the_csms_gave_it(csms):
    # 1.6 section 3.5.2: when an Authorization Cache entry's validity expires, it is
    # changed to Expired in the cache: offline, it no longer starts a transaction.
    until = datetime.now(UTC) + timedelta(seconds=1)
    csms.authorize["SOON"] = IdTagInfo(status="Accepted", expiry_date=until.isoformat())
    charger = runtime_charger("LL-EXP", csms.url, evses=1)
    async with connected(charger):
        assert await charger.authorize("SOON") == "Accepted"  # now in the cache
    assert not charger.online
    await wait_until(lambda: charger.wall_time() > until.timestamp(), message="the expiry")
    assert charger.auth_cache.offline_status("SOON") == "Expired"
    charger.plug_in(1, COMPACT)
    assert await charger.present_id_tag(1, "SOON") == "Expired"
    assert 1 not in charger.transactions


async def test_the_answer_to_a_stop_transaction_updates_the_cache(csms):
    """QA: 1.6 section 4.10: the idTagInfo of StopTransaction.conf updates the cache entry
    (of an idTag not on the list), as Authorize.conf's does. It was not read: a tag the
    CSMS said was Blocked as it stopped still started a transaction offline."""
    csms.authorize["LATER-BAD"] = "Accepted"
    charger = runtime_charger("LL-STOP", csms.url, evses=1)
    async with connected(charger):
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "LATER-BAD") == "Accepted"
        assert charger.auth_cache["LATER-BAD"] == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="started")
        csms.authorize["LATER-BAD"] = IdTagInfo(status="Blocked", parent_id_tag="GROUP")
        assert await charger.present_id_tag(1, "LATER-BAD") == "Stopped"
        stop = await csms.wait_for("LL-STOP", "StopTransaction", direction="out")
        assert stop.payload["idTagInfo"]["status"] == "Blocked"
        await wait_until(lambda: not charger.queue, message="the stop answered")
    assert charger.auth_cache["LATER-BAD"] == "Blocked"
    assert charger.auth_cache.parent_of("LATER-BAD") == "GROUP"
    charger.unplug(1)
    charger.plug_in(1, COMPACT)
    assert await charger.present_id_tag(1, "LATER-BAD") == "Blocked"
    assert 1 not in charger.transactions


async def test_the_list_and_the_cache_know_an_id_tag_in_any_case(csms):
    """QA: OCPP 1.6 makes an IdToken a CiString20, "a case insensitive string" (section
    7.28), and readers give a card's hex digits in either case. The list and the cache
    compared idTags exactly: offline, a card listed or cached in the other case was
    unknown (Invalid), and one update could list it twice."""
    csms.authorize["CachedTag"] = "Accepted"
    charger = runtime_charger("LL-CASE", csms.url, evses=2)
    async with connected(charger):
        assert await charger.authorize("CachedTag") == "Accepted"
        listed = {"04A1B2C3": "Accepted", "GONE": "Accepted"}
        assert await csms.send_local_list("LL-CASE", 1, listed) == "Accepted"
        twice = {"ab": "Accepted", "AB": "Blocked"}
        assert await csms.send_local_list("LL-CASE", 2, twice) == "Failed"
        assert await csms.send_local_list("LL-CASE", 2, {"gone": None}, "Differential") == (
            "Accepted"
        )
        assert set(charger.local_list.entries) == {"04A1B2C3"}
    assert not charger.online
    charger.plug_in(1, COMPACT)
    charger.plug_in(2, COMPACT)
    assert await charger.present_id_tag(1, "04a1b2c3") == "Accepted"
    assert await charger.present_id_tag(2, "cachedtag") == "Accepted"


@pytest.mark.django_db(transaction=True)
async def test_the_list_and_its_version_survive_a_restart(csms):
    await database_sync_to_async(make_charger)("LL-DB", evses=1, csms_url=csms.url)
    async with running("LL-DB"):
        entries = {f"T{n:03d}": "Accepted" for n in range(300)}
        entries["PARENTED"] = IdTagInfo(status="Accepted", parent_id_tag="GROUP")
        assert await csms.send_local_list("LL-DB", 7, entries) == "Accepted"
        changes = {"T000": None, "T001": "Blocked", "NEW": "Accepted"}
        assert await csms.send_local_list("LL-DB", 8, changes, "Differential") == "Accepted"

    def stored():
        rows = LocalAuthEntry.objects.filter(charger__charge_point_id="LL-DB")
        version = RuntimeState.objects.get(charger__charge_point_id="LL-DB").local_list_version
        return version, {r.id_tag: (r.status, r.parent_id_tag) for r in rows}

    version, rows = await database_sync_to_async(stored)()
    assert version == 8
    assert len(rows) == 301  # 300 T + PARENTED, less T000, plus NEW
    assert rows["T001"] == ("Blocked", "") and rows["PARENTED"] == ("Accepted", "GROUP")
    assert "T000" not in rows and rows["NEW"] == ("Accepted", "")

    async with running("LL-DB") as charger:
        assert await csms.get_local_list_version("LL-DB") == 8
        assert charger.auth_cache.parent_of("PARENTED") == "GROUP"
        assert await csms.send_local_list("LL-DB", 8, {"X": "Accepted"}, "Differential") == (
            "VersionMismatch"
        )
        assert await csms.send_local_list("LL-DB", 9, {"FRESH": "Accepted"}) == "Accepted"
    version, rows = await database_sync_to_async(stored)()
    assert (version, rows) == (9, {"FRESH": ("Accepted", "")})
