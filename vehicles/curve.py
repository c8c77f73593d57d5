"""Validation of a charging curve: (SoC %, max kW) points, no Django models involved."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from fleet_io.cells import number_text

#: Points in one curve (a text curve is also bounded by the cell size of an import).
MAX_POINTS = 200


class CurveError(ValueError):
    pass


def parse_curve(raw: object) -> list[tuple[float, float]]:
    """Normalise and check a curve; raise CurveError with a message a person can act on.

    Accepts a list of pairs ([[0, 50], [80, 20]]) or of dicts ({"soc": 0, "kw": 50}), or the
    compact text form "0:50 80:20" (also used by the CSV import).
    """
    if isinstance(raw, str):
        raw = _parse_text(raw)
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise CurveError("The charging curve must be a list of (SoC %, max kW) points.")
    if len(raw) > MAX_POINTS:
        raise CurveError(f"{len(raw):,} points; a charging curve has at most {MAX_POINTS}.")
    points: list[tuple[float, float]] = []
    for index, item in enumerate(raw, start=1):
        soc, kw = _point(item, index)
        if not 0 <= soc <= 100:
            raise CurveError(f"Point {index}: SoC {soc:g} % is outside 0–100.")
        if kw < 0:
            raise CurveError(f"Point {index}: power {kw:g} kW is negative.")
        if kw == 0:
            # The car's power falls to nothing there and it sits below its target, plugged
            # in, for ever; it stops at its target SoC by itself, wherever the curve ends.
            raise CurveError(
                f"Point {index}: 0 kW at {soc:g} % SoC would stop a car charging at "
                f"{soc:g} %, and it would never reach a higher target. Give every point "
                "more than 0 kW (a car stops at its target SoC by itself)."
            )
        if points and soc <= points[-1][0]:
            raise CurveError(
                f"Point {index}: SoC {soc:g} % does not increase "
                f"(the point before is at {points[-1][0]:g} %)."
            )
        points.append((soc, kw))
    if len(points) < 2:
        raise CurveError("The charging curve needs at least two points.")
    return points


def format_curve(points: Iterable[Sequence[float]]) -> str:
    # Every digit: the text is parsed back (an export, the admin's curve field).
    return " ".join(f"{number_text(soc)}:{number_text(kw)}" for soc, kw in points)


def _parse_text(text: str) -> list[tuple[float, float]]:
    pairs = []
    for index, token in enumerate(text.replace(",", " ").replace(";", " ").split(), start=1):
        soc, sep, kw = token.partition(":")
        if not sep:
            raise CurveError(f"Point {index}: {token!r} is not of the form SoC:kW (e.g. 80:50).")
        pairs.append(_point((soc, kw), index))
    return pairs


def _point(item: object, index: int) -> tuple[float, float]:
    if isinstance(item, dict):
        item = (item.get("soc"), item.get("kw"))
    if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 2:
        raise CurveError(f"Point {index}: expected a pair (SoC %, max kW), got {item!r}.")
    try:
        soc, kw = float(item[0]), float(item[1])
    except (TypeError, ValueError):
        raise CurveError(f"Point {index}: {item!r} is not a pair of numbers.") from None
    if not (math.isfinite(soc) and math.isfinite(kw)):  # nan, inf, -inf
        raise CurveError(f"Point {index}: {item!r} is not a pair of numbers.")
    return soc, kw
