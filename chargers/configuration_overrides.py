"""OCPP configuration overrides in one cell: "HeartbeatInterval=60; MeterValueSampleInterval=30".

Values of known keys are checked and normalised by `simulator.contract.config_keys`, as
ChangeConfiguration and the admin do. NumberOfConnectors follows the EVSEs, and the
AuthorizationKey is a column of its own (write-only), so neither may be given here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from simulator.contract import config_keys
from simulator.contract.one_line import is_one_line

#: Keys beyond the OCPP ones ChargeSim knows that one charger may have (stored ones included).
MAX_CUSTOM_KEYS = 100
#: Items one cell may list: every known key and MAX_CUSTOM_KEYS custom ones.
MAX_ITEMS = len(config_keys.KEYS) + MAX_CUSTOM_KEYS

# Said to an import (a column of that name) and to the API (a field of that name) alike.
RESERVED = {
    "AuthorizationKey": "AuthorizationKey is set on the charger itself (it is write-only): "
    "give the charger's authorization_key instead.",
    "NumberOfConnectors": "NumberOfConnectors follows the number of EVSEs: "
    "give the charger's evses instead.",
    "SecurityProfile": "SecurityProfile is set on the charger itself: "
    "give the charger's security_profile instead.",
}


class OverrideError(ValueError):
    pass


def parse_overrides(text: str) -> dict[str, str]:
    # Counted before anything is built from them: one cell once made a million rows.
    items = [part.strip() for part in _items(text) if part.strip()]
    _check_count(len(items))
    pairs = []
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise OverrideError(f"{item!r} is not of the form Key=value.")
        pairs.append((key, value.strip()))
    return _checked(pairs)


def check_overrides(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """(key, value) pairs, checked and normalised as a cell's are: the one set of rules
    for overrides, whether they come from a file or the API."""
    _check_count(len(pairs))
    stripped = [(key.strip(), value.strip()) for key, value in pairs]
    if any(not key for key, _ in stripped):
        raise OverrideError("A configuration key name is empty.")
    return _checked(stripped)


def _checked(pairs: list[tuple[str, str]]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for key, value in pairs:
        # A file's cell is refused for a NUL before it gets here; the API's JSON can hold
        # one ("\u0000"), which PostgreSQL cannot store: a clear refusal, not a failed write.
        if "\x00" in key or "\x00" in value:
            raise OverrideError(
                f"{key[:60]!r} holds a NUL character (U+0000), which no text field can store."
            )
        if not (is_one_line(key) and is_one_line(value)):
            # Shown on one line in pages, logs and exports (a workbook holds no control
            # character), and sent so in GetConfiguration: a line break is a mistake.
            raise OverrideError(
                f"{key[:60]!r}: a configuration key and its value are one line of text "
                "(no line breaks or control characters)."
            )
        if key in RESERVED:
            raise OverrideError(RESERVED[key])
        twin = config_keys.case_twin_problem(key)
        if twin is not None:
            raise OverrideError(twin)
        if len(key) > 50:
            raise OverrideError(f"{key[:60]!r} is longer than 50 characters.")
        if key in overrides:
            raise OverrideError(f"{key} is given twice.")
        twin = config_keys.custom_twin_problem(key, overrides)
        if twin is not None:
            raise OverrideError(twin)
        if key in config_keys.KEYS:
            try:
                value = config_keys.normalise(key, value)
            except config_keys.InvalidValue as exc:
                raise OverrideError(str(exc)) from None
            except ValueError:  # whatever else a value check raises: still this row's cell
                raise OverrideError(f"{key}={value[:60]!r} is not a valid value.") from None
        elif len(value) > 500:
            raise OverrideError(f"{key} is longer than 500 characters.")
        overrides[key] = value
    custom = custom_keys(overrides)
    if len(custom) > MAX_CUSTOM_KEYS:
        raise OverrideError(
            f"{len(custom)} custom keys; a charger has at most {MAX_CUSTOM_KEYS} (MAX_CUSTOM_KEYS)."
        )
    return overrides


def check_against_stored(overrides: Iterable[str], stored: Iterable[str]) -> None:
    """An update adds to the keys a charger has: a new custom key may not differ from a
    stored one only in case (`config_keys.custom_twin_problem`; a stored key is set as it
    is, an older pair let be), and the cap on custom keys is on the sum."""
    given, kept = list(overrides), set(stored)
    for key in given:
        twin = None if key in kept else config_keys.custom_twin_problem(key, kept)
        if twin is not None:
            raise OverrideError(twin)
    _check_custom_total(given, kept)


def _check_custom_total(overrides: Iterable[str], stored: Iterable[str]) -> None:
    total = len(custom_keys(overrides) | custom_keys(stored))
    if total > MAX_CUSTOM_KEYS:
        raise OverrideError(
            f"The charger would have {total} custom configuration keys; at most "
            f"{MAX_CUSTOM_KEYS} (MAX_CUSTOM_KEYS)."
        )


def _check_count(count: int) -> None:
    if count > MAX_ITEMS:
        raise OverrideError(
            f"{count:,} keys; a charger has at most {MAX_ITEMS} ({len(config_keys.KEYS)} "
            f"OCPP keys and {MAX_CUSTOM_KEYS} custom ones, MAX_CUSTOM_KEYS)."
        )


def custom_keys(keys: Iterable[str]) -> set[str]:
    """The keys that are not OCPP keys ChargeSim knows."""
    return {key for key in keys if key not in config_keys.KEYS}


def format_overrides(overrides: Mapping[str, str]) -> str:
    return "; ".join(f"{key}={_escaped(value)}" for key, value in sorted(overrides.items()))


# A value may hold the separator: written `\;` (and a backslash `\\`), so that an export
# imports back as it was. Any other backslash is itself (a path such as C:\temp in a file
# written by hand, or before escaping existed, reads as before).
_ESCAPES = {"\\": "\\\\", ";": "\\;"}


def _escaped(value: str) -> str:
    if "\\" not in value and ";" not in value:
        return value
    return "".join(_ESCAPES.get(char, char) for char in value)


def _items(text: str) -> list[str]:
    """The cell's items: split at each `;` or line break that is not escaped."""
    if "\\" not in text:
        return text.replace("\n", ";").split(";")
    items: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            if following in ("\\", ";"):
                current.append(following)
            elif following == "\n":  # a value ending in a backslash, then the next line
                items.append("".join(current) + char)
                current = []
            else:
                current.append(char + following)
        elif char in ";\n":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def overrides_of(stored: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The stored keys that differ from a new charger's defaults (what an export writes)."""
    defaults = config_keys.defaults(1)
    return {
        key: value for key, value in stored if key not in RESERVED and defaults.get(key) != value
    }
