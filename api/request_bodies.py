"""A JSON body comes as JSON, each key of an object once.

ninja parses any request body as JSON, whatever its Content-Type says: a form post
(`curl -d` sends application/x-www-form-urlencoded) or text/plain that happened to hold
JSON created a charger. An operation that takes a JSON body answers 415 for a body sent
as something else; a body without a Content-Type is read as JSON, and an empty body is no
body, whatever its type (`curl -X POST .../confirm`).

A key given twice in one object (`{"enabled": true, "enabled": false}`) is refused with a
422 naming it: JSON parsers keep the last, and a script whose body was assembled from two
sources never learnt which of its values was used (RFC 8259: names SHOULD be unique).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja.errors import ValidationError as NinjaValidationError
from ninja.operation import Operation

from api.errors import ApiError

JSON_TYPES = ("application/json",)


def takes_json(operation: Operation) -> bool:
    return any(model.__ninja_param_source__ == "body" for model in operation.models)


def is_json(content_type: str) -> bool:
    """application/json, or a type of the JSON family (application/merge-patch+json)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind in JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json"))


def refuse_other_content_types(operation: Operation) -> None:
    """Make `operation`, if it takes a JSON body, refuse a body of another type (415).
    Idempotent."""
    if not takes_json(operation) or getattr(operation, "content_type_checked", False):
        return
    get_values = operation._get_values

    def checked(
        request: HttpRequest, path_params: Any, temporal_response: HttpResponse
    ) -> dict[str, Any]:
        content_type = request.META.get("CONTENT_TYPE", "")
        if request.body and content_type and not is_json(content_type):
            kind = content_type.split(";", 1)[0].strip()
            raise ApiError(
                415,
                f"The body must be JSON, sent with 'Content-Type: application/json' (it "
                f"came as {kind!r}).",
            )
        if request.body:
            refuse_duplicate_keys(request.body)
        return get_values(request, path_params, temporal_response)

    operation._get_values = checked  # type: ignore[method-assign]
    operation.content_type_checked = True  # type: ignore[attr-defined]


class Pairs(list[tuple[str, Any]]):
    """A JSON object as its key-value pairs in order, duplicates kept."""


KeyPath = tuple[str | int, ...]


def load_pairs(text: bytes | str) -> Any:
    """The JSON text with each object as `Pairs`; ValueError when it is not JSON."""
    return json.loads(text, object_pairs_hook=Pairs)


def duplicate_keys(tree: Any) -> dict[KeyPath, int]:
    """Each key given more than once in one of `tree`'s objects (its path from the top,
    `("items", 2, "location")` inside a list) and how many times, each path once."""
    return dict(_duplicates(tree, ()))


def refuse_duplicate_keys(body: bytes) -> None:
    """Raise a 422 naming every key given more than once in one of the body's objects
    (`items.2.location` inside a list); a body that is not JSON is left to ninja's 400."""
    try:
        tree = load_pairs(body)
    except ValueError:
        return
    problems = [
        {
            "loc": ("body", "payload", *path),
            "msg": f"Given {times} times in one object: give each key once.",
            "type": "duplicate_key",
        }
        for path, times in duplicate_keys(tree).items()
    ]
    if problems:
        raise NinjaValidationError(problems)


def _duplicates(value: Any, path: KeyPath) -> list[tuple[KeyPath, int]]:
    found: list[tuple[KeyPath, int]] = []
    if isinstance(value, Pairs):
        counts = Counter(key for key, _ in value)
        found += [((*path, key), times) for key, times in counts.items() if times > 1]
        for key, inner in value:
            found += _duplicates(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _duplicates(inner, (*path, index))
    return found
