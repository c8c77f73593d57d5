"""The meter reads ClockAlignedDataInterval, MeterValueSampleInterval,
MeterValuesSampledData and StopTxnSampledData at every visit from `ConfigValues.meter`, kept between changes: it
must always be what parsing the configuration as it is now gives."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from simulator.contract import config_keys
from simulator.core.configuration import ConfigValues, MeterSettings
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, runtime_charger

KEYS = [
    "ClockAlignedDataInterval",
    "MeterValueSampleInterval",
    "MeterValuesSampledData",
    "StopTxnSampledData",
]
TEXTS = st.sampled_from(["0", "1", "60", "900", "-5", "x", "", "SoC", "Voltage,SoC"])
CHANGES = st.lists(
    st.tuples(st.booleans(), st.sampled_from([*KEYS, "HeartbeatInterval"]), TEXTS),
    max_size=12,
)


def parsed(config: ConfigValues) -> MeterSettings:
    fresh = ConfigValues(config)  # nothing kept yet: parses the texts
    return MeterSettings(
        fresh.as_int(KEYS[0]),
        fresh.as_int(KEYS[1]),
        fresh.as_list(KEYS[2]),
        fresh.as_list(KEYS[3]),
    )


@given(CHANGES)
def test_the_kept_settings_are_the_configuration_parsed_now(
    changes: list[tuple[bool, str, str]],
) -> None:
    config = ConfigValues(config_keys.defaults(1))
    assert (config.meter or config.meter_settings()) == parsed(config)
    for by_update, key, text in changes:
        if by_update:
            config.update({key: text})
        else:
            config[key] = text
        assert (config.meter or config.meter_settings()) == parsed(config)
        assert config.meter is not None  # kept until the next change


def test_a_changed_measurand_list_is_sampled_at_the_next_visit() -> None:
    config = {
        "MeterValueSampleInterval": "1",
        "MeterValuesSampledData": "Energy.Active.Import.Register",
    }
    charger = runtime_charger("SETTINGS-1", "ws://127.0.0.1:1/ocpp", evses=1, config=config)
    charger.plug_in(1, COMPACT, soc=20.0)
    charger.start_transaction(1, "TAG")
    charger.next_heartbeat = math.inf
    sent: list[tuple[str, dict]] = []
    charger.send = lambda message, **kwargs: sent.append(message)  # type: ignore[assignment,method-assign]
    engine = MeterEngine([charger])
    now, wall = time.monotonic(), datetime(2026, 1, 1, tzinfo=UTC)  # the charger's clock
    for n in range(4):
        if n == 2:
            assert charger.change_configuration("MeterValuesSampledData", "SoC") == "Accepted"
        engine.tick(now + n, wall + timedelta(seconds=n))
    measurands = [
        [value["measurand"] for value in payload["meterValue"][0]["sampledValue"]]
        for action, payload in sent
        if action == "MeterValues"
    ]
    # A sample a second from the first due one; the change counts from the visit after it.
    assert measurands == [["Energy.Active.Import.Register"], ["SoC"], ["SoC"]]


def test_every_way_a_configuration_changes_drops_what_was_kept() -> None:
    for change in (
        lambda c: c.pop("MeterValueSampleInterval"),
        lambda c: c.__delitem__("MeterValueSampleInterval"),
        lambda c: c.clear(),
        lambda c: c.popitem(),
        lambda c: c.setdefault("MeterValueSampleInterval", "5"),
    ):
        config = ConfigValues(config_keys.defaults(1))
        config["MeterValueSampleInterval"] = "60"
        assert config.meter_settings().sample_interval == 60
        assert config.as_int("MeterValueSampleInterval") == 60
        change(config)
        assert (config.meter or config.meter_settings()) == parsed(config)
