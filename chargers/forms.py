from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from chargers.models import KEY_MISSING, Charger
from chargers.validators import validate_authorization_key
from simulator.contract import overrides, shard_of

# Issue 16: stored answer overrides, network conditions and clock skew.
FAULT_INJECTION_FIELDS = [
    "answer_overrides",
    "network_latency_ms",
    "network_jitter_ms",
    "network_drop_rate",
    "clock_skew_seconds",
]
EXAMPLE = orjson.dumps([overrides.EXAMPLE_RULE]).decode()
MOVE_ANYWAY = "(To rename it anyway, tick 'Rename even so'.)"
PHASES_BY_POWER = f"by its power: 1 up to {Charger.SINGLE_PHASE_MAX_KW:g} kW AC (a wallbox), else 3"
MODEL_BY_POWER = "Left empty: by its power type and power, such as Virtual DC 150."
CSMS_URL_EMPTY = "Empty: none; the charger does not connect (as the API and the import say)."


def without_missing_key(error: ValidationError) -> ValidationError | None:
    """The model's errors less "needs an AuthorizationKey", for a write whose key was
    refused (`validate_authorization_key`): a key was given, so that would mislead."""
    if not hasattr(error, "error_dict"):
        return error
    kept = {}
    for name, errors in error.error_dict.items():
        left = [e for e in errors if not (name == "authorization_key" and e.code == KEY_MISSING)]
        if left:
            kept[name] = left
    return ValidationError(kept) if kept else None


@dataclass(frozen=True, slots=True)
class Overtaken:
    """A value the user edited that had changed since the page showed it."""

    label: str  # the field's label, or the configuration key
    shown: Any  # on the page
    stored: Any  # when the form was posted (the CSMS's, say)
    given: Any  # the user's, saved

    def __str__(self) -> str:
        return (
            f"{self.label}: changed from {self.shown} to {self.stored} after this page was "
            f"loaded (by the charger's CSMS, or another edit); your {self.given} replaced it."
        )


_NOT_SHOWN = object()


class KeepsLaterWrites(forms.ModelForm):
    """A form of a row the running charger writes to as well (`LATER_WRITES`: what a CSMS's
    ChangeConfiguration, UpdateFirmware... set, saved by the engine's checkpoint).

    Django counts a field as edited when the posted value differs from the one stored when
    the form is posted: a page opened before the CSMS changed a value posted the old one
    back, and the save silently undid the CSMS's change. These fields are compared with the
    value the page showed instead (`show_hidden_initial`): one the user left alone keeps the
    stored value. One the user edited wins, as the later change, and `overtaken` says what it
    replaced (the admin shows it). A form posted without the shown values (a script) is
    taken as it is posted, as before."""

    LATER_WRITES: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.overtaken: list[Overtaken] = []
        for name in self.LATER_WRITES:
            if name in self.fields:
                self.fields[name].show_hidden_initial = True

    def keep_later_writes(self, cleaned: dict[str, Any]) -> None:
        """In `clean`: the stored value for each `LATER_WRITES` field the user left alone."""
        self.overtaken = []
        if self.instance.pk is None:
            return
        for name in self.LATER_WRITES:
            if name not in self.fields or name not in cleaned:
                continue
            stored = getattr(self.instance, name)  # as read when the form was posted
            if name not in self.changed_data:
                cleaned[name] = stored
                continue
            shown = self._shown(name)
            if shown is not _NOT_SHOWN and shown != stored and cleaned[name] != stored:
                self.overtaken.append(
                    Overtaken(self.later_write_label(name), shown, stored, cleaned[name])
                )

    def later_write_label(self, name: str) -> str:
        return str(self.fields[name].label or name)

    def _shown(self, name: str) -> Any:
        """The value the page showed (its hidden initial), or `_NOT_SHOWN`."""
        field = self.fields[name]
        posted_as = self[name].html_initial_name
        if posted_as not in self.data:
            return _NOT_SHOWN
        try:
            value = field.to_python(self.data.get(posted_as))
            coerce = getattr(field, "_coerce", None)  # a TypedChoiceField's (an int choice)
            return coerce(value) if coerce is not None else value
        except ValidationError:
            return _NOT_SHOWN


class ChargerForm(KeepsLaterWrites):
    """The AuthorizationKey is write-only: never rendered back, blank keeps the stored one."""

    # What the engine writes to the charger row (UpdateFirmware, a CSMS's ChangeConfiguration
    # SecurityProfile); its AuthorizationKey is never shown, and a blank one keeps it.
    LATER_WRITES = ("firmware_version", "security_profile")

    authorization_key = forms.CharField(
        label="AuthorizationKey (password)",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="HTTP Basic password for security profiles 1 and 2: 16 to 20 bytes written "
        "as 32 to 40 hexadecimal digits (as OCPP's ChangeConfiguration sets it). Leave empty to "
        "keep the current one.",
    )
    clear_authorization_key = forms.BooleanField(label="Clear the AuthorizationKey", required=False)
    # Only with several workers (`CHARGESIM_SHARDS` > 1): a new id may belong to another.
    move_anyway = forms.BooleanField(
        label="Rename even so",
        required=False,
        help_text="A new charge point id of another shard moves the charger to that shard's "
        "worker. That is refused while a transaction is in progress or its messages are not "
        "confirmed (the worker running it ends the session under the old id, but if that "
        "worker is not running, the new id would). Tick to rename it anyway.",
    )

    class Meta:
        model = Charger
        fields = [
            "charge_point_id",
            "location",
            "enabled",
            "auto_connect",
            "vendor",
            "model",
            "serial_number",
            "firmware_version",
            "power_type",
            "max_power_kw",
            "phases",
            "nominal_voltage",
            "csms_url",
            "security_profile",
            "authorization_key",
            "ca_bundle_path",
            "client_cert_path",
            "client_key_path",
            "default_vehicle",
            "simulate_ev_on_remote_start",
            "reject_triggered_boot",
            "firmware_failure",
            "diagnostics_upload_method",
            "power_sharing",
            *FAULT_INJECTION_FIELDS,
        ]
        widgets = {
            "answer_overrides": forms.Textarea(
                attrs={"rows": 4, "cols": 80, "placeholder": EXAMPLE, "spellcheck": "false"}
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Fault injection is optional: a form posted without these fields (a script, an
        # older page) keeps what the charger has, and an emptied box means "none".
        for name in FAULT_INJECTION_FIELDS:
            if name in self.fields:
                self.fields[name].required = False
        if settings.CHARGESIM_SHARDS == 1:
            del self.fields["move_anyway"]  # one worker runs every id
        if "phases" in self.fields:
            # Left empty (an API call or an import without them too): by its power, so
            # that a 3.7 or 7.4 kW wallbox is the single-phase one it is in real life.
            phases = self.fields["phases"]
            assert isinstance(phases, forms.ChoiceField)  # the model field's choices
            phases.required = False
            phases.choices = [("", PHASES_BY_POWER), (1, "1"), (3, "3")]
            if self.instance.pk is None:
                self.initial["phases"] = ""
        if "csms_url" in self.fields:
            # The form offers a URL, so emptying it is a choice: say what it means.
            csms_url = self.fields["csms_url"]
            csms_url.help_text = f"{csms_url.help_text} {CSMS_URL_EMPTY}"
        if "model" in self.fields:
            # Left empty (an API call or an import without it too): by its power type and
            # power, so that a DC charger does not boot as the default "Virtual AC 22".
            model = self.fields["model"]
            model.required = False
            model.help_text = MODEL_BY_POWER
            if self.instance.pk is None:
                self.initial["model"] = ""

    def _kept(self, name: str, empty: Any = 0) -> Any:
        """Not posted: the charger's value; posted empty: `empty` (none)."""
        if name not in self.data:
            return getattr(self.instance, name)
        value = self.cleaned_data.get(name)
        return empty if value is None else value

    def clean_phases(self) -> Any:
        phases = self.cleaned_data.get("phases")
        if phases in (None, ""):
            get = self.cleaned_data.get
            return Charger.phases_for(get("power_type"), get("max_power_kw"))
        return phases

    def clean_answer_overrides(self) -> Any:
        return self._kept("answer_overrides", [])

    def clean_network_latency_ms(self) -> Any:
        return self._kept("network_latency_ms")

    def clean_network_jitter_ms(self) -> Any:
        return self._kept("network_jitter_ms")

    def clean_network_drop_rate(self) -> Any:
        return self._kept("network_drop_rate")

    def clean_clock_skew_seconds(self) -> Any:
        return self._kept("clock_skew_seconds")

    def clean_authorization_key(self) -> str:
        value = self.cleaned_data.get("authorization_key") or ""
        if self.cleaned_data.get("clear_authorization_key"):
            return ""
        if not value and self.instance.pk:
            return self.instance.authorization_key  # kept as stored, not checked again
        if value:
            validate_authorization_key(value)
        return value

    def _update_errors(self, errors: ValidationError) -> None:
        if "authorization_key" in self.errors:
            left = without_missing_key(errors)
            if left is None:
                return
            errors = left
        super()._update_errors(errors)  # type: ignore[misc]  # BaseModelForm's, not in django-stubs

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        if not cleaned.get("model") and "model" in self.fields:
            # Here, not in clean_model: the power fields come after it in the form.
            cleaned["model"] = Charger.model_for(
                cleaned.get("power_type"), cleaned.get("max_power_kw")
            )
        if cleaned.get("clear_authorization_key"):
            cleaned["authorization_key"] = ""
            self.instance.authorization_key = ""
        self.keep_later_writes(cleaned)
        self._check_move(cleaned)
        return cleaned

    def _check_move(self, cleaned: dict[str, Any]) -> None:
        """A rename into another shard is refused while it would break a transaction
        (`rename_losses`), unless `move_anyway`."""
        new_id = cleaned.get("charge_point_id")
        old_id = self.initial.get("charge_point_id")
        if "move_anyway" not in self.fields or cleaned.get("move_anyway"):
            return
        if self.instance.pk and isinstance(old_id, str) and isinstance(new_id, str):
            losses = rename_losses(self.instance.pk, old_id, new_id)
            if losses:
                self.add_error("charge_point_id", f"{' '.join(losses)} {MOVE_ANYWAY}")


def rename_losses(pk: int, old_id: str, new_id: str) -> list[str]:
    """What renaming charger `pk` from `old_id` to `new_id` would break: nothing (empty)
    unless the new id is another shard's (`ChargerQuerySet.move_losses`)."""
    shards = settings.CHARGESIM_SHARDS
    shard = shard_of(new_id, shards)
    if shard == shard_of(old_id, shards):
        return []
    return Charger.objects.filter(pk=pk).move_losses(new_id, shard)
