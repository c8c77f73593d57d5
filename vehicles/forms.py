"""The vehicle model's form: the charging curve typed as the import writes it ("0:100
80:50") or as JSON, and drawn as a small chart under the field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from vehicles.curve import CurveError, format_curve, parse_curve
from vehicles.models import VehicleModel

# The chart's drawing area in SVG units, and the margins its axis labels use.
WIDTH, HEIGHT, LEFT, BOTTOM = 240, 90, 44, 16


def curve_chart(points: Sequence[Sequence[float]]) -> SafeString:
    """Max kW against SoC, 0–100 %, as an inline SVG (no script, no external file)."""
    top = max(kw for _, kw in points) or 1.0
    coords = [
        (LEFT + soc / 100 * (WIDTH - LEFT - 4), (HEIGHT - BOTTOM) * (1 - kw / top) + 4)
        for soc, kw in points
    ]
    polyline = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="2"></circle>', ((f"{x:.1f}", f"{y:.1f}") for x, y in coords)
    )
    base = HEIGHT - BOTTOM + 4
    return format_html(
        '<svg class="curve-chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'aria-label="Charging curve: {summary}" font-size="9" fill="currentColor">'
        '<line x1="{left}" y1="4" x2="{left}" y2="{base}" stroke="#94a3b8"></line>'
        '<line x1="{left}" y1="{base}" x2="{w}" y2="{base}" stroke="#94a3b8"></line>'
        '<text x="{lab}" y="12" text-anchor="end">{top} kW</text>'
        '<text x="{lab}" y="{base}" text-anchor="end">0</text>'
        '<text x="{left}" y="{h}" text-anchor="start">0 %</text>'
        '<text x="{w}" y="{h}" text-anchor="end">100 % SoC</text>'
        '<polyline points="{polyline}" fill="none" stroke="#2563eb" stroke-width="2">'
        "</polyline>"
        '<g fill="#2563eb">{dots}</g></svg>',
        w=WIDTH,
        h=HEIGHT,
        left=LEFT,
        lab=LEFT - 4,
        base=base,
        top=f"{top:g}",
        summary=format_curve(points),
        polyline=polyline,
        dots=dots,
    )


def read_curve(value: Any) -> list[tuple[float, float]] | None:
    """What a person typed, in either spelling; None when empty. Raises CurveError."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith(("[", "{")):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CurveError(
                    f"This looks like JSON but is not valid JSON ({exc.msg}, column "
                    f"{exc.colno}). Give [[SoC, kW], ...] or the points as SoC:kW, "
                    "e.g. 0:100 80:50."
                ) from None
    if value in (None, "", [], ()):
        return None
    return parse_curve(value)


class CurveInput(forms.TextInput):
    template_name = "vehicles/widgets/charging_curve.html"

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        try:
            points = read_curve(value)
        except CurveError:
            points = None  # the field's error says why; no chart of a wrong curve
        context["widget"]["chart"] = curve_chart(points) if points else ""
        return context


class ChargingCurveField(forms.Field):
    """One field, two spellings: "0:100 80:50" (as in the import) or JSON pairs."""

    widget = CurveInput

    def to_python(self, value: Any) -> list[list[float]]:
        # Empty is no curve: the model says whether this vehicle needs one (one that
        # charges on DC does).
        try:
            points = read_curve(value)
        except CurveError as exc:
            raise ValidationError(str(exc), code="invalid") from None
        return [] if points is None else [list(point) for point in points]

    def prepare_value(self, value: Any) -> Any:
        # The stored list is shown in the short form; what a person typed is shown as typed.
        if isinstance(value, list):
            try:
                return format_curve(value)
            except (TypeError, ValueError):
                return json.dumps(value)
        return value


class VehicleModelForm(forms.ModelForm):
    charging_curve = ChargingCurveField(
        label="Charging curve",
        required=False,
        help_text="Points SoC:kW with SoC rising and every kW above 0, e.g. 0:100 50:90 "
        "80:50 100:7 (JSON pairs such as [[0, 100], [80, 50]] work too). Required when the "
        "vehicle charges on DC; an AC-only vehicle may leave it empty (it then charges at "
        "its AC maximum up to its target).",
        widget=CurveInput(attrs={"size": 60, "spellcheck": "false"}),
    )

    class Meta:
        model = VehicleModel
        fields = list(VehicleModel.EDITABLE_FIELDS)
