"""The charge point's configuration store: values as text, parsed values cached.

What keys exist, their defaults, ranges and flags come from the key table
(`simulator.contract.config_keys`, shared with the web side's validation); this module
holds one charger's values and answers reads and change requests against that table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.contract import config_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MeterSettings:
    """The keys the meter reads at every visit of a charging connector, parsed."""

    aligned_interval: int  # ClockAlignedDataInterval (s; 0: none)
    sample_interval: int  # MeterValueSampleInterval (s; 0: none)
    sampled_data: list[str]  # MeterValuesSampledData
    stop_sampled_data: list[str]  # StopTxnSampledData (kept at each sample for the stop)


class ConfigValues(dict[str, str]):
    """The configuration as text, with parsed values cached: the meter tick reads several
    keys per charger per second, and parsing them each time costs more than the physics."""

    __slots__ = ("_parsed", "custom_readonly", "meter")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed: dict[str, Any] = {}
        # The operator's own keys (a vendor's, beside the table's) that are read-only: the
        # others a CSMS may change. Every key in this dict outside the table is one of them.
        self.custom_readonly: frozenset[str] = frozenset()
        # `meter_settings()` as last made, None after any change: the meter's visit reads
        # it as `config.meter or config.meter_settings()`, an attribute, not three calls.
        self.meter: MeterSettings | None = None

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self._parsed.clear()
        self.meter = None

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._parsed.clear()
        self.meter = None

    # Every other way a dict changes drops the cached values too (nothing calls these on a
    # charger's configuration today; a stale parse would be a silent wrong answer).
    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._parsed.clear()
        self.meter = None

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, *default)
        self._parsed.clear()
        self.meter = None
        return value

    def popitem(self) -> tuple[str, str]:
        item = super().popitem()
        self._parsed.clear()
        self.meter = None
        return item

    def setdefault(self, key: str, default: str = "") -> str:
        value = super().setdefault(key, default)
        self._parsed.clear()
        self.meter = None
        return value

    def clear(self) -> None:
        super().clear()
        self._parsed.clear()
        self.meter = None

    def meter_settings(self) -> MeterSettings:
        settings = self.meter
        if settings is None:
            settings = self.meter = MeterSettings(
                self.as_int("ClockAlignedDataInterval"),
                self.as_int("MeterValueSampleInterval"),
                self.as_list("MeterValuesSampledData"),
                self.as_list("StopTxnSampledData"),
            )
        return settings

    def parsed(self, key: str, parse: Callable[[str], Any]) -> Any:
        try:
            return self._parsed[key]
        except KeyError:
            text = self.get(key, config_keys.KEYS[key].default)
            try:
                value = parse(text)
            except ValueError:
                value = parse(config_keys.KEYS[key].default)
            self._parsed[key] = value
            return value

    def as_int(self, key: str) -> int:
        # The cache hit inline: the meter tick asks for two keys per charger per tick.
        try:
            hit: int = self._parsed[key]
        except KeyError:
            value: int = self.parsed(key, int)
            return value
        return hit

    def as_bool(self, key: str) -> bool:
        value: bool = self.parsed(key, _as_bool)
        return value

    def as_list(self, key: str) -> list[str]:
        # The cache hit inline: the meter asks for the measurands at every sample.
        try:
            hit: list[str] = self._parsed[key]
        except KeyError:
            value: list[str] = self.parsed(key, config_keys.as_list)
            return value
        return hit

    def custom_keys(self) -> list[str]:
        """The operator's own keys (admin, API, import), in the order they were given."""
        return [key for key in self if key not in config_keys.KEYS]

    def spelling(self, name: str) -> str | None:
        """The charger's own spelling of the key a CSMS names `name`, None if it has no such
        key. 1.6 keys are CiString50, compared without regard to case: "heartbeatinterval"
        is HeartbeatInterval. An exact match comes first, and a key of the table before
        one of the operator's own (a custom key differing from a table key only in case is
        refused where keys are written; an older one must not shadow the table's key, the
        write-only AuthorizationKey least of all)."""
        if name in config_keys.KEYS:
            return name
        standard = config_keys.standard_spelling(name)
        if standard is not None:
            return standard
        if name in self:
            return name
        folded = name.casefold()
        return next((key for key in self.custom_keys() if key.casefold() == folded), None)

    def report(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """GetConfiguration: known keys (never a write-only key's value), the operator's own
        keys among them, and unknown ones, each once, however often the request names it.
        Without keys, all of them (1.6 section 5.8: GetConfigurationMaxKeys limits what a
        request names, not this answer)."""
        unknown: list[str] = []
        if keys:
            # Each key in the charger's spelling (`spelling`), once however it was written;
            # a key it does not have is reported as the CSMS wrote it (first spelling).
            found: dict[str, None] = {}
            missing: dict[str, str] = {}
            for name in keys:
                key = self.spelling(name)
                if key is not None:
                    found[key] = None
                else:
                    missing.setdefault(name.casefold(), name)
            wanted = list(found)
            unknown = list(missing.values())
        else:
            wanted = [k for k in config_keys.KEYS if not config_keys.KEYS[k].write_only] + [
                # A case twin of a table key is the table key to a CSMS (`spelling`).
                k
                for k in self.custom_keys()
                if config_keys.case_twin(k) is None
            ]
        known: list[dict[str, Any]] = []
        for key in wanted:
            spec = config_keys.KEYS.get(key)
            if spec is None:  # one of the operator's own keys
                readonly = key in self.custom_readonly
                known.append({"key": key, "readonly": readonly, "value": self[key]})
            elif spec.write_only:
                # The spec lets a write-only key be reported without its value.
                known.append({"key": key, "readonly": False})
            else:
                # A key kept on the charger (SecurityProfile) is filled in by the charger.
                value = self.get(key, spec.default)
                known.append({"key": key, "readonly": spec.readonly, "value": value})
        return known, unknown


def check_change(owner: str, key: str, value: str) -> tuple[str, str]:
    """Decide a ChangeConfiguration: (status, normalised value). The status is Accepted,
    RebootRequired, Rejected or NotSupported; only the first two carry a value to store."""
    spec = config_keys.KEYS.get(key)
    if spec is None:
        return "NotSupported", ""
    if spec.readonly:
        return "Rejected", ""
    try:
        value = config_keys.normalise(key, value)
    except config_keys.InvalidValue as exc:
        log.info("%s: ChangeConfiguration %s rejected: %s", owner, key, exc)
        return "Rejected", ""
    return ("RebootRequired" if spec.reboot_required else "Accepted"), value


def is_write_only(key: str) -> bool:
    return config_keys.KEYS[key].write_only


def _as_bool(text: str) -> bool:
    return text == "true"
