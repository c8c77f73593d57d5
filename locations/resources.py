"""Locations in CSV, JSON or XLSX: one row per site, keyed on its name."""

from __future__ import annotations

from import_export.fields import Field

from fleet_io.cells import BooleanCell, NumberCell, TextCell
from fleet_io.resource import FleetResource
from locations.models import Location


class LocationResource(FleetResource):
    name = Field(attribute="name", column_name="name", widget=TextCell())
    address = Field(attribute="address", column_name="address", widget=TextCell())
    city = Field(attribute="city", column_name="city", widget=TextCell())
    country = Field(attribute="country", column_name="country", widget=TextCell())
    latitude = Field(attribute="latitude", column_name="latitude", widget=NumberCell())
    longitude = Field(attribute="longitude", column_name="longitude", widget=NumberCell())
    time_zone = Field(
        attribute="time_zone", column_name="time_zone", widget=TextCell(), default="UTC"
    )
    grid_limit_kw = Field(
        attribute="grid_limit_kw", column_name="grid_limit_kw", widget=NumberCell("kW")
    )
    load_management = Field(
        attribute="load_management",
        column_name="load_management",
        widget=BooleanCell(),
        default=False,
    )
    rotation_minutes = Field(
        attribute="rotation_minutes",
        column_name="rotation_minutes",
        widget=NumberCell("minutes", integer=True),
        default=15,
    )

    class Meta:
        model = Location
        fields = (
            "name",
            "address",
            "city",
            "country",
            "latitude",
            "longitude",
            "time_zone",
            "grid_limit_kw",
            "load_management",
            "rotation_minutes",
        )
        import_id_fields = ("name",)
