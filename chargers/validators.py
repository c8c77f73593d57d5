from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

CHARGE_POINT_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,48}$")


def validate_charge_point_id(value: str) -> None:
    if not value:
        raise ValidationError("A charge point id is required.")
    if len(value) > 48:
        raise ValidationError(
            "%(value)s is %(length)d characters long; at most 48 are allowed.",
            params={"value": value[:60], "length": len(value)},
        )
    if not CHARGE_POINT_ID_RE.match(value):
        bad = sorted({ch for ch in value if not re.match(r"[A-Za-z0-9._~-]", ch)})
        raise ValidationError(
            "%(value)s contains characters that are not URL-safe (%(bad)s): use letters, "
            "digits and . _ ~ - only.",
            params={"value": value, "bad": " ".join(repr(ch) for ch in bad)},
        )


def validate_csms_url(value: str) -> None:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValidationError("%(value)s is not a valid URL.", params={"value": value}) from None
    if parts.scheme not in ("ws", "wss"):
        raise ValidationError(
            "The CSMS URL must start with ws:// or wss://, not %(scheme)s.",
            params={"scheme": f"{parts.scheme}://" if parts.scheme else value},
        )
    if not parts.hostname:
        raise ValidationError("The CSMS URL %(value)s names no host.", params={"value": value})
    if parts.query or parts.fragment:
        raise ValidationError(
            "The CSMS URL must not have a query or fragment: the charge point id is appended "
            "as the last path segment."
        )
    if port == 0:
        raise ValidationError("The CSMS URL has port 0.")
