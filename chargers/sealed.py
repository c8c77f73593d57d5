"""Secrets the database keeps but nobody reads: sealed with a key derived from SECRET_KEY.

Used for the chargers' private keys (the certificate store of the security whitepaper): a
database dump, an export or the admin shows an opaque token, and only this process, which
knows SECRET_KEY, opens it. A token sealed under another SECRET_KEY does not open: the
caller treats it as no secret (the charger then asks for a new certificate).
"""

from __future__ import annotations

import base64

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_PURPOSE = b"chargesim charger private keys"


def _fernet() -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
        settings.SECRET_KEY.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secrets: dict[str, str]) -> str:
    """An opaque text token of the secrets ("" when there is none)."""
    if not any(secrets.values()):
        return ""
    return _fernet().encrypt(orjson.dumps(secrets)).decode("ascii")


def unseal(token: str) -> dict[str, str]:
    """The secrets of a token; {} when empty or sealed under another SECRET_KEY."""
    if not token:
        return {}
    try:
        data = orjson.loads(_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
