"""OCPP configuration overrides in one cell: "HeartbeatInterval=60; MeterValueSampleInterval=30".

Values of known keys are checked and normalised by `simulator.config_keys`, as
ChangeConfiguration and the admin do. NumberOfConnectors follows the EVSEs, and the
AuthorizationKey is a column of its own (write-only), so neither may be given here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from simulator import config_keys

RESERVED = {
    "AuthorizationKey": "AuthorizationKey is set on the charger itself (it is write-only): "
    "use the authorization_key column.",
    "NumberOfConnectors": "NumberOfConnectors follows the number of EVSEs: use the evses column.",
}


class OverrideError(ValueError):
    pass


def parse_overrides(text: str) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in (part.strip() for part in text.replace("\n", ";").split(";")):
        if not item:
            continue
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise OverrideError(f"{item!r} is not of the form Key=value.")
        if key in RESERVED:
            raise OverrideError(RESERVED[key])
        if len(key) > 50:
            raise OverrideError(f"{key[:60]!r} is longer than 50 characters.")
        if key in overrides:
            raise OverrideError(f"{key} is given twice.")
        if key in config_keys.KEYS:
            try:
                value = config_keys.normalise(key, value)
            except config_keys.InvalidValue as exc:
                raise OverrideError(str(exc)) from None
        elif len(value) > 500:
            raise OverrideError(f"{key} is longer than 500 characters.")
        overrides[key] = value
    return overrides


def format_overrides(overrides: Mapping[str, str]) -> str:
    return "; ".join(f"{key}={value}" for key, value in sorted(overrides.items()))


def overrides_of(stored: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The stored keys that differ from a new charger's defaults (what an export writes)."""
    defaults = config_keys.defaults(1)
    return {
        key: value for key, value in stored if key not in RESERVED and defaults.get(key) != value
    }
