"""The security whitepaper's configuration keys SecurityProfile and CpoName, read and
changed by the built-in CSMS over a real socket."""

from __future__ import annotations

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
    retry, and the charger out of its CSMS's reach for good."""
    csms.passwords = {"SK-E": "0123456789abcdef"}
    charger = runtime_charger(
        "SK-E", csms.url, evses=1, security_profile=1, authorization_key="0123456789abcdef"
    )
    async with connected(charger):
        assert await change(csms, "SK-E", "AuthorizationKey", "") == "Rejected"
        assert await change(csms, "SK-E", "AuthorizationKey", "fedcba9876543210") == "Accepted"
    assert charger.spec.authorization_key == "fedcba9876543210"
    plain = runtime_charger("SK-E0", "ws://127.0.0.1:9/ocpp", evses=1)  # profile 0: no password
    assert plain.change_configuration("AuthorizationKey", "") == "Accepted"


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
