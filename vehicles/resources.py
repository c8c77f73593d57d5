"""Vehicle models in CSV, JSON or XLSX, keyed on make + model.

The charging curve is one cell in the compact form of `vehicles.curve` ("0:100 80:50"); a
JSON file may also give it as a list of [SoC, kW] pairs.
"""

from __future__ import annotations

from typing import Any

from import_export.fields import Field
from import_export.widgets import Widget

from fleet_io.cells import ChoiceCell, NumberCell, TextCell
from fleet_io.resource import FleetResource
from vehicles.curve import CurveError, format_curve
from vehicles.models import VehicleModel


class CurveCell(Widget):
    """Passes the cell on to VehicleModel.clean (parse_curve), whose messages we keep."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        if value in (None, ""):
            return []
        return value.strip() if isinstance(value, str) else value

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        try:
            return format_curve(value or [])
        except (TypeError, ValueError, CurveError):
            return str(value)


class VehicleModelResource(FleetResource):
    make = Field(attribute="make", column_name="make", widget=TextCell())
    model = Field(attribute="model", column_name="model", widget=TextCell())
    capacity_kwh = Field(
        attribute="capacity_kwh", column_name="capacity_kwh", widget=NumberCell("kWh")
    )
    ac_max_kw = Field(attribute="ac_max_kw", column_name="ac_max_kw", widget=NumberCell("kW"))
    ac_phases = Field(
        attribute="ac_phases",
        column_name="ac_phases",
        widget=ChoiceCell(VehicleModel.Phases),
        default=VehicleModel.Phases.THREE,
    )
    dc_max_kw = Field(
        attribute="dc_max_kw", column_name="dc_max_kw", widget=NumberCell("kW"), default=0.0
    )
    dc_min_v = Field(attribute="dc_min_v", column_name="dc_min_v", widget=NumberCell("V"))
    dc_nominal_v = Field(
        attribute="dc_nominal_v", column_name="dc_nominal_v", widget=NumberCell("V")
    )
    dc_max_v = Field(attribute="dc_max_v", column_name="dc_max_v", widget=NumberCell("V"))
    charging_curve = Field(
        attribute="charging_curve", column_name="charging_curve", widget=CurveCell()
    )
    efficiency = Field(
        attribute="efficiency", column_name="efficiency", widget=NumberCell(), default=0.92
    )

    list_columns = ("charging_curve",)

    class Meta:
        model = VehicleModel
        fields = VehicleModel.EDITABLE_FIELDS
        import_id_fields = ("make", "model")
