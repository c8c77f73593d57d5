"""The security whitepaper's configuration keys SecurityProfile and CpoName, read and
changed by the built-in CSMS over a real socket."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import Charger as ChargerRow
from simulator.contract import config_keys
from tests.cast import make_charger
from tests.engine import connected, runtime_charger, wait_until
from tests.workers import running


async def configuration(csms, cp_id, *keys):
    answer = await csms.call(cp_id, call.GetConfiguration(key=list(keys)))
    return {entry["key"]: entry for entry in answer.configuration_key}


async def change(csms, cp_id, key, value):
    answer = await csms.call(cp_id, call.ChangeConfiguration(key=key, value=value))
    return answer.status


async def test_the_keys_are_reported_and_cpo_name_is_writable(csms):
    charger = runtime_charger("SK-1", csms.url, evses=1, security_profile=1, authorization_key="k")
    async with connected(charger):
        keys = await configuration(csms, "SK-1", "SecurityProfile", "CpoName")
        assert keys["SecurityProfile"] == {
            "key": "SecurityProfile",
            "readonly": False,
            "value": "1",
        }
        assert keys["CpoName"]["value"] == ""
        assert await change(csms, "SK-1", "CpoName", "ChargeSim Operations") == "Accepted"
        keys = await configuration(csms, "SK-1", "CpoName")
    assert keys["CpoName"]["value"] == "ChargeSim Operations"
    # Every key is listed by a GetConfiguration without keys.
    listed = {entry["key"] for entry in charger.get_configuration(None)[0]}
    assert {"SecurityProfile", "CpoName"} <= listed


async def test_a_lower_profile_or_one_the_charger_cannot_use_is_rejected(csms):
    csms.passwords = {"SK-2": "0123456789abcdef"}
    charger = runtime_charger(
        "SK-2", csms.url, evses=1, security_profile=1, authorization_key="0123456789abcdef"
    )
    async with connected(charger):
        assert await change(csms, "SK-2", "SecurityProfile", "0") == "Rejected"
        assert await change(csms, "SK-2", "SecurityProfile", "2") == "Rejected"  # ws://, no TLS
        assert await change(csms, "SK-2", "SecurityProfile", "4") == "Rejected"
        assert await change(csms, "SK-2", "SecurityProfile", "1") == "Accepted"  # no change
        await wait_until(lambda: not charger.queue, message="the queue to drain")
    assert charger.spec.security_profile == 1
    assert csms.connects["SK-2"] == 1
    assert "SK-2" not in csms.security_events


async def test_an_empty_authorization_key_is_rejected_where_it_is_the_password(csms):
    """Accepted, it left a profile 1 or 2 charger with no Basic password: 401 on every
    retry, and the charger out of its CSMS's reach for good. Nor is it a key on a profile 0
    charger: the whitepaper's key is 16 to 20 bytes."""
    csms.passwords = {"SK-E": "0123456789abcdef"}
    charger = runtime_charger(
        "SK-E", csms.url, evses=1, security_profile=1, authorization_key="0123456789abcdef"
    )
    new_key = "fedcba9876543210" * 2
    async with connected(charger):
        assert await change(csms, "SK-E", "AuthorizationKey", "") == "Rejected"
        assert await change(csms, "SK-E", "AuthorizationKey", new_key) == "Accepted"
    assert charger.spec.authorization_key == new_key
    plain = runtime_charger("SK-E0", "ws://127.0.0.1:9/ocpp", evses=1)  # profile 0: no password
    assert plain.change_configuration("AuthorizationKey", "") == "Rejected"


# Security whitepaper (1.6, edition 3): the AuthorizationKey is 16 to 20 bytes, in hex.
OLD_KEY = "0123456789abcdef0123456789abcdef"
NOT_KEYS = [
    "",  # no bytes
    "a1" * 15,  # 15 bytes
    "a1" * 21,  # 21 bytes
    "a1" * 16 + "b",  # 33 digits: not a whole number of bytes
    "g1" * 16,  # 32 characters, not hexadecimal
    "a1" * 15 + "z1",
    "S3cret-Key-of-the-CSMS-0123456789",
    "٣" * 32,  # digits to Python's int(), not hexadecimal ones
]
NEW_KEYS = ["A1" * 16, "fe" * 20]  # 16 and 20 bytes, either case


async def test_an_authorization_key_must_be_16_to_20_bytes_in_hex(csms, caplog):
    """Anything else is Rejected and the key in use stays; no value, refused or taken,
    reaches a log line, an answer, the charger's frame log or the test's output."""
    caplog.set_level("DEBUG")
    csms.passwords = {"SK-HEX": OLD_KEY}
    charger = runtime_charger(
        "SK-HEX", csms.url, evses=1, security_profile=1, authorization_key=OLD_KEY
    )
    async with connected(charger):
        refused = [await change(csms, "SK-HEX", "AuthorizationKey", v) for v in NOT_KEYS]
        kept = charger.spec.authorization_key == OLD_KEY
        taken = []
        for value in NEW_KEYS:
            taken.append(await change(csms, "SK-HEX", "AuthorizationKey", value))
            taken.append(charger.spec.authorization_key == value)
        await wait_until(lambda: not charger.queue, message="the security events to go")
    assert refused == ["Rejected"] * len(NOT_KEYS)
    assert kept, "a refused key replaced the one in use"
    assert taken == ["Accepted", True, "Accepted", True]
    answers = [e.raw for e in csms.log if e.cp_id == "SK-HEX" and e.direction == "in"]
    seen = [caplog.text, *answers, repr(charger.security_log.last(100))]
    # A boolean, not `assert value not in text`: a failure would print the key.
    leaked = [i for i, v in enumerate(NOT_KEYS + NEW_KEYS) if v and any(v in t for t in seen)]
    assert leaked == [], "these keys (by index) reached a log line or an answer"


async def test_a_higher_profile_is_taken_on_a_new_connection(csms):
    charger = runtime_charger("SK-3", csms.url, evses=1, authorization_key="0123456789abcdef")
    async with connected(charger):
        assert await change(csms, "SK-3", "SecurityProfile", "1") == "Accepted"
        # From now on the CSMS wants HTTP Basic: the new connection must bring it.
        csms.passwords = {"SK-3": "0123456789abcdef"}
        await wait_until(lambda: csms.connects["SK-3"] == 2, message="the reconnect")
        await wait_until(
            lambda: "SK-3" in csms.security_events and charger.online, message="the event"
        )
    assert charger.spec.security_profile == 1
    assert list(csms.refusals) == []
    assert csms.counts["BootNotification"] == 1  # a reconnect, not a reboot
    [event] = csms.security_events["SK-3"]
    assert event["type"] == "ReconfigurationOfSecurityParameters"
    assert event["techInfo"] == "SecurityProfile"


async def test_a_new_authorization_key_is_used_on_a_new_connection_at_once(csms):
    """QA: after ChangeConfiguration(AuthorizationKey) Accepted, a profile 1 charger kept
    its connection, opened with the old password: the CSMS learnt whether the new one
    works only at the next outage. The whitepaper's password update (OCTT TC_073_CS): the
    charger disconnects and reconnects with the new password, without a new boot."""
    csms.passwords = {"SK-PW": OLD_KEY}
    charger = runtime_charger(
        "SK-PW", csms.url, evses=1, security_profile=1, authorization_key=OLD_KEY
    )
    new_key = NEW_KEYS[1]
    async with connected(charger):
        # The CSMS takes only the new password from now on, as a CSMS rotating it would.
        csms.passwords = {"SK-PW": new_key}
        assert await change(csms, "SK-PW", "AuthorizationKey", new_key) == "Accepted"
        await wait_until(lambda: csms.connects["SK-PW"] == 2, message="the reconnect")
        await wait_until(
            lambda: "SK-PW" in csms.security_events and charger.online, message="the event"
        )
        # The same key again (a CSMS that sends its configuration on every connection):
        # nothing changes, no reconnect, else it would never end.
        assert await change(csms, "SK-PW", "AuthorizationKey", new_key) == "Accepted"
        await wait_until(
            lambda: len(csms.security_events["SK-PW"]) == 2 and not charger.queue,
            message="the second event",
        )
        await asyncio.sleep(0.5)  # a reconnect would close the link once the event is out
        assert charger.online
    assert csms.connects["SK-PW"] == 2
    assert list(csms.refusals) == []  # the new connection brought the new password
    assert csms.counts["BootNotification"] == 1  # a reconnect, not a reboot
    assert csms.security_events["SK-PW"][0]["techInfo"] == "AuthorizationKey"
    # On profile 0 the key is no password: nothing to reconnect for.
    csms.passwords = {}
    plain = runtime_charger("SK-PW0", csms.url, evses=1)
    async with connected(plain):
        assert await change(csms, "SK-PW0", "AuthorizationKey", new_key) == "Accepted"
        await wait_until(lambda: "SK-PW0" in csms.security_events, message="the event")
        await wait_until(lambda: not plain.queue, message="the queue to drain")
    assert csms.connects["SK-PW0"] == 1


async def test_the_built_in_csms_checks_the_password_it_set_from_then_on(csms):
    """With the reconnect above, the built-in CSMS (`runcsms` with passwords) refused a
    charger whose password it had just changed itself: it went on checking the old one."""
    csms.passwords = {"SK-ROT": OLD_KEY}
    charger = runtime_charger(
        "SK-ROT", csms.url, evses=1, security_profile=1, authorization_key=OLD_KEY
    )
    async with connected(charger):
        assert await change(csms, "SK-ROT", "AuthorizationKey", "bad") == "Rejected"
        assert csms.passwords["SK-ROT"] == OLD_KEY  # refused: the old one stays
        assert await change(csms, "SK-ROT", "authorizationkey", NEW_KEYS[0]) == "Accepted"
        assert csms.passwords["SK-ROT"] == NEW_KEYS[0]
        await wait_until(lambda: csms.connects["SK-ROT"] == 2, message="the reconnect")
        await wait_until(lambda: charger.online, message="the charger back online")
    assert list(csms.refusals) == []


def test_security_profile_is_a_column_not_a_configuration_row():
    assert "SecurityProfile" not in config_keys.defaults(1)
    assert "CpoName" in config_keys.defaults(1)


@pytest.mark.django_db(transaction=True)
async def test_a_raised_profile_is_stored_on_the_charger_row(csms):
    await database_sync_to_async(make_charger)(
        "SK-DB", evses=1, csms_url=csms.url, authorization_key="0123456789abcdef"
    )
    async with running("SK-DB"):
        assert await change(csms, "SK-DB", "SecurityProfile", "1") == "Accepted"
        await wait_until(lambda: csms.connects["SK-DB"] == 2, message="the reconnect")
    row = await database_sync_to_async(ChargerRow.objects.get)(charge_point_id="SK-DB")
    assert row.security_profile == 1
    assert row.authorization_key == "0123456789abcdef"
    keys = await database_sync_to_async(
        lambda: set(row.configuration.values_list("key", flat=True))
    )()
    assert "SecurityProfile" not in keys
