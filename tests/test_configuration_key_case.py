"""Configuration key names are CiString50 in OCPP 1.6: compared without regard to case. A
CSMS that writes "heartbeatinterval" means HeartbeatInterval, and the charger handles,
stores and reports the key in its own spelling."""

from __future__ import annotations

from ocpp.v16 import call

from simulator.core.charge_point import Charger, Listener
from tests.engine import connected, runtime_charger, wait_until

HEX_KEY = "00112233445566778899aabbccddeeff"  # 16 bytes in hex: a key the charger takes


class ConfigChanges(Listener):
    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def on_config(self, charger: Charger, key: str, value: str) -> None:
        self.changes.append((key, value))


async def test_a_standard_key_in_another_case_is_changed_and_reported_as_the_charger_spells_it(
    csms,
):
    listener = ConfigChanges()
    charger = runtime_charger("CK-STD", csms.url, evses=1, listener=listener)
    async with connected(charger):
        changed = await csms.call(
            "CK-STD", call.ChangeConfiguration(key="heartbeatinterval", value="60")
        )
        read = await csms.call(
            "CK-STD",
            call.GetConfiguration(
                key=["HEARTBEATINTERVAL", "HeartbeatInterval", "noSuchKey", "NOSUCHKEY"]
            ),
        )
    assert changed.status == "Accepted"
    assert charger.config["HeartbeatInterval"] == "60"
    assert "heartbeatinterval" not in charger.config
    # The boot's interval, then the CSMS's change, both under the charger's spelling.
    assert listener.changes[-1] == ("HeartbeatInterval", "60")
    assert {key for key, _ in listener.changes} == {"HeartbeatInterval"}
    assert read.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}
    ]
    assert read.unknown_key == ["noSuchKey"]  # as the CSMS wrote it, once


async def test_an_operators_own_key_in_another_case_is_changed_in_its_own_spelling(csms):
    listener = ConfigChanges()
    charger = runtime_charger(
        "CK-OWN", csms.url, evses=1, listener=listener, config={"VendorMode": "eco"}
    )
    async with connected(charger):
        changed = await csms.call(
            "CK-OWN", call.ChangeConfiguration(key="vendormode", value="boost")
        )
        read = await csms.call("CK-OWN", call.GetConfiguration(key=["VENDORMODE"]))
    assert changed.status == "Accepted"
    assert charger.config["VendorMode"] == "boost"
    assert "vendormode" not in charger.config
    assert listener.changes[-1] == ("VendorMode", "boost")
    assert {key for key, _ in listener.changes} == {"HeartbeatInterval", "VendorMode"}
    assert read.configuration_key == [{"key": "VendorMode", "readonly": False, "value": "boost"}]
    assert not read.unknown_key


async def test_the_authorization_key_in_another_case_is_set_and_stays_write_only(csms):
    listener = ConfigChanges()
    charger = runtime_charger("CK-AK", csms.url, evses=1, listener=listener)
    async with connected(charger):
        changed = await csms.call(
            "CK-AK", call.ChangeConfiguration(key="authorizationKEY", value=HEX_KEY)
        )
        await wait_until(lambda: "CK-AK" in csms.security_events, message="the security event")
        read = await csms.call("CK-AK", call.GetConfiguration(key=["AUTHORIZATIONKEY"]))
    assert changed.status == "Accepted"
    assert charger.spec.authorization_key == HEX_KEY
    assert all(HEX_KEY not in value for value in charger.config.values())
    assert listener.changes[-1] == ("AuthorizationKey", HEX_KEY)
    assert {key for key, _ in listener.changes} == {"HeartbeatInterval", "AuthorizationKey"}
    [event] = csms.security_events["CK-AK"]
    assert event["type"] == "ReconfigurationOfSecurityParameters"
    assert event["techInfo"] == "AuthorizationKey"
    assert read.configuration_key == [{"key": "AuthorizationKey", "readonly": False}]
    assert all(HEX_KEY not in entry.raw for entry in csms.log if entry.direction == "in")


async def test_a_key_named_in_two_cases_counts_once_against_the_maximum(csms):
    limit = {"GetConfigurationMaxKeys": "2"}
    charger = runtime_charger("CK-MAX", csms.url, evses=1, config=limit)
    keys = ["HeartbeatInterval", "heartbeatinterval", "ConnectionTimeOut"]
    async with connected(charger):
        read = await csms.call("CK-MAX", call.GetConfiguration(key=keys))
    assert [item["key"] for item in read.configuration_key] == [
        "HeartbeatInterval",
        "ConnectionTimeOut",
    ]
