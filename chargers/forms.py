from __future__ import annotations

from typing import Any

from django import forms

from chargers.models import Charger


class ChargerForm(forms.ModelForm):
    """The AuthorizationKey is write-only: never rendered back, blank keeps the stored one."""

    authorization_key = forms.CharField(
        label="AuthorizationKey (password)",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="HTTP Basic password for security profiles 1 and 2. Leave empty to keep the "
        "current one.",
    )
    clear_authorization_key = forms.BooleanField(label="Clear the AuthorizationKey", required=False)

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
        ]

    def clean_authorization_key(self) -> str:
        value = self.cleaned_data.get("authorization_key") or ""
        if self.cleaned_data.get("clear_authorization_key"):
            return ""
        if not value and self.instance.pk:
            return self.instance.authorization_key
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        if cleaned.get("clear_authorization_key"):
            cleaned["authorization_key"] = ""
            self.instance.authorization_key = ""
        return cleaned
