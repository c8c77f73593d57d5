"""The id-pattern fleet generator: 'create 500 chargers CP-0001..CP-0500 like this one at X'."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from chargers.models import Charger
from chargers.validators import validate_charge_point_id
from locations.models import Location

MAX_FLEET = 5000
TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def charge_point_ids(first_id: str, count: int) -> list[str]:
    """CP-0001 and 3 give CP-0001, CP-0002, CP-0003 (the zero padding is kept)."""
    match = TRAILING_NUMBER.match(first_id)
    if not match:
        raise ValidationError(
            "%(value)s does not end in a number to count from (e.g. CP-0001).",
            params={"value": first_id},
        )
    prefix, digits = match.groups()
    start = int(digits)
    return [f"{prefix}{n:0{len(digits)}d}" for n in range(start, start + count)]


def suggest_first_id(template: Charger) -> str:
    match = TRAILING_NUMBER.match(template.charge_point_id)
    prefix = match.group(1) if match else f"{template.charge_point_id}-"
    return f"{prefix}0001"


class FleetGeneratorForm(forms.Form):
    first_id = forms.CharField(
        label="first charge point id",
        max_length=48,
        help_text="Ends in a number; the ids count up from it, keeping its zero padding.",
    )
    count = forms.IntegerField(label="number of chargers", min_value=1, max_value=MAX_FLEET)
    location = forms.ModelChoiceField(queryset=Location.objects.all())

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        first_id, count = cleaned.get("first_id"), cleaned.get("count")
        if not first_id or not count:
            return cleaned
        try:
            ids = charge_point_ids(first_id, count)
            validate_charge_point_id(ids[-1])
        except ValidationError as exc:
            raise ValidationError({"first_id": exc.messages}) from None
        # In any letter case: CP-0001 and cp-0001 are one charger to many a CSMS.
        taken = sorted(Charger.objects.case_twins(ids).values())
        if taken:
            shown = ", ".join(taken[:10]) + (" …" if len(taken) > 10 else "")
            raise ValidationError(
                {"first_id": f"{ids[0]}..{ids[-1]} overlaps existing chargers: {shown}."}
            )
        cleaned["charge_point_ids"] = ids
        return cleaned
