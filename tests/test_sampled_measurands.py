"""The measurand lists a CSMS configures (MeterValuesSampledData, StopTxnSampledData,
MeterValuesAlignedData) as the charger keeps and samples them. Over real loopback
WebSockets against the built-in CSMS."""

from __future__ import annotations

from ocpp.v16 import call

from tests.engine import COMPACT, PHEV, connected, runtime_charger, wait_until


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


async def test_a_car_driving_off_ends_its_transaction_with_its_own_readings(csms, ticking):
    """A car unplugged (StopTransactionOnEVSideDisconnect) ended its transaction after its
    readings had gone with it: Transaction.End lacked the SoC that StopTxnSampledData asks
    for (the SoC the car left with), and a single-phase car read 0 A on L1, L2 and L3, the
    EVSE's phases, where its Transaction.Begin and its samples read L1 alone."""
    config = {
        "StopTxnSampledData": "Energy.Active.Import.Register,SoC,Current.Import",
        "StopTransactionOnEVSideDisconnect": "true",
    }
    charger = runtime_charger("MS-OFF", csms.url, evses=1, config=config)
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, PHEV, soc=20)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
        mark = len(csms.log)
        charger.unplug(1)
        stop = await csms.wait_for("MS-OFF", "StopTransaction", after=mark, timeout=4)
    assert stop.payload["reason"] == "EVDisconnected"
    begin, end = (
        [(sv.get("measurand"), sv.get("phase")) for sv in sample["sampledValue"]]
        for sample in (stop.payload["transactionData"][0], stop.payload["transactionData"][-1])
    )
    assert stop.payload["transactionData"][-1]["sampledValue"][0]["context"] == "Transaction.End"
    assert (
        begin
        == end
        == [
            ("Energy.Active.Import.Register", None),
            ("SoC", None),
            ("Current.Import", "L1"),
        ]
    )
    values = {
        sv["measurand"]: sv["value"] for sv in stop.payload["transactionData"][-1]["sampledValue"]
    }
    assert float(values["SoC"]) >= 20.0
    assert values["Current.Import"] == "0.00"  # nothing flows once it is unplugged


async def test_a_single_phase_car_reads_one_voltage_from_its_transactions_begin(csms, ticking):
    """Before the meter's first visit (Transaction.Begin) a single-phase car on a
    three-phase EVSE read Voltage on L1-N, L2-N and L3-N, and L1-N alone in every sample
    after: a CSMS keeping a series per phase saw two of them begin and end at once."""
    config = {
        "MeterValueSampleInterval": "1",
        "MeterValuesSampledData": "Current.Import,Voltage",
        "StopTxnSampledData": "Current.Import,Voltage",
    }
    charger = runtime_charger("MS-1P", csms.url, evses=1, config=config)
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, PHEV, soc=20)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        await csms.wait_for("MS-1P", "MeterValues", timeout=4)
        mark = len(csms.log)
        charger.stop_transaction(1)
        stop = await csms.wait_for("MS-1P", "StopTransaction", after=mark, timeout=4)
    phases = [
        [(sv["context"], sv["measurand"], sv["phase"]) for sv in sample["sampledValue"]]
        for sample in stop.payload["transactionData"]
    ]
    assert phases[0] == [
        ("Transaction.Begin", "Current.Import", "L1"),
        ("Transaction.Begin", "Voltage", "L1-N"),
    ]
    assert ("Sample.Periodic", "Voltage", "L1-N") in phases[1]
    assert all(len(sample) == 2 for sample in phases)  # one current, one voltage each


async def test_a_measurand_stored_twice_before_the_check_is_sampled_once(csms):
    """QA: a list saved with a repeat before the key's check dropped repeats still sent
    the measurand twice in every MeterValues (the running charger reads its stored value)."""
    config = {"MeterValuesSampledData": "Power.Active.Import,SoC,Power.Active.Import"}
    charger = runtime_charger("MS-TWICE", csms.url, evses=1, config=config)
    async with connected(charger):
        charger.plug_in(1, PHEV, soc=20)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        mark = len(csms.log)
        await csms.call("MS-TWICE", call.TriggerMessage(requested_message="MeterValues"))
        sent = await csms.wait_for("MS-TWICE", "MeterValues", after=mark, timeout=4)
    measurands = [sv.get("measurand") for sv in sent.payload["meterValue"][0]["sampledValue"]]
    assert measurands == ["Power.Active.Import", "SoC"]
