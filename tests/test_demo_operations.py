"""The built-in CSMS's demo operations (`simulator.csms.showcase`) over real sockets."""

from __future__ import annotations

import contextlib

from simulator.csms.files import FileServer
from simulator.csms.showcase import FIRMWARE_VERSION, showcase
from tests.engine import connected, runtime_charger


async def calls_sent(csms, firmware_versions: list[str], prefix: str) -> set[tuple[str, str]]:
    """Run the showcase on chargers running these firmware versions: the CALLs it sent."""
    files = FileServer()
    files.start()
    chargers = [
        runtime_charger(f"{prefix}-{n}", csms.url, evses=1, firmware_version=version)
        for n, version in enumerate(firmware_versions)
    ]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for charger in chargers:
                await stack.enter_async_context(connected(charger))
            await showcase(csms, files, [c.id for c in chargers], patience=10)
    finally:
        files.stop()
    return {
        (m.cp_id, m.action or "")
        for m in csms.log
        if m.direction == "out" and m.message_type == 2 and m.cp_id.startswith(prefix)
    }


async def test_the_demo_updates_the_firmware_only_of_a_charger_not_running_it_yet(csms):
    # A restart of `runsimulator --demo` used to reinstall 1.1.0 on the second charger (and
    # reboot it) every time: "FirmwareUpdated: 1.1.0 -> 1.1.0".
    first = await calls_sent(csms, ["1.0.0", "1.0.0"], "SHOW-A")
    assert ("SHOW-A-1", "UpdateFirmware") in first
    again = await calls_sent(csms, ["1.0.0", FIRMWARE_VERSION], "SHOW-B")
    assert ("SHOW-B-1", "UpdateFirmware") not in again
    assert ("SHOW-B-1", "SendLocalList") in again  # the other operations still run
