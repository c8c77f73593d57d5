from __future__ import annotations

import contextlib
import zoneinfo

import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from simulator.contract import traffic
from simulator.contract.one_line import is_one_line


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            "%(value)s is not an IANA time zone (for example Europe/Berlin).",
            params={"value": value},
        )


def validate_country_code(value: str) -> None:
    """An assigned ISO 3166-1 alpha-2 code, in either letter case (clean() stores it in
    upper case, as the standard writes it). A value longer than the column gets the
    length message alone."""
    if len(value) > 2:
        return
    if len(value) != 2 or pycountry.countries.get(alpha_2=value.upper()) is None:
        raise ValidationError(
            "%(value)s is not an ISO 3166-1 country code (two letters, for example DE).",
            params={"value": repr(value)},
        )


class LocationManager(models.Manager["Location"]):
    DEFAULTS = (
        {
            "name": "Berlin Mitte Depot",
            "address": "Invalidenstrasse 50",
            "city": "Berlin",
            "country": "DE",
            "latitude": 52.5302,
            "longitude": 13.3720,
            "time_zone": "Europe/Berlin",
            "grid_limit_kw": 400,
        },
        {
            "name": "Amsterdam Zuidas Garage",
            "address": "Gustav Mahlerlaan 10",
            "city": "Amsterdam",
            "country": "NL",
            "latitude": 52.3383,
            "longitude": 4.8725,
            "time_zone": "Europe/Amsterdam",
            "grid_limit_kw": 250,
        },
        {
            "name": "A9 Highway Hub",
            "address": "Rastanlage Fürholzen West",
            "city": "Neufahrn",
            "country": "DE",
            "latitude": 48.3553,
            "longitude": 11.6231,
            "time_zone": "Europe/Berlin",
            "grid_limit_kw": 1500,
        },
    )

    def seed_defaults(self) -> int:
        """Create the default locations when there are none; return how many were made."""
        if self.exists():
            return 0
        self.bulk_create([self.model(**values) for values in self.DEFAULTS])
        return len(self.DEFAULTS)

    def delete_if_unused(self, name: str) -> bool:
        """Delete the location of that name if nothing uses it: no charger at it, no arrival
        profile, and nothing set but its name (as `create(name=...)` makes it); whether it
        was deleted."""
        untouched = {
            field.name: field.get_default()
            for field in self.model._meta.concrete_fields
            if not field.primary_key and field.name != "name"
        }
        deleted, _ = self.filter(
            name=name, chargers=None, arrival_profile=None, **untouched
        ).delete()
        return deleted > 0


# Turns longer than a day would never come round in a working day's sessions.
MAX_ROTATION_MINUTES = 24 * 60


class Location(models.Model):
    name = models.CharField(max_length=120, unique=True)
    address = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(
        max_length=2,
        blank=True,
        validators=[validate_country_code],
        help_text="ISO 3166-1 alpha-2 code, e.g. DE.",
    )
    latitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)]
    )
    longitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)]
    )
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA name, e.g. Europe/Berlin. The hours of the site's traffic profile "
        "are its local hours.",
    )
    grid_limit_kw = models.FloatField(
        "grid connection limit (kW)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="The site's grid connection; empty means unlimited.",
    )
    load_management = models.BooleanField(
        "load management",
        default=False,
        help_text="A local controller keeps the site's chargers under the grid limit by "
        "lowering connector limits every second (equal shares, never below the 6 A an AC "
        "car needs: a car that does not fit waits, SuspendedEVSE). Off: they draw what they "
        "want, and the location page shows an overload.",
    )
    rotation_minutes = models.PositiveIntegerField(
        "turns for waiting cars (minutes)",
        default=15,
        validators=[MaxValueValidator(MAX_ROTATION_MINUTES)],
        help_text="Cars waiting for power (the site's load management, or a charger's rated "
        "power or ChargePointMax, cannot give every car 6 A): once a car has waited this long, "
        "the car that has charged longest gives it its place, and so on in turn. 0: first "
        "come, first served (a waiting car waits until a session ends).",
    )

    objects = LocationManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    #: The fields `full_clean` leaves out, while it runs (`clean` reads them).
    _failed_fields: frozenset[str] = frozenset()

    def full_clean(self, exclude=None, validate_unique=True, validate_constraints=True) -> None:
        # What failed its own check (a form's or an import's excludes it): `clean` does not
        # say "give both" about a coordinate whose own message ("'abc' is not a number")
        # is on the page already.
        self._failed_fields = frozenset(exclude or ())
        try:
            super().full_clean(exclude, validate_unique, validate_constraints)
        finally:
            self._failed_fields = frozenset()

    def clean(self) -> None:
        # Checked by validate_country_code, which runs before clean().
        self.country = self.country.upper()
        # Shown in lists, pages, logs and exports on one line: a line break or a control
        # character there is a mistake (or an attack on a log), not a name or an address.
        unprintable = {
            field: f"{label} is one line of text (no line breaks or control characters)."
            for field, label in (("name", "A name"), ("address", "An address"), ("city", "A city"))
            if not is_one_line(getattr(self, field))
        }
        if unprintable:
            raise ValidationError(unprintable)
        if (self.latitude is None) != (self.longitude is None) and not self._failed_fields & {
            "latitude",
            "longitude",
        }:
            raise ValidationError("Give both latitude and longitude, or neither.")


# -- background traffic (issue 16) --------------------------------------------------------


def default_hourly_arrivals() -> list[float]:
    return list(traffic.DEFAULT_HOURLY_ARRIVALS)


def validate_hourly_arrivals(value: object) -> None:
    try:
        traffic.check_hourly(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def validate_id_tags(value: str) -> None:
    try:
        traffic.parse_id_tags(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


DISTRIBUTION_HELP = (
    "fixed: always the first value; uniform: between the first (min) and the second (max); "
    "normal: mean (first) and standard deviation (second), clipped to the range."
)


class ArrivalProfile(models.Model):
    """How drivers arrive at a site when `runsimulator --traffic` (or a scenario's traffic
    step) runs: the rules are `simulator.contract.traffic`'s, shared with the engine."""

    class Distribution(models.TextChoices):
        FIXED = "fixed", "fixed"
        UNIFORM = "uniform", "uniform (min, max)"
        NORMAL = "normal", "normal (mean, standard deviation), clipped"

    # The distributed quantities: field prefix -> range checked (low, high, unit).
    QUANTITIES = {
        "soc": traffic.SOC_RANGE,
        "target": traffic.SOC_RANGE,
        "dwell": traffic.DWELL_RANGE,
    }

    location = models.OneToOneField(
        Location, on_delete=models.CASCADE, related_name="arrival_profile"
    )
    enabled = models.BooleanField(
        default=True,
        help_text="Off: background traffic sends no driver to this site (its chargers stay "
        "free for manual and scenario use).",
    )
    hourly_arrivals = models.JSONField(
        "arrivals per hour",
        default=default_hourly_arrivals,
        validators=[validate_hourly_arrivals],
        help_text="24 numbers, the mean arrivals per hour for each hour of the site's local "
        "day from 00:00 to 23:00, e.g. [0.2, 0.1, ..., 0.3]; arrivals are Poisson. The "
        "default is a typical public AC site (about 26 a day, peaks at 09:00 and 17:00).",
    )
    soc_distribution = models.CharField(
        "initial SoC distribution",
        max_length=8,
        choices=Distribution.choices,
        default=traffic.DEFAULT_SOC["kind"],
        help_text=DISTRIBUTION_HELP + " SoC in % (0 to 100).",
    )
    soc_a = models.FloatField("initial SoC: first value", default=traffic.DEFAULT_SOC["a"])
    soc_b = models.FloatField("initial SoC: second value", default=traffic.DEFAULT_SOC["b"])
    target_distribution = models.CharField(
        "target SoC distribution",
        max_length=8,
        choices=Distribution.choices,
        default=traffic.DEFAULT_TARGET_SOC["kind"],
        help_text=DISTRIBUTION_HELP + " A target below the initial SoC means the EV wants "
        "nothing (SuspendedEV at once).",
    )
    target_a = models.FloatField("target SoC: first value", default=traffic.DEFAULT_TARGET_SOC["a"])
    target_b = models.FloatField(
        "target SoC: second value", default=traffic.DEFAULT_TARGET_SOC["b"]
    )
    dwell_distribution = models.CharField(
        "dwell time distribution",
        max_length=8,
        choices=Distribution.choices,
        default=traffic.DEFAULT_DWELL["kind"],
        help_text=DISTRIBUTION_HELP + " Minutes from plugging in to stopping and unplugging "
        "(1 minute to 7 days).",
    )
    dwell_a = models.FloatField("dwell: first value (min)", default=traffic.DEFAULT_DWELL["a"])
    dwell_b = models.FloatField("dwell: second value (min)", default=traffic.DEFAULT_DWELL["b"])
    id_tags = models.TextField(
        "idTag pool",
        default=traffic.DEFAULT_ID_TAGS,
        validators=[validate_id_tags],
        help_text="The idTags drivers present, separated by spaces, commas or new lines; "
        "TAG0001..TAG0200 stands for the numbers between (at most 100,000 idTags, 20 "
        "characters each). Put them in your CSMS's list if it should accept them.",
    )
    never_unplug_share = models.FloatField(
        "share who never unplug",
        default=traffic.DEFAULT_NEVER_UNPLUG,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="0 to 1: drivers who leave the vehicle plugged in after the dwell (the "
        "session goes on, SuspendedEV once full), e.g. 0.05 for 5 %.",
    )

    class Meta:
        verbose_name = "arrival profile"

    def __str__(self) -> str:
        return f"Arrivals at {self.location}"

    def clean(self) -> None:
        # The admin takes a text of 24 numbers too: kept as the list it stands for, which
        # the API and anything else reading the column expect.
        with contextlib.suppress(ValueError):  # the field's validator says why
            self.hourly_arrivals = traffic.check_hourly(self.hourly_arrivals)
        errors: dict[str, str] = {}
        for prefix, quantity in self.QUANTITIES.items():
            kind = getattr(self, f"{prefix}_distribution")
            a, b = getattr(self, f"{prefix}_a"), getattr(self, f"{prefix}_b")
            if kind not in self.Distribution.values or a is None or b is None:
                continue  # the field's own error says it
            try:
                traffic.check_distribution(kind, a, b, quantity)
            except ValueError as exc:
                message = str(exc)
                second = message.startswith(("The max", "The standard deviation"))
                errors[f"{prefix}_b" if second else f"{prefix}_a"] = message
        if errors:
            raise ValidationError(errors)

    def to_profile(self) -> traffic.ProfileDict:
        """The profile as the engine takes it (`simulator.core.arrivals`)."""
        return {
            "hourly_arrivals": traffic.check_hourly(self.hourly_arrivals),
            "vehicle_mix": [(s.vehicle_id, s.weight) for s in self.vehicle_mix.all()],
            "soc": {"kind": self.soc_distribution, "a": self.soc_a, "b": self.soc_b},
            "target_soc": {
                "kind": self.target_distribution,
                "a": self.target_a,
                "b": self.target_b,
            },
            "dwell_minutes": {
                "kind": self.dwell_distribution,
                "a": self.dwell_a,
                "b": self.dwell_b,
            },
            "id_tags": traffic.parse_id_tags(self.id_tags),
            "never_unplug_share": self.never_unplug_share,
            "time_zone": self.location.time_zone,
        }


class VehicleShare(models.Model):
    """One vehicle model's weight in a site's vehicle mix."""

    profile = models.ForeignKey(
        ArrivalProfile, on_delete=models.CASCADE, related_name="vehicle_mix"
    )
    # By name, not by import: locations and vehicles are sibling apps (import-linter).
    # Protected: a vehicle model named in a mix is not deleted (the admin and the API say
    # which sites name it). Cascading took the share away unsaid, and a site whose mix held
    # only it drew every vehicle model alike (an empty mix), its traffic changed for good.
    vehicle = models.ForeignKey("vehicles.VehicleModel", on_delete=models.PROTECT)
    weight = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.001), MaxValueValidator(traffic.MAX_VEHICLE_WEIGHT)],
        help_text="Relative: weights 3 and 1 send three of the first for one of the second. "
        "No vehicle listed: every vehicle model alike.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "vehicle"], name="one_share_per_vehicle")
        ]

    def __str__(self) -> str:
        # The site first: the admin's refusal to delete a vehicle model lists these.
        return f"{self.profile.location}'s vehicle mix: {self.vehicle} × {self.weight:g}"
