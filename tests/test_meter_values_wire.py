"""A MeterValues goes on the wire byte for byte as the 1.6 adapter has always framed it.

The send path builds, checks and encodes a MeterValues every sample interval for every
charging connector, and is tuned for it: these frames, for a known charger state, are the
reference any change there must still produce exactly (key order, number formatting,
which members a sampled value has).
"""

from __future__ import annotations

import re
from typing import Any

from simulator.core.charge_point import BootState
from simulator.core.protocol import MeterSample, SampleContext, StopReason
from simulator.ocpp16 import wire
from simulator.ocpp16.client import ChargePointClient, OcppConnection
from simulator.ocpp16.messages import OCPP16
from tests.engine import COMPACT, runtime_charger

STAMP = "2026-01-01T00:00:00.000Z"
MEASURANDS = [
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "SoC",
    "Power.Offered",
    "Current.Offered",
]


class Capture(OcppConnection):
    """A connection without a socket that keeps every frame it is asked to write."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def send_now(self, text: str) -> bool:
        self.frames.append(text)
        return True


def sv(value: str, measurand: str, unit: str, phase: str | None = None, **more: str) -> str:
    context = more.get("context", "Sample.Periodic")
    location = more.get("location", "Outlet")
    text = (
        f'{{"value":"{value}","context":"{context}","measurand":"{measurand}",'
        f'"unit":"{unit}","location":"{location}"'
    )
    return text + (f',"phase":"{phase}"}}' if phase else "}")


def meter_values_frame(values: list[str]) -> str:
    return (
        '[2,"ID","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"'
        + STAMP
        + '","sampledValue":['
        + ",".join(values)
        + ']}],"transactionId":4711}]'
    )


async def charging_client() -> tuple[Any, ChargePointClient, Capture]:
    charger = runtime_charger("WIRE-1", "ws://127.0.0.1:1/ocpp", evses=1)
    capture = Capture()
    client = ChargePointClient(charger, capture, timeout=30)
    charger.attach(client)
    charger.boot = BootState.ACCEPTED
    charger.plug_in(1, COMPACT, soc=20)
    charger.start_transaction(1, "TAG")
    while client._pending:  # the status notifications and the start, in their order
        unique_id, (action, _done, _deadline) = next(iter(client._pending.items()))
        answer = '{"transactionId":4711,"idTagInfo":{"status":"Accepted"}}'
        payload = answer if action == "StartTransaction" else "{}"
        client.on_text_frame(f'[3,"{unique_id}",{payload}]'.encode())
    evse = charger.evse(1)
    evse.register_wh, evse.power_w, evse.soc = 12345.67, 11040.0, 42.35
    evse.current_a, evse.voltage_v = (16.0, 15.996, 16.005), (230.04, 229.96, 230.0)
    capture.frames.clear()
    return charger, client, capture


def without_id(frame: str) -> str:
    return re.sub(r'^\[2,"[^"]+",', '[2,"ID",', frame)


async def test_a_transaction_meter_values_frame_is_exactly_the_reference() -> None:
    charger, _client, capture = await charging_client()
    charger.send_meter_values(1, SampleContext.PERIODIC, MEASURANDS, STAMP)
    (frame,) = capture.frames
    values = [
        sv("12345", "Energy.Active.Import.Register", "Wh"),
        sv("11040.0", "Power.Active.Import", "W"),
        sv("16.00", "Current.Import", "A", "L1"),
        sv("16.00", "Current.Import", "A", "L2"),
        sv("16.00", "Current.Import", "A", "L3"),
        sv("230.0", "Voltage", "V", "L1-N"),
        sv("230.0", "Voltage", "V", "L2-N"),
        sv("230.0", "Voltage", "V", "L3-N"),
        sv("42.4", "SoC", "Percent", location="EV"),
        sv("22000.0", "Power.Offered", "W"),
        sv("31.88", "Current.Offered", "A"),  # to 0.01 A, as Current.Import
    ]
    assert without_id(frame) == meter_values_frame(values)


async def test_a_triggered_sample_of_nothing_flowing_reads_0_a_on_each_phase() -> None:
    """A connector drawing nothing read one Current.Import without a phase, while charging
    it reads one per phase: a CSMS keying the series by phase lost it."""
    charger, _client, capture = await charging_client()
    charger.evse(1).current_a = ()
    charger.send_meter_values(1, SampleContext.TRIGGER, ["Current.Import", "Voltage"], STAMP)
    (frame,) = capture.frames
    trigger = {"context": "Trigger"}
    values = [
        *(sv("0.00", "Current.Import", "A", p, **trigger) for p in ("L1", "L2", "L3")),
        *(sv("230.0", "Voltage", "V", p, **trigger) for p in ("L1-N", "L2-N", "L3-N")),
    ]
    assert without_id(frame) == meter_values_frame(values)


async def test_a_stop_transactions_transaction_data_is_exactly_the_reference() -> None:
    charger, _client, _capture = await charging_client()
    readings = charger.readings(charger.evse(1), ["Energy.Active.Import.Register", "SoC"])
    tx = charger.transactions[1]
    samples = [MeterSample(STAMP, SampleContext.TRANSACTION_END, readings)]
    action, payload = OCPP16.transaction_ended(tx, 12345, STAMP, StopReason.LOCAL, "TAG", samples)
    payload = OCPP16.at_send(action, payload, tx)
    wire.validate_request(action, payload)
    end = {"context": "Transaction.End"}
    values = [
        sv("12345", "Energy.Active.Import.Register", "Wh", **end),
        sv("42.4", "SoC", "Percent", location="EV", **end),
    ]
    assert wire.encode_call("ID", action, payload) == (
        '[2,"ID","StopTransaction",{"meterStop":12345,"timestamp":"'
        + STAMP
        + '","reason":"Local","idTag":"TAG","transactionData":[{"timestamp":"'
        + STAMP
        + '","sampledValue":['
        + ",".join(values)
        + ']}],"transactionId":4711}]'
    )
