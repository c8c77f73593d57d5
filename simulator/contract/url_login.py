"""A URL's user name and password as an HTTP Basic login.

urllib cannot open `http://user:pw@host/` (it takes "user:pw@host" for the host name):
the login goes in an Authorization header and the URL without it. Shared by the engine's
file transfers (firmware, diagnostics) and the scenarios' `trigger` step.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit


def basic_login(url: str) -> dict[str, str]:
    """The Authorization header of the URL's user name and password; {} without them."""
    parts = urlsplit(url)
    if not parts.username:
        return {}
    token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def without_login(url: str) -> str:
    """The URL without its user name and password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
