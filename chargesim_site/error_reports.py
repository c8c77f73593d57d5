"""What Django's error page (DEBUG on, the default) and error reports may show.

Django's filter hides a setting by its name only (KEY, PASS, TOKEN, ...), and with DEBUG on
it hides neither the POST fields nor the local variables it is told are sensitive ("your
site is not safe anyway"). Here DEBUG is on by default, and a page fails whenever the
database is away: to anyone, on the login page too. That page then showed REDIS_URL's
password (and CELERY_BROKER_URL's, CACHES', CHANNEL_LAYERS'), the AuthorizationKey of a
charger form being saved, and the database password in the connecting frame's locals
(PostgreSQL's connection string).
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from chargesim_site.env import redact_url

# libpq's connection string, a local of psycopg's connecting frame: "... password=x host=..."
# (a value may be quoted: 'a b').
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


class SecretsHiddenFilter(SafeExceptionReporterFilter):
    """Django's filter, active with DEBUG on too, which also hides a URL's password in any
    setting, header or variable, and any POST field or variable named as a secret (the
    charger's `authorization_key`, a `password`)."""

    def is_active(self, request: Any) -> bool:
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            if "@" in cleansed:
                cleansed = redact_url(cleansed)
            if "password" in cleansed:
                cleansed = _CONNINFO_PASSWORD.sub(rf"\1{self.cleansed_substitute}", cleansed)
        return cleansed

    def get_post_parameters(self, request: Any) -> Any:
        return self._named_secrets_hidden(super().get_post_parameters(request))

    def get_cleansed_multivaluedict(self, request: Any, multivaluedict: Any) -> Any:
        return self._named_secrets_hidden(
            super().get_cleansed_multivaluedict(request, multivaluedict)
        )

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        return [
            (name, self._cleansed_variable(name, value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _cleansed_variable(self, name: str, value: Any) -> Any:
        try:
            return self.cleanse_setting(name, value)
        except Exception:  # a container holding itself, one that cannot be read: unsearched
            return self.cleansed_substitute

    def _named_secrets_hidden(self, fields: Any) -> Any:
        names = [name for name in fields if self.hidden_settings.search(str(name))]
        if not names:
            return fields
        fields = fields.copy()
        for name in names:
            fields[name] = self.cleansed_substitute
        return fields
