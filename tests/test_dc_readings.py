"""A DC session's readings as the CSMS receives them: the pack voltage of the SoC sampled
with it, and the current that power at that voltage makes. Over real loopback WebSockets
against the built-in CSMS."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simulator.core.dc_voltage import pack_voltage
from tests.engine import COMPACT, connected, runtime_charger, wait_until

# A small pack on a fast charger: about 5 % SoC a second at 100 kW, so that a reading one sample
# late is clearly off the voltage curve (3 V per % near empty).
SMALL_PACK = replace(COMPACT, name="small pack", capacity_kwh=0.5, curve=((0, 100), (100, 100)))
SAMPLED = {
    "MeterValueSampleInterval": "1",
    "MeterValuesSampledData": "Power.Active.Import,Current.Import,Voltage,SoC",
}


def periodic_readings(csms, cp_id: str) -> list[dict[str, float]]:
    """The readings of every periodic MeterValues the CSMS received from `cp_id`."""
    readings = []
    for entry in csms.log:
        if entry.cp_id != cp_id or entry.action != "MeterValues":
            continue
        if entry.message_type != 2:
            continue
        for meter_value in entry.payload["meterValue"]:
            values = meter_value["sampledValue"]
            if values[0].get("context") == "Sample.Periodic":
                readings.append({sv["measurand"]: float(sv["value"]) for sv in values})
    return readings


async def test_a_dc_sample_reads_the_pack_voltage_of_its_own_soc(csms, ticking):
    """The voltage was the one of the SoC at the meter's previous visit (the operating
    point's, computed before the energy flowed), the SoC that of now: a CSMS plotting
    voltage over SoC saw the curve shifted by one sample, and the current, the power over
    that older, lower voltage, too high. After the car was full the voltage stayed at the
    value of the sample before."""
    charger = runtime_charger(
        "DC-V", csms.url, evses=1, power_type="DC", max_kw=150.0, config=SAMPLED
    )
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, SMALL_PACK, soc=1.0, target_soc=40.0)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        await wait_until(
            lambda: len([r for r in periodic_readings(csms, "DC-V") if r["SoC"] >= 40.0]) >= 1,
            timeout=15,
            message="the car full and sampled",
        )
    readings = periodic_readings(csms, "DC-V")
    charging = [r for r in readings if r["Power.Active.Import"] > 0]
    assert len(charging) >= 3
    for reading in readings:
        volts = pack_voltage(SMALL_PACK, reading["SoC"])
        # The SoC is read to 0.1 %: at most 0.05 % off, 0.2 V on the steepest part.
        assert reading["Voltage"] == pytest.approx(volts, abs=0.3), reading
    for reading in charging:
        amps = reading["Power.Active.Import"] / reading["Voltage"]
        # The voltage is read to 0.1 V, the current to 0.01 A.
        within = amps * 0.05 / reading["Voltage"] + 0.005
        assert reading["Current.Import"] == pytest.approx(amps, abs=within), reading


async def test_a_dc_transaction_begins_at_the_pack_voltage_not_at_zero(csms):
    """QA: Transaction.Begin, before the meter's first visit, read Voltage 0.0 on DC, while
    Current.Offered in the same sample was the offer over the pack's voltage."""
    config = {"StopTxnSampledData": "Voltage,SoC", "MeterValueSampleInterval": "0"}
    charger = runtime_charger(
        "DC-B", csms.url, evses=1, power_type="DC", max_kw=150.0, config=config
    )
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=30.0)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        mark = len(csms.log)
        charger.stop_transaction(1)
        stop = await csms.wait_for("DC-B", "StopTransaction", after=mark, timeout=4)
    begin = stop.payload["transactionData"][0]["sampledValue"]
    assert begin[0]["context"] == "Transaction.Begin"
    values = {sv["measurand"]: float(sv["value"]) for sv in begin}
    assert values["Voltage"] == pytest.approx(pack_voltage(COMPACT, values["SoC"]), abs=0.3)
    assert values["Voltage"] > 0
