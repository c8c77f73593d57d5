"""The core through a protocol adapter that is not OCPP 1.6 (tests/toy_protocol.py).

The whole session runs through the core's public methods and the runtime's meter tick,
with a fake transport and a fake clock: what the core sends, and in which order, is
the toy protocol's vocabulary only.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from simulator.core.charge_point import Charger, ChargerSpec
from simulator.core.evse import Evse
from simulator.core.link import BootState
from simulator.core.protocol import Payload
from simulator.core.vehicle import VehicleSpec
from simulator.ocpp16.messages import Ocpp16Messages
from simulator.ocpp16.schema_check import load_validator
from simulator.runtime.meter_engine import MeterEngine
from tests.toy_protocol import FakeClock, FakeTransport, Toy

# A flat charging curve: 11 kW on AC whatever the SoC.
CAR = VehicleSpec(
    name="Toy car",
    capacity_kwh=50.0,
    ac_max_kw=11.0,
    ac_phases=3,
    dc_max_kw=50.0,
    dc_min_v=300.0,
    dc_nominal_v=370.0,
    dc_max_v=410.0,
    curve=((0, 50), (100, 50)),
    efficiency=1.0,
)


def toy_csms(action: str, payload: Payload) -> Payload:
    answers: dict[str, Payload] = {
        "hello": {"verdict": "welcome", "every": 3600, "clock": "2026-01-01T00:00:00Z"},
        "badge": {"ok": payload.get("card") == "GOOD"},
        "session-open": {"session": 77},
    }
    return answers.get(action, {})


def toy_charger(clock: FakeClock) -> Charger:
    config = {
        "MeterValueSampleInterval": "10",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
        "StopTxnSampledData": "Energy.Active.Import.Register",
    }
    return Charger(
        ChargerSpec("TOY-1", vendor="Toys", model="T1"),
        [Evse(connector_id=1, max_power_w=11_000)],
        config,
        messages=Toy(),
        clock=clock,
    )


def tick(engine: MeterEngine, clock: FakeClock) -> None:
    engine.tick(now=clock.monotonic(), wall=datetime.fromtimestamp(clock.time(), UTC))


async def test_a_whole_session_goes_out_in_the_toy_protocols_words_and_order():
    clock = FakeClock()
    charger = toy_charger(clock)
    transport = FakeTransport(toy_csms)
    engine = MeterEngine([charger])

    charger.attach(transport)
    await charger.boot_sequence()
    assert charger.boot is BootState.ACCEPTED
    assert charger.config["HeartbeatInterval"] == "3600"  # read from the toy's answer

    charger.plug_in(1, CAR, soc=20)
    assert await charger.present_id_tag(1, "GOOD") == "Accepted"
    assert charger.evse(1).transaction_id == 77
    tick(engine, clock)
    clock.advance(10)
    tick(engine, clock)  # ten seconds at 11 kW: the periodic sample is due
    assert await charger.present_id_tag(1, "GOOD") == "Stopped"

    assert transport.actions() == [
        "hello",
        "socket",  # connector 0, then 1, after the welcome
        "socket",
        "socket",  # preparing
        "badge",
        "session-open",
        "socket",  # charging
        "readings",
        "session-close",
        "socket",  # finishing: the car is still plugged in
    ]
    sent = dict(enumerate(transport.sent))
    assert sent[0][1] == {"maker": "Toys", "model": "T1"}
    assert [p["state"] for a, p in transport.sent if a == "socket"] == [
        "available",
        "available",
        "preparing",
        "charging",
        "finishing",
    ]
    assert sent[5][1] == {"n": 1, "card": "GOOD", "wh": 0}
    readings = sent[7][1]
    assert readings["why"] == "periodic"
    assert readings["session"] == 77  # filled in by the toy's at_send
    energy, power = readings["r"]
    assert energy[1:] == ["energy_import_register", "wh", None]
    assert 0 < int(energy[0]) <= 11_000 * 10 / 3600 + 1
    assert power[1:] == ["power_import", "w", None] and float(power[0]) > 0
    close = sent[8][1]
    assert close["why"] == "local" and close["session"] == 77
    assert [context for context, _ in close["samples"]] == [
        "transaction-begin",
        "periodic",  # StopTxnSampledData, every MeterValueSampleInterval
        "transaction-end",
    ]


async def test_a_message_queued_before_the_start_is_confirmed_carries_the_id_known_when_it_goes_out():
    clock = FakeClock()
    charger = toy_charger(clock)
    transport = FakeTransport(toy_csms)
    charger.attach(transport)
    await charger.boot_sequence()
    charger.plug_in(1, CAR, soc=20)
    transport.hold = True  # the session-open stays unanswered
    tx = charger.start_transaction(1, "GOOD")
    charger.stop_transaction(1)
    transport.release()  # session-open answered: 77
    transport.release()  # the socket state sent meanwhile
    close = next(p for a, p in transport.sent if a == "session-close")
    # Queued while unconfirmed, sent after: it carries the id known at send time.
    assert close["session"] == 77
    assert tx.transaction_id == 77


def test_the_core_and_the_toy_adapter_load_without_the_ocpp16_package():
    # In a fresh interpreter: this test session has long imported simulator.ocpp16.
    code = (
        "import sys, simulator.core.charge_point, simulator.core.operations, "
        "simulator.runtime.meter_engine, tests.toy_protocol\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('simulator.ocpp16', 'ocpp')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_security_event_raised_offline_is_kept_and_sent_once_accepted():
    clock = FakeClock()
    charger = toy_charger(clock)
    transport = FakeTransport(toy_csms)
    charger.security_event("StartupOfTheFirmware", "cold start")  # before any connection
    charger.attach(transport)
    await charger.boot_sequence()
    assert transport.actions()[0] == "hello"
    security = [p for a, p in transport.sent if a == "security"]
    assert len(security) == 1
    assert security[0]["what"] == "StartupOfTheFirmware" and security[0]["info"] == "cold start"
    assert not list(charger.queue)  # answered, so no longer kept


def test_the_16_adapter_words_a_security_event_as_the_whitepapers_schema_asks():
    action, payload = Ocpp16Messages().security_event("X" * 60, "2026-12-02T04:00:00Z", "y" * 300)
    assert action == "SecurityEventNotification"
    load_validator("SecurityEventNotification")(payload)  # raises SchemaError if not
    assert len(payload["type"]) == 50 and len(payload["techInfo"]) == 255
    assert "techInfo" not in Ocpp16Messages().security_event("ResetOrReboot", "t", None)[1]


async def test_a_new_session_on_a_finishing_connector_passes_through_preparing():
    # The last session ended with the cable still in (Finishing): a driver presenting a
    # card starts a new one, Finishing -> Preparing -> Charging (1.6 has no
    # Finishing -> Charging), where it used to raise IllegalTransition.
    clock = FakeClock()
    charger = toy_charger(clock)
    transport = FakeTransport(toy_csms)
    charger.attach(transport)
    await charger.boot_sequence()
    charger.plug_in(1, CAR, soc=20)
    assert await charger.present_id_tag(1, "GOOD") == "Accepted"
    charger.stop_transaction(1)
    assert charger.evse(1).status.value == "Finishing"
    assert await charger.present_id_tag(1, "GOOD") == "Accepted"
    states = [p["state"] for a, p in transport.sent if a == "socket"]
    assert states[-3:] == ["finishing", "preparing", "charging"]
