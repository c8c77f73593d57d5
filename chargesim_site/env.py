"""Small strict readers for settings that come from environment variables.

Each reader names the variable in its error, so a typo in a deployment fails at
start-up with a message a person can act on instead of a silent default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from dj_database_url import DBConfig

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_HEADER_NAME = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
_HEADER_VALUE = re.compile(r"[A-Za-z0-9.:/_-]+")


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(name, default)


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off."
    )


def env_int(
    name: str,
    default: int,
    environ: Mapping[str, str] | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    _check_range(name, raw, value, minimum, maximum)
    return value


def env_float(
    name: str,
    default: float,
    environ: Mapping[str, str] | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value != value:  # NaN
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.")
    _check_range(name, raw, value, minimum, maximum)
    return value


def env_list(name: str, default: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_proxy_ssl_header(
    name: str, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """A header a TLS-terminating proxy sets, as `Header-Name=value` (e.g.
    `X-Forwarded-Proto=https`), in Django's form ("HTTP_X_FORWARDED_PROTO", "https").

    Unset or empty: None (no proxy is trusted). Only set it behind a proxy that always
    sets or strips that header: otherwise a client could claim HTTPS for itself.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = (part.strip() for part in raw.partition("="))
    if not _HEADER_NAME.fullmatch(header) or not _HEADER_VALUE.fullmatch(value):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a header and its value: use e.g. X-Forwarded-Proto=https."
        )
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_database(name: str, default: str, environ: Mapping[str, str] | None = None) -> DBConfig:
    """Parse a database URL (sqlite:///path or postgres://...) into Django's form."""
    import dj_database_url

    environ = os.environ if environ is None else environ
    raw = environ.get(name, default)
    scheme = raw.split(":", 1)[0].lower()
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"{name}={redact_url(raw)!r}: unsupported scheme {scheme!r}; "
            "use sqlite:///path/to/file.sqlite3 or postgres://user@host:port/dbname."
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=0)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name}={redact_url(raw)!r} is not a database URL: {exc}"
        ) from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}={redact_url(raw)!r} names no database.")
    if scheme != "sqlite":
        options = config.setdefault("OPTIONS", {})
        for key, value in POSTGRES_TIMEOUTS.items():
            options.setdefault(key, value)  # the URL's own (?keepalives_idle=...) win
    return config


# A PostgreSQL connection whose peer is gone without a word (a network partition, a database
# host powered off) would otherwise wait for ever: a worker's writer with it, and with the
# writer every checkpoint and outbox write. libpq's connect timeout, keepalives and TCP user
# timeout end it within about a minute, as an OperationalError the engine retries.
POSTGRES_TIMEOUTS: dict[str, int] = {
    "connect_timeout": 10,  # s, for the whole connection set-up
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # ms: data unacknowledged this long ends it too
}


def env_redis_url(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"{name}={redact_url(raw)!r} is not a Redis URL: use redis://host:port/db."
        )
    return raw


def _check_range(
    name: str, raw: str, value: float, minimum: float | None, maximum: float | None
) -> None:
    # Said as the user wrote it: the value read made "-5" "-5.0" and "1e999" "inf".
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} is below the minimum {_plain(minimum)}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} is above the maximum {_plain(maximum)}.")


def _plain(bound: float) -> str:
    """A bound as a person writes it: 0 and 100000, not 0.0 or 1e+05."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def redact_url(url: str) -> str:
    """Hide a password in a URL so that an error message never leaks it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
