"""The DC pack voltage: a believable Li-ion curve between the vehicle's min and max."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.dc_voltage import pack_voltage
from simulator.core.vehicle import VehicleSpec


def pack(low: float, nominal: float, high: float) -> VehicleSpec:
    return VehicleSpec("pack", 60.0, 11.0, 3, 150.0, low, nominal, high, (), 0.9)


ID3 = pack(300.0, 370.0, 410.0)


@st.composite
def packs(draw: st.DrawFn) -> VehicleSpec:
    low = draw(st.floats(50, 900))
    nominal = low + draw(st.floats(0, 200))
    return pack(low, nominal, nominal + draw(st.floats(0, 200)))


socs = st.floats(-10, 110, allow_nan=False)


def test_it_spans_min_to_max_through_nominal_at_half_charge() -> None:
    assert pack_voltage(ID3, 0) == 300.0
    assert pack_voltage(ID3, 50) == 370.0
    assert pack_voltage(ID3, 100) == 410.0


def test_it_is_flat_in_the_middle_and_steep_at_the_ends() -> None:
    def slope(a: float, b: float) -> float:
        return (pack_voltage(ID3, b) - pack_voltage(ID3, a)) / (b - a)

    middle = min(slope(40, 50), slope(50, 60))
    assert slope(0, 5) > 3 * slope(40, 50)
    assert slope(95, 100) > 3 * slope(50, 60)
    assert middle > 0


def test_a_vehicle_without_dc_voltages_reads_zero() -> None:
    no_dc = VehicleSpec("phev", 10.0, 3.7, 1, 0.0, 0.0, 0.0, 0.0, (), 0.9)
    assert pack_voltage(no_dc, 50) == 0.0


def test_soc_outside_0_to_100_is_clamped() -> None:
    assert pack_voltage(ID3, -5) == 300.0
    assert pack_voltage(ID3, 120) == 410.0


@given(packs(), socs)
def test_it_stays_within_min_and_max(spec: VehicleSpec, soc: float) -> None:
    assert spec.dc_min_v <= pack_voltage(spec, soc) <= spec.dc_max_v


@given(packs(), socs, socs)
def test_it_never_falls_as_the_soc_rises(spec: VehicleSpec, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert pack_voltage(spec, low) <= pack_voltage(spec, high)


@given(packs())
def test_it_passes_the_nominal_voltage_at_half_charge(spec: VehicleSpec) -> None:
    assert pack_voltage(spec, 50) == pytest.approx(spec.dc_nominal_v)
