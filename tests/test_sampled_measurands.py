"""The measurand lists a CSMS configures (MeterValuesSampledData, StopTxnSampledData,
MeterValuesAlignedData) as the charger keeps and samples them. Over real loopback
WebSockets against the built-in CSMS."""

from __future__ import annotations

from ocpp.v16 import call

from tests.engine import COMPACT, connected, runtime_charger, wait_until


async def test_a_measurand_named_twice_is_kept_and_sampled_once(csms, ticking):
    """ "Power.Active.Import,SoC,Power.Active.Import" was accepted as written: every
    MeterValues then carried two Power.Active.Import readings of the same context, phase
    and location, which a CSMS adds up or takes for a second meter."""
    charger = runtime_charger("MS-DUP", csms.url, evses=1, config={"MeterValueSampleInterval": "1"})
    async with connected(charger):
        ticking(charger)
        answer = await csms.call(
            "MS-DUP",
            call.ChangeConfiguration(
                key="MeterValuesSampledData", value="Power.Active.Import,SoC,Power.Active.Import"
            ),
        )
        assert answer.status == "Accepted"
        read = await csms.call("MS-DUP", call.GetConfiguration(key=["MeterValuesSampledData"]))
        assert read.configuration_key[0]["value"] == "Power.Active.Import,SoC"
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        meter = await csms.wait_for("MS-DUP", "MeterValues", timeout=4)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
    measurands = [sv["measurand"] for sv in meter.payload["meterValue"][0]["sampledValue"]]
    assert measurands == ["Power.Active.Import", "SoC"]
