from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from simulator.contract import config_keys, overrides

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


# The user info of a URL ("//user:password@"), shown masked in a message about the URL.
_USER_INFO = re.compile(r"(?<=//)[^/?#]*@")


def validate_csms_url(value: str) -> None:
    if any(c.isspace() for c in value):
        # urlsplit takes "ws://csms 9000/ocpp" (host "csms 9000"): no charger reaches it.
        raise ValidationError("The CSMS URL must not hold spaces.")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        # The message may reach an import report or an API body: no password in it.
        shown = _USER_INFO.sub("***@", value)
        raise ValidationError("%(value)s is not a valid URL.", params={"value": shown}) from None
    if "@" in parts.netloc:
        # A password here would be shown wherever the URL is: pages, exports, the API.
        raise ValidationError(
            "The CSMS URL must not hold a user name or password. Set the charger's "
            "AuthorizationKey and security profile 1 or 2 instead: the charger then sends its "
            "id and that key as HTTP Basic credentials, and the key is never shown."
        )
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


def validate_answer_overrides(value: object) -> None:
    """A charger's stored answer overrides: a list of rules, checked as the engine checks
    a scenario's (`simulator.contract.overrides`), in the same words."""
    try:
        overrides.check_rules(value)
    except ValueError as exc:
        # As it is: Django formats a message only when it has params, so a "%" from the
        # rule (a status '50%') is shown as typed, not doubled.
        raise ValidationError(str(exc)) from None


def validate_authorization_key(value: str) -> None:
    """An AuthorizationKey an operator sets (admin, API, import), by the rule the charger
    applies to ChangeConfiguration (`config_keys`, the 1.6 security whitepaper: 16 to 20
    bytes written in hex), so that the fleet cannot hold a key its own CSMS could not set.
    Empty ("no key") is the caller's to allow. The message never quotes the key."""
    try:
        config_keys.normalise("AuthorizationKey", value)
    except config_keys.InvalidValue as exc:
        raise ValidationError(str(exc), code="invalid") from None
