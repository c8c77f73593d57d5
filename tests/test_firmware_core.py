"""The firmware and diagnostics procedures of the core on a fake clock and a fake transport
(tests/toy_protocol.py): when they act, to the second, without sockets or waiting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import ocpp.v16

from simulator.core.charge_point import Charger, ChargerSpec
from simulator.core.evse import Evse
from simulator.core.firmware import FirmwareRequest, update_firmware
from simulator.core.link import BootState
from simulator.core.protocol import Payload
from simulator.core.transfer import FirmwareStatus, TransferFailed
from tests.engine import COMPACT
from tests.toy_protocol import FakeClock, FakeTransport, Toy

IMAGE = b"ChargeSim firmware 9.1.0\n\x00\x01"


class FakeTransfers:
    """Downloads that fail `failures` times, then give IMAGE; each attempt's clock time."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        self.clock = clock
        self.failures = failures
        self.attempts: list[float] = []

    async def download(self, url: str, *, ca_bundle: str = "") -> bytes:
        self.attempts.append(self.clock.time())
        if len(self.attempts) <= self.failures:
            raise TransferFailed("503")
        return IMAGE

    async def upload(self, *args: Any, **kwargs: Any) -> None:
        raise TransferFailed("not in this test")

    def journal(self, charge_point_id: str, start: Any, stop: Any) -> dict[str, Any]:
        return {}


def booted(clock: FakeClock, transfers: FakeTransfers, respond) -> tuple[Charger, FakeTransport]:
    charger = Charger(
        ChargerSpec("TOY-FW", firmware_version="1.0.0"),
        [Evse(connector_id=1, max_power_w=11_000)],
        messages=Toy(),
        clock=clock,
        transfers=transfers,
    )
    transport = FakeTransport(respond)
    charger.attach(transport)
    charger.boot = BootState.ACCEPTED
    return charger, transport


def firmware_reports(transport: FakeTransport) -> list[str]:
    return [payload["is"] for action, payload in transport.sent if action == "firmware"]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_download_waits_for_the_retrieve_date_and_retries_on_the_clock():
    clock = FakeClock()
    transfers = FakeTransfers(clock, failures=2)
    charger, transport = booted(clock, transfers, lambda action, payload: {})
    start = clock.time()
    request = FirmwareRequest("http://files/fw.bin", start + 3600, retries=3, retry_interval=60)
    job = asyncio.get_running_loop().create_task(update_firmware(charger, request))
    await settle()
    clock.advance(3599)
    await settle()
    assert transfers.attempts == [] and firmware_reports(transport) == []
    clock.advance(1)
    await settle()
    assert transfers.attempts == [start + 3600]  # at the retrieveDate, not before
    clock.advance(59)
    await settle()
    assert len(transfers.attempts) == 1  # the retry waits its retryInterval
    clock.advance(1)
    await settle()
    clock.advance(60)
    await settle()
    assert transfers.attempts == [start + 3600, start + 3660, start + 3720]
    await job
    await settle()
    assert firmware_reports(transport) == ["Downloading", "Downloaded", "Installing"]
    assert charger.spec.firmware_version == "9.1.0"
    assert transport.closed  # the reboot
    # Installed is said by the new firmware, once its BootNotification is accepted.
    after = await boot_again(charger)
    assert after.actions()[0] == "hello"
    assert firmware_reports(after) == ["Installed"]
    assert firmware_reports(await boot_again(charger)) == []  # said once


async def boot_again(charger: Charger) -> FakeTransport:
    """The connection after a reboot, through the boot: what the charger sent on it."""
    await settle()  # the reboot's close
    transport = FakeTransport(lambda action, payload: {"verdict": "welcome"})
    charger.attach(transport)
    charger.boot = BootState.NONE
    await charger.boot_sequence()
    await settle()
    return transport


async def test_a_session_begun_while_installing_ends_with_reason_reboot_before_the_reboot():
    clock = FakeClock()
    transfers = FakeTransfers(clock)
    charger: Charger

    def csms(action: str, payload: Payload) -> Payload:
        if action == "firmware" and payload["is"] == "Installing":
            # A driver starts a session while the charger installs.
            charger.plug_in(1, COMPACT)
            charger.start_transaction(1, "LATE")
        return {"session": 5} if action == "session-open" else {}

    charger, transport = booted(clock, transfers, csms)
    await update_firmware(charger, FirmwareRequest("http://files/fw.bin", clock.time()))
    events = [
        payload.get("is", action) if action == "firmware" else action
        for action, payload in transport.sent
        if action in ("firmware", "session-open", "session-close")
    ]
    assert events[-3:] == ["Installing", "session-open", "session-close"]
    close = next(payload for action, payload in transport.sent if action == "session-close")
    assert close["why"] == "reboot"
    await settle()  # the reboot closes the link in a task of its own
    assert not charger.transactions and charger.boot is BootState.NONE and transport.closed


def test_a_triggered_firmware_status_says_only_what_its_schema_allows():
    """TriggerMessage(FirmwareStatusNotification) during a signed update answers in the
    plain message's words: each of the whitepaper's own statuses has its nearest plain one
    (InstallRebooting is still Installing)."""
    schema = json.loads(
        (Path(ocpp.v16.__file__).parent / "schemas/FirmwareStatusNotification.json").read_text()
    )
    plain = set(schema["properties"]["status"]["enum"])
    charger, _transport = booted(FakeClock(), FakeTransfers(FakeClock()), lambda a, p: {})
    said = {}
    for status in FirmwareStatus:
        charger.firmware_status = status
        said[status] = charger.firmware_status_now()
    assert set(said.values()) <= plain
    assert said[FirmwareStatus.INSTALL_REBOOTING] is FirmwareStatus.INSTALLING
    assert said[FirmwareStatus.SIGNATURE_VERIFIED] is FirmwareStatus.DOWNLOADED
