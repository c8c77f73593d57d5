import pytest
from django.core.exceptions import ValidationError

from vehicles.curve import CurveError, format_curve, parse_curve
from vehicles.models import CATALOGUE, VehicleModel

pytestmark = pytest.mark.django_db


def vehicle(**overrides):
    values = dict(CATALOGUE[0])
    values.update(overrides)
    return VehicleModel(**values)


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        ([[0, 50], [50, 40], [40, 30]], "Point 3: SoC 40 % does not increase"),
        ([[0, 50], [80, -1]], "Point 2: power -1 kW is negative"),
        ([[0, 50], [120, 10]], "Point 2: SoC 120 % is outside 0–100"),
        ([[0, 50]], "at least two points"),
        ([[0, "fast"], [80, 10]], "Point 1: .* is not a pair of numbers"),
        ("0:50 80", "Point 2: '80' is not of the form SoC:kW"),
        ([[0, 50, 1], [80, 10]], "Point 1: expected a pair"),
    ],
)
def test_bad_charging_curves_are_rejected_with_the_point_named(curve, message):
    with pytest.raises(ValidationError, match=message):
        vehicle(charging_curve=curve).full_clean()


def test_the_text_form_of_a_curve_round_trips():
    points = parse_curve("0:100 10:120, 80:50;100:7")
    assert points == [(0, 100), (10, 120), (80, 50), (100, 7)]
    assert parse_curve(format_curve(points)) == points
    with pytest.raises(CurveError):
        parse_curve("")


def test_a_dc_vehicle_needs_an_ordered_voltage_range():
    with pytest.raises(ValidationError, match="min ≤ nominal ≤ max"):
        vehicle(dc_min_v=500, dc_nominal_v=400, dc_max_v=600).full_clean()
    with pytest.raises(ValidationError, match="needs min, nominal and max"):
        vehicle(dc_min_v=None).full_clean()


def test_an_ac_only_vehicle_needs_no_voltage_range():
    vehicle(
        make="X", model="Y", dc_max_kw=0, dc_min_v=None, dc_nominal_v=None, dc_max_v=None
    ).full_clean()


def test_ac_phases_are_one_or_three():
    with pytest.raises(ValidationError, match="ac_phases|not a valid choice"):
        vehicle(ac_phases=2).full_clean()


def test_the_catalogue_is_valid_and_seeding_is_idempotent():
    assert VehicleModel.objects.seed_catalogue() == len(CATALOGUE)
    assert VehicleModel.objects.seed_catalogue() == 0
    kinds = {
        (v.ac_phases, v.dc_max_kw > 0, v.dc_nominal_v and v.dc_nominal_v > 600)
        for v in VehicleModel.objects.all()
    }
    assert (1, False, None) in kinds  # single-phase plug-in hybrid
    assert (3, True, True) in kinds  # 800 V car
    for v in VehicleModel.objects.all():
        v.full_clean()
