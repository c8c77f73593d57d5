"""Cells of a fleet file: strict widgets that turn text into values or say what is wrong.

django-import-export's own widgets accept "yes" as False and report "could not convert
string to float"; these say which value was expected instead. A ValueError raised here
becomes a validation error of the row, keyed by the column.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from django.db import models
from import_export import widgets

from fleet_io.file_formats import PLAIN_NUMBER

EMPTY = (None, "")


def number_text(value: float) -> str:
    """The shortest text that reads back as the same number: 52.530234 stays 52.530234
    (`:g` would cut it to six digits, 52.5302), 22.0 is written 22."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else str(value)


# Above this a float no longer holds every whole number: a spreadsheet keeps 15 digits.
EXACT_WHOLE_NUMBERS = 2**53


class TextCell(widgets.CharWidget):
    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> str:
        if value in EMPTY:
            return ""
        if isinstance(value, float) and value.is_integer():
            if abs(value) >= EXACT_WHOLE_NUMBERS:
                # A serial number typed into a General cell: the workbook kept a float
                # whose last digits are gone (1234567890123456789 read 1234567890123456768).
                raise ValueError(
                    f"The cell holds the number {value:.15g}, longer than a spreadsheet keeps "
                    "exactly (15 digits), where text is expected: format the column as Text "
                    "(Home > Number Format > Text) and type the value again."
                )
            value = int(value)  # a spreadsheet turns "007" columns into numbers
        return _text(value)


class NumberCell(widgets.Widget):
    """A decimal number with a dot; empty gives None (the model default applies)."""

    def __init__(self, unit: str = "", integer: bool = False) -> None:
        super().__init__(coerce_to_string=True)
        self.unit = unit
        self.integer = integer

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> float | int | None:
        if value in EMPTY or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, bool):  # JSON's true and false, said as the file has them
            raise ValueError(f"{str(value).lower()} is not a number.")
        try:
            number = float(_text(value))
        except ValueError:
            hint = " (use a dot as the decimal separator)" if "," in _text(value) else ""
            raise ValueError(f"{_text(value)!r} is not a number{hint}.") from None
        if not math.isfinite(number):
            raise ValueError(f"{_text(value)!r} is not a number.")
        if self.integer:
            if not number.is_integer():
                raise ValueError(f"{_text(value)!r} is not a whole number.")
            return int(number)
        return number

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("force_native_type"):
            return value  # None too: JSON's null, XLSX's empty cell
        if value is None:
            return ""
        return number_text(value) if isinstance(value, float) else str(value)


class BooleanCell(widgets.Widget):
    TRUE = frozenset({"true", "1", "yes", "y"})
    FALSE = frozenset({"false", "0", "no", "n"})

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> bool | None:
        if value in EMPTY:
            return None
        if isinstance(value, bool):
            return value
        text = _text(value).lower()
        if text.endswith(".0"):  # 1.0 from a spreadsheet
            text = text[:-2]
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValueError(f"{_text(value)!r} is not true or false.")

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("force_native_type"):
            return value
        return "" if value is None else ("true" if value else "false")


def _whole_number_text(text: str) -> str:
    """`text` as a whole number written without a fraction ("1.0", "1e0": "1"), or as it is."""
    if not PLAIN_NUMBER.fullmatch(text):  # float() also reads "1_0", "inf", " 1 "
        return text
    number = float(text)
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


class ChoiceCell(widgets.Widget):
    """A value from a model field's choices; accepts the value in any letter case."""

    def __init__(self, choices: type[models.Choices], integer: bool = False) -> None:
        super().__init__(coerce_to_string=True)
        self.integer = integer
        self.values = {str(value).lower(): value for value in choices.values}
        # Numbered choices (a security profile, phases) read "1.0" as 1, as a number
        # column does and as a JSON or XLSX cell holding 1.0 already was.
        self.numbered = all(isinstance(value, int) for value in choices.values)

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        if value in EMPTY:
            return None
        text = _text(value)
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        elif self.numbered and text.lower() not in self.values:
            text = _whole_number_text(text)  # "3.0": a CSV written from a float column
        try:
            return self.values[text.lower()]
        except KeyError:
            allowed = ", ".join(str(v) for v in self.values.values())
            raise ValueError(f"{text!r} is not one of {allowed}.") from None

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("force_native_type"):
            return value
        return "" if value is None else str(value)


class SecretCell(TextCell):
    """Write-only: an empty cell keeps the stored secret; a set secret shows as '(set)'."""

    # None, not "": the resource's saves_null_values=False then keeps the stored secret.
    def clean(  # type: ignore[override]  # a TextCell that may answer None, on purpose
        self, value: Any, row: Any = None, **kwargs: Any
    ) -> str | None:
        text = super().clean(value, row, **kwargs)
        return text or None

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "(set)" if value else ""


# Names a lookup compares an unknown one with for a "did you mean": each comparison is a
# SequenceMatcher; beyond this many names only a match up to case and spaces is offered.
SUGGEST_FROM = 2_000


class LookupCell(widgets.Widget):
    """A related object named by its natural key, looked up in a table loaded once."""

    def __init__(self, load: Callable[[], Mapping[str, models.Model]], describe: str) -> None:
        super().__init__(coerce_to_string=True)
        self.load = load
        self.describe = describe
        self.table: Mapping[str, models.Model] | None = None
        # Unknown name -> its message: a file names the same wrong one on many rows.
        self._unknown: dict[str, str] = {}

    def reset(self) -> None:
        self.table = None
        self._unknown = {}

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> models.Model | None:
        if value in EMPTY:
            return None
        if self.table is None:
            self.table = self.load()
        name = _text(value)
        try:
            return self.table[name]
        except KeyError:
            raise ValueError(self._no_such(name, self.table)) from None

    def _no_such(self, name: str, table: Mapping[str, models.Model]) -> str:
        """ "No location named 'X'.", with the name the file most likely meant: one that
        differs only in case or spaces, else (from a table of up to SUGGEST_FROM names) the
        closest one, as a typo would make it."""
        known = self._unknown.get(name)
        if known is not None:
            return known
        folded = " ".join(name.split()).casefold()
        meant = [key for key in table if " ".join(key.split()).casefold() == folded]
        if not meant and len(table) <= SUGGEST_FROM:
            meant = difflib.get_close_matches(name, list(table), n=1, cutoff=0.8)
        message = f"No {self.describe} named {name!r}."
        if meant:
            message = f"No {self.describe} named {name!r}; did you mean {meant[0]!r}?"
        self._unknown[name] = message
        return message

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "" if value is None else str(value)
