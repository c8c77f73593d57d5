"""API tokens: what a script, a pipeline or an agent authenticates with.

Only a SHA-256 digest of each token is stored. The token is a 256-bit random secret, so a
fast hash is enough (a slow password hash protects guessable secrets; this one is not), and
the digest can be looked up by an index instead of comparing every row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Tokens start with this, so that a secret scanner (or a person) recognises one.
TOKEN_PREFIX = "csim_"
# How much of a token the admin and `apitoken list` show: enough to tell tokens apart.
SHOWN_LENGTH = len(TOKEN_PREFIX) + 8
# `last_used` is written at most this often per token: not a write for every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
INVALID_TOKEN = "The API token is not valid or was revoked."


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenManager(models.Manager["ApiToken"]):
    def issue(self, user: Any, name: str, expires: datetime | None = None) -> tuple[ApiToken, str]:
        """A new token for `user` (refused after `expires`; None: never): the saved row, and
        the token itself, which exists only in the caller's hands from now on."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = self.create(
            user=user,
            name=name,
            prefix=token[:SHOWN_LENGTH],
            digest=digest_of(token),
            expires=expires,
        )
        return row, token

    def usable(self) -> models.QuerySet[ApiToken]:
        """Tokens neither revoked nor expired (whatever their users)."""
        return self.filter(
            Q(expires__isnull=True) | Q(expires__gt=timezone.now()), revoked__isnull=True
        )

    def refusal(self, token: str) -> str:
        """Why `token` is refused (`authenticate` gave None), in words for its holder: one
        whose user was deactivated or that expired says so (its holder asks an
        administrator, or makes a new one), any other is not valid or was revoked."""
        row = (
            self.select_related("user")
            .filter(digest=digest_of(token), revoked__isnull=True)
            .first()
        )
        if row is None:
            return INVALID_TOKEN
        if not row.user.is_active:
            return (
                "The API token's user is deactivated: an administrator can activate them "
                "again, or make a token for an active user."
            )
        if row.expired:
            assert row.expires is not None
            return (
                f"The API token expired at {row.expires:%Y-%m-%d %H:%M} UTC: make a new one "
                "(the admin's API tokens page, or manage.py apitoken create)."
            )
        return INVALID_TOKEN

    def authenticate(self, token: str) -> ApiToken | None:
        """The live token `token` is (not revoked, not expired, its user active), or None."""
        row = (
            self.usable()
            .select_related("user")
            .filter(digest=digest_of(token), user__is_active=True)
            .first()
        )
        if row is not None:
            row.touch()
        return row


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. “CI pipeline”.")
    prefix = models.CharField(
        max_length=SHOWN_LENGTH, editable=False, help_text="The token's first characters."
    )
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the token was revoked."
    )
    expires = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The token is refused from this time on. Empty: it never expires.",
    )

    objects: ClassVar[ApiTokenManager] = ApiTokenManager()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        """Not revoked (an expired token is not revoked: it only stopped working)."""
        return self.revoked is None

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    def revoke(self) -> None:
        if self.revoked is None:
            self.revoked = timezone.now()
            type(self).objects.filter(pk=self.pk, revoked__isnull=True).update(revoked=self.revoked)

    def touch(self) -> None:
        now = timezone.now()
        if self.last_used is None or now - self.last_used >= LAST_USED_RESOLUTION:
            self.last_used = now
            type(self).objects.filter(pk=self.pk).update(last_used=now)
