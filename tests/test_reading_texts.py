"""The readings' decimal texts come from a memo for recurring values: the memo must give
exactly what formatting the float gives, whatever came before (0.0 and -0.0, NaN, inf).
The 1.6 SampledValues of recurring readings are shared: the same as built afresh."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core import charge_point
from simulator.core.charge_point import _AMPS, _TEXT_1, _TEXT_2, _VOLTS, _fixed_1, _fixed_2
from simulator.core.protocol import QUANTITIES, Measurand, Reading, SampleContext
from simulator.ocpp16 import messages
from simulator.ocpp16.messages import CONTEXTS, _template, sampled_values
from tests.engine import COMPACT, runtime_charger

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
# Recurring values, the signed zeros among them: the memo's hits and misses both.
FEW = st.sampled_from([0.0, -0.0, 230.0, 16.0, 15.996, 11040.0, 0.05, -0.04, 1e300])


def text_1(value: float) -> str:
    return _TEXT_1.get(value) or _fixed_1(value)


def text_2(value: float) -> str:
    return _TEXT_2.get(value) or _fixed_2(value)


@given(st.lists(st.one_of(ANY_FLOAT, FEW), max_size=40))
def test_the_memo_gives_what_formatting_gives(values: list[float]) -> None:
    for value in values + values:  # each value a miss, then (mostly) a hit
        assert text_1(value) == f"{value:.1f}"
        assert text_2(value) == f"{value:.2f}"


def test_signed_zero_and_nan_are_never_stored() -> None:
    for value in (0.0, -0.0, float("nan")):
        _fixed_1(value)
        _fixed_2(value)
    assert text_1(-0.0) == "-0.0" and text_1(0.0) == "0.0"
    assert text_2(-0.0) == "-0.00" and text_2(0.0) == "0.00"
    assert not any(not key or key != key for key in (*_TEXT_1, *_TEXT_2))


def test_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charge_point, "_TEXTS_MAX", 8)
    for n in range(1, 100):
        assert text_1(n / 7) == f"{n / 7:.1f}"
        assert text_2(n / 7) == f"{n / 7:.2f}"
    assert len(_TEXT_1) <= 8 and len(_TEXT_2) <= 8


@given(
    power=st.one_of(ANY_FLOAT, FEW),
    amps=st.lists(st.one_of(ANY_FLOAT, FEW), min_size=1, max_size=3),
    volts=st.lists(st.one_of(ANY_FLOAT, FEW), min_size=1, max_size=3),
)
def test_readings_are_the_formatted_values(
    power: float, amps: list[float], volts: list[float]
) -> None:
    charger = runtime_charger("TEXTS-1", "ws://127.0.0.1:1/ocpp", evses=1)
    charger.plug_in(1, COMPACT, soc=20)
    evse = charger.evse(1)
    evse.power_w, evse.current_a, evse.voltage_v = power, tuple(amps), tuple(volts)
    measurands: list[str] = [Measurand.POWER_IMPORT, Measurand.CURRENT_IMPORT, Measurand.VOLTAGE]
    for _ in range(2):
        texts = [text for text, _quantity in charger.readings(evse, measurands)]
        expected = [f"{power:.1f}", *(f"{a:.2f}" for a in amps), *(f"{v:.1f}" for v in volts)]
        assert texts == expected


def test_per_phase_readings_of_signed_zeros_and_nan_are_never_stored() -> None:
    charger = runtime_charger("TEXTS-2", "ws://127.0.0.1:1/ocpp", evses=1)
    evse = charger.evse(1)
    measurands: list[str] = [Measurand.CURRENT_IMPORT, Measurand.VOLTAGE]
    nan = float("nan")
    for amps, volts, expected in (
        ((0.0, 1.0), (0.0, 230.0), ["0.00", "1.00", "0.0", "230.0"]),
        ((-0.0, 1.0), (-0.0, 230.0), ["-0.00", "1.00", "-0.0", "230.0"]),
        ((nan, 2.0), (nan, 2.0), ["nan", "2.00", "nan", "2.0"]),
        ((nan, 2.0), (nan, 2.0), ["nan", "2.00", "nan", "2.0"]),
    ):
        evse.current_a, evse.voltage_v = amps, volts
        assert [text for text, _q in charger.readings(evse, measurands)] == expected
    assert all(all(v and v == v for v in key) for key in (*_AMPS, *_VOLTS))


def test_per_phase_memos_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charge_point, "_TEXTS_MAX", 8)
    charger = runtime_charger("TEXTS-3", "ws://127.0.0.1:1/ocpp", evses=1)
    evse = charger.evse(1)
    for n in range(1, 50):
        evse.current_a = evse.voltage_v = (n / 7,) * 3
        texts = [t for t, _q in charger.readings(evse, [Measurand.CURRENT_IMPORT, "Voltage"])]
        assert texts == [f"{n / 7:.2f}"] * 3 + [f"{n / 7:.1f}"] * 3
    assert len(_AMPS) <= 8 and len(_VOLTS) <= 8


READINGS = st.lists(
    st.tuples(
        st.sampled_from(["230.0", "16.00", "-0.0", "0", "42.4", ""]),
        st.sampled_from(list(QUANTITIES.values())),
    ),
    max_size=12,
)


@given(st.lists(st.tuples(st.sampled_from(list(CONTEXTS)), READINGS), max_size=6))
def test_shared_sampled_values_are_what_building_them_gives(
    batches: list[tuple[SampleContext, list[Reading]]],
) -> None:
    for context, readings in batches + batches:  # built, then found
        expected = [
            {**_template(CONTEXTS[context], quantity), "value": value}
            for value, quantity in readings
        ]
        got = sampled_values(context, readings)
        assert got == expected
        assert [list(sampled) for sampled in got] == [list(e) for e in expected]  # key order


def test_shared_sampled_values_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "_SHARED_MAX", 8)
    quantity = QUANTITIES[Measurand.ENERGY_IMPORT_REGISTER, None]
    for n in range(50):
        (sampled,) = sampled_values(SampleContext.PERIODIC, [(str(n), quantity)])
        assert sampled["value"] == str(n)
    assert len(messages._SHARED[SampleContext.PERIODIC]) <= 8


def test_recurring_sampled_values_stay_shared_while_registers_grow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fleet's registers differ at every sample and fill the memo; the SampledValues of
    the readings that recur (a voltage, a current) stay the very same dicts, not copied
    again after every time it fills."""
    context = SampleContext.PERIODIC
    monkeypatch.setitem(messages._SHARED, context, {})
    energy = QUANTITIES[Measurand.ENERGY_IMPORT_REGISTER, None]
    recurring: list[Reading] = [
        ("230.0", QUANTITIES[Measurand.VOLTAGE, None]),
        ("16.00", QUANTITIES[Measurand.CURRENT_IMPORT, None]),
    ]
    first = sampled_values(context, recurring)
    for register in range(3 * messages._SHARED_MAX):
        *same, sampled = sampled_values(context, [*recurring, (str(register), energy)])
        assert sampled["value"] == str(register)
        assert all(a is b for a, b in zip(same, first, strict=True)), register
    assert len(messages._SHARED[context]) <= messages._SHARED_MAX


def test_a_memo_full_of_other_readings_is_still_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings that are not registers yet do not recur (a DC curve's powers) cannot hold
    the memo full: it is emptied as before."""
    monkeypatch.setattr(messages, "_SHARED_MAX", 8)
    monkeypatch.setitem(messages._SHARED, SampleContext.PERIODIC, {})
    power = QUANTITIES[Measurand.POWER_IMPORT, None]
    for n in range(50):
        (sampled,) = sampled_values(SampleContext.PERIODIC, [(f"{n}.5", power)])
        assert sampled["value"] == f"{n}.5"
        assert len(messages._SHARED[SampleContext.PERIODIC]) <= 8


# SoCs around the points where a text changes (x.x5, exactly representable or not) and
# their neighbouring floats: where a wrong interval would show first.
_HALVES = [n / 10 + 0.05 for n in range(0, 1000, 7)]
NEAR_HALVES = st.sampled_from(_HALVES).flatmap(
    lambda b: st.sampled_from(
        [b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf), b - 1e-9, b + 1e-9]
    )
)
SOCS = st.one_of(st.floats(min_value=0.0, max_value=100.0), NEAR_HALVES, FEW, ANY_FLOAT)


@given(st.lists(SOCS, max_size=40), st.booleans())
def test_the_soc_text_is_the_formatted_soc(socs: list[float], rising: bool) -> None:
    # `readings` reuses the text of an interval of SoCs (`Evse.soc_text`): whatever came
    # before, in any order or rising as a charging vehicle's, it is the formatted SoC.
    charger = runtime_charger("TEXTS-4", "ws://127.0.0.1:1/ocpp", evses=1)
    evse = charger.evse(1)
    if rising:
        socs = sorted(s for s in socs if s == s)
    for soc in socs + socs:
        evse.soc = soc
        ((text, quantity),) = charger.readings(evse, [Measurand.SOC])
        assert text == f"{soc:.1f}"
        assert quantity is QUANTITIES[Measurand.SOC, None]


def test_the_soc_text_is_reused_across_samples() -> None:
    # The interval a text holds over covers the next samples of a rising SoC (what makes
    # the reuse worth it), and is exact at its ends.
    charger = runtime_charger("TEXTS-5", "ws://127.0.0.1:1/ocpp", evses=1)
    evse = charger.evse(1)
    evse.soc = 21.4012
    assert charger.readings(evse, [Measurand.SOC])[0][0] == "21.4"
    assert evse.soc_text is not None
    lo, hi, text = evse.soc_text
    assert (lo, text) == (21.4012, "21.4") and hi > 21.449
    assert f"{hi:.1f}" == "21.4" and f"{math.nextafter(hi, math.inf):.1f}" == "21.5"
    evse.soc = 21.44
    assert charger.readings(evse, [Measurand.SOC])[0][0] == "21.4"
    assert evse.soc_text == (lo, hi, text)  # a hit: not formatted again
