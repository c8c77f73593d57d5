from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from simulator.contract.one_line import is_one_line
from vehicles.curve import CurveError, format_curve, parse_curve

# Figures from the makers' public specifications (usable capacity, on-board charger,
# peak DC power, pack voltage); curves are typical measured shapes, rounded.
CATALOGUE = (
    {
        "make": "Volkswagen",
        "model": "ID.3 Pro (58 kWh)",
        "capacity_kwh": 58.0,
        "ac_max_kw": 11.0,
        "ac_phases": 3,
        "dc_max_kw": 120.0,
        "dc_min_v": 300.0,
        "dc_nominal_v": 370.0,
        "dc_max_v": 410.0,
        "charging_curve": [
            [0, 100],
            [10, 120],
            [30, 115],
            [50, 90],
            [70, 65],
            [80, 50],
            [90, 30],
            [100, 7],
        ],
        "efficiency": 0.92,
    },
    {
        "make": "Hyundai",
        "model": "Ioniq 5 (77.4 kWh)",
        "capacity_kwh": 74.0,
        "ac_max_kw": 11.0,
        "ac_phases": 3,
        "dc_max_kw": 233.0,
        "dc_min_v": 576.0,
        "dc_nominal_v": 697.0,
        "dc_max_v": 806.0,
        "charging_curve": [
            [0, 180],
            [10, 230],
            [50, 220],
            [65, 170],
            [80, 110],
            [90, 50],
            [100, 10],
        ],
        "efficiency": 0.93,
    },
    {
        "make": "Ford",
        "model": "E-Transit (68 kWh)",
        "capacity_kwh": 68.0,
        "ac_max_kw": 11.3,
        "ac_phases": 3,
        "dc_max_kw": 115.0,
        "dc_min_v": 280.0,
        "dc_nominal_v": 350.0,
        "dc_max_v": 400.0,
        "charging_curve": [[0, 100], [15, 115], [50, 105], [80, 60], [90, 30], [100, 8]],
        "efficiency": 0.9,
    },
    {
        "make": "BMW",
        "model": "330e (plug-in hybrid)",
        "capacity_kwh": 10.3,
        "ac_max_kw": 3.7,
        "ac_phases": 1,
        "dc_max_kw": 0.0,
        "dc_min_v": None,
        "dc_nominal_v": None,
        "dc_max_v": None,
        "charging_curve": [[0, 3.7], [90, 3.7], [100, 1.5]],
        "efficiency": 0.88,
    },
)


CURVE_REQUIRED = (
    "A vehicle that charges on DC needs a charging curve: give at least two points "
    "(SoC %, max kW), e.g. 0:100 80:50. (Its DC power follows the curve; an AC-only "
    "vehicle, DC 0 kW, may leave it empty.)"
)
CANNOT_CHARGE = (
    "This vehicle could not charge at all: give a max AC power or a max DC power above 0 kW."
)


def validate_charging_curve(value: object) -> None:
    try:
        parse_curve(value)
    except CurveError as exc:
        raise ValidationError(str(exc)) from None


class VehicleModelManager(models.Manager["VehicleModel"]):
    def seed_catalogue(self) -> int:
        """Create the catalogue vehicles that are missing; return how many were made."""
        made = 0
        for values in CATALOGUE:
            _, created = self.get_or_create(
                make=values["make"], model=values["model"], defaults=dict(values)
            )
            made += created
        return made

    def get_by_natural_key(self, make: str, model: str) -> VehicleModel:
        return self.get(make=make, model=model)

    def version(self) -> list[tuple[Any, ...]]:
        """The catalogue as it stands, to compare with an earlier look: any edit, addition
        or deletion changes it, however it was made (a form, a queryset update, SQL). The
        model has no `updated` stamp, and one would not see the last two; the catalogue is
        a few rows (tens, not the fleet's thousands), so one query reads them all."""
        return list(self.order_by("pk").values_list("pk", *VehicleModel.EDITABLE_FIELDS))


class VehicleModel(models.Model):
    # What a person edits, in order: the admin form and the import/export columns.
    EDITABLE_FIELDS = (
        "make",
        "model",
        "capacity_kwh",
        "ac_max_kw",
        "ac_phases",
        "dc_max_kw",
        "dc_min_v",
        "dc_nominal_v",
        "dc_max_v",
        "charging_curve",
        "efficiency",
    )

    class Phases(models.IntegerChoices):
        ONE = 1, "single-phase"
        THREE = 3, "three-phase"

    make = models.CharField(max_length=60)
    model = models.CharField(max_length=80)
    capacity_kwh = models.FloatField(
        "usable battery capacity (kWh)", validators=[MinValueValidator(0.5), MaxValueValidator(500)]
    )
    ac_max_kw = models.FloatField(
        "max AC power (kW)", validators=[MinValueValidator(0), MaxValueValidator(44)]
    )
    ac_phases = models.PositiveSmallIntegerField(
        "AC phases", choices=Phases.choices, default=Phases.THREE
    )
    dc_max_kw = models.FloatField(
        "max DC power (kW)",
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(1000)],
        help_text="0 means the vehicle cannot charge on DC.",
    )
    dc_min_v = models.FloatField("DC min voltage (V)", null=True, blank=True)
    dc_nominal_v = models.FloatField("DC nominal voltage (V)", null=True, blank=True)
    dc_max_v = models.FloatField("DC max voltage (V)", null=True, blank=True)
    # The DC power follows the curve, so `clean` requires one of a DC-capable vehicle
    # (issue 19); on AC it only tapers the power near full, and an AC-only vehicle
    # (DC 0 kW) may do without: it then charges at its AC maximum up to its target.
    charging_curve = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_charging_curve],
        error_messages={"null": CURVE_REQUIRED},
        help_text="Points (SoC %, max kW), SoC strictly increasing: 0:100 80:50 or "
        "[[0, 100], [80, 50]]. Required when the vehicle charges on DC; on AC it tapers "
        "the power near full.",
    )
    efficiency = models.FloatField(
        "charging efficiency",
        default=0.92,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Fraction of the metered energy that reaches the battery.",
    )

    objects = VehicleModelManager()

    class Meta:
        ordering = ["make", "model"]
        constraints = [
            models.UniqueConstraint(fields=["make", "model"], name="vehicle_make_model_unique")
        ]

    def __str__(self) -> str:
        return f"{self.make} {self.model}"

    def natural_key(self) -> tuple[str, str]:
        return (self.make, self.model)

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        """The checks across the power fields and the curve, here rather than in `clean`
        (as Django's docs advise) to skip those whose field failed already: a form leaves
        such a field at its default, which would be refused a second time."""
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().clean_fields(exclude)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        skip = set(exclude or ()) | set(errors)
        dc = bool(self.dc_max_kw and self.dc_max_kw > 0)
        if not skip & {"ac_max_kw", "dc_max_kw"} and not dc and not self.ac_max_kw:
            errors.setdefault("ac_max_kw", []).append(ValidationError(CANNOT_CHARGE))
        if not skip & {"dc_max_kw", "charging_curve"} and dc and not self.charging_curve:
            errors.setdefault("charging_curve", []).append(ValidationError(CURVE_REQUIRED))
        if errors:
            raise ValidationError(errors)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        # Stored as [[SoC, kW], ...] whatever form it was given in; a curve that does not
        # parse is validate_charging_curve's to report (once; not if the form already did).
        with contextlib.suppress(CurveError):
            self.charging_curve = [list(p) for p in parse_curve(self.charging_curve)]
        if self.dc_max_kw and self.dc_max_kw > 0:
            volts = (self.dc_min_v, self.dc_nominal_v, self.dc_max_v)
            if any(v is None for v in volts):
                errors["dc_nominal_v"] = "A DC-capable vehicle needs min, nominal and max voltage."
            elif not (0 < volts[0] <= volts[1] <= volts[2] <= 1500):  # type: ignore[operator]
                errors["dc_nominal_v"] = (
                    "DC voltages must satisfy 0 < min ≤ nominal ≤ max ≤ 1500 V."
                )
        # Its natural key, shown on one line in lists and exports (a workbook cannot hold a
        # control character at all, and an XLSX export of the models was refused for one).
        for field, label in (("make", "A make"), ("model", "A model")):
            if not is_one_line(getattr(self, field)):
                errors[field] = (
                    f"{label} is one line of text (no line breaks or control characters)."
                )
        if errors:
            raise ValidationError(errors)

    @property
    def curve_text(self) -> str:
        return format_curve(self.charging_curve)
