from __future__ import annotations

import zoneinfo

import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


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
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
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
        "lowering connector limits every second (equal shares). Off: they draw what they "
        "want, and the location page shows an overload.",
    )

    objects = LocationManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Checked by validate_country_code, which runs before clean().
        self.country = self.country.upper()
        if (self.latitude is None) != (self.longitude is None):
            raise ValidationError("Give both latitude and longitude, or neither.")
