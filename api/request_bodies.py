"""A JSON body comes as JSON: another Content-Type is refused (415), not parsed as JSON.

ninja parses any request body as JSON, whatever its Content-Type says: a form post
(`curl -d` sends application/x-www-form-urlencoded) or text/plain that happened to hold
JSON created a charger. An operation that takes a JSON body answers 415 for a body sent
as something else; a body without a Content-Type is read as JSON, and an empty body is no
body, whatever its type (`curl -X POST .../confirm`).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
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
        return get_values(request, path_params, temporal_response)

    operation._get_values = checked  # type: ignore[method-assign]
    operation.content_type_checked = True  # type: ignore[attr-defined]
