"""Secrets the database keeps but nobody reads: sealed with a key derived from SECRET_KEY.

Used for the chargers' private keys (the certificate store of the security whitepaper) and
their AuthorizationKeys (`SealedTextField`): a database dump, an export or the admin shows
an opaque token, and only a process that knows SECRET_KEY opens it. A token sealed under
another SECRET_KEY does not open: the caller treats it as no secret (the charger then asks
for a new certificate; an AuthorizationKey must be set again).
"""

from __future__ import annotations

import base64
import functools
import logging
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models

log = logging.getLogger(__name__)

_PURPOSE = b"chargesim charger private keys"
# One key per use: a token of one kind never opens as the other.
_TEXT_PURPOSE = b"chargesim sealed text"
# What a sealed column's value starts with: it tells a token from a value stored before the
# column was sealed (read as it is) and from what a user typed (keys are shorter, and hex).
SEALED_PREFIX = "sealed:1:"


def _fernet(purpose: bytes = _PURPOSE) -> Fernet:
    return _fernet_for(settings.SECRET_KEY, purpose)


@functools.lru_cache(maxsize=4)
def _fernet_for(secret_key: str, purpose: bytes) -> Fernet:
    # Cached: a fleet of 10,000 chargers opens 10,000 keys at load, and the derivation
    # would be most of each. Keyed by SECRET_KEY, so that a test (or a deployment's
    # settings) changing it gets the other key.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret_key.encode()
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


def seal_text(text: str) -> str:
    """`text` as a sealed column holds it ("" stays "": no secret is no token)."""
    if not text or text.startswith(SEALED_PREFIX):
        return text
    return SEALED_PREFIX + _fernet(_TEXT_PURPOSE).encrypt(text.encode()).decode("ascii")


def open_text(stored: str) -> str | None:
    """The text of what a sealed column holds; None when it was sealed under another
    SECRET_KEY. A value without the prefix (stored before the column was sealed) is the
    text itself."""
    if not stored.startswith(SEALED_PREFIX):
        return stored
    try:
        return _fernet(_TEXT_PURPOSE).decrypt(stored[len(SEALED_PREFIX) :].encode()).decode()
    except (InvalidToken, ValueError):
        return None


class SealedTextField(models.TextField):
    """A secret text column: the database holds it sealed under SECRET_KEY, Python code sees
    the text. Its length limit is the text's (`max_length` of the text, not the token).

    Only "" can be looked up (`filter(field="")`): a token differs at every sealing. A
    fixture or `dumpdata` holds the token, not the text. A token that no longer opens (the
    SECRET_KEY changed) reads as "", with a warning: the secret must be set again.
    """

    def __init__(self, *args: Any, text_max_length: int | None = None, **kwargs: Any) -> None:
        self.text_max_length = text_max_length
        super().__init__(*args, **kwargs)
        if text_max_length is not None:
            self.validators.append(MaxLengthValidator(text_max_length))

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.text_max_length is not None:
            kwargs["text_max_length"] = self.text_max_length
        return name, path, args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else self._open(value)

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        return self._open(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return seal_text(value) if isinstance(value, str) else value

    def value_to_string(self, obj: models.Model) -> str:
        return seal_text(self.value_from_object(obj) or "")

    def _open(self, value: str) -> str:
        text = open_text(value)
        if text is None:
            log.warning(
                "a sealed %s could not be opened (was SECRET_KEY changed?): read as empty; "
                "set it again",
                self.verbose_name,
            )
            return ""
        return text
