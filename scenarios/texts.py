"""Texts a scenario run keeps (its verdicts' messages) made safe to store and to export."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Control characters other than tab and line breaks: PostgreSQL stores no NUL (in text or
# jsonb), and XML 1.0 (the JUnit file) allows none of them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def storable(value: Any) -> Any:
    """`value` (JSON-like) with each control character in its strings shown as its escape
    (NUL as the four characters \\x00): a verdict's message may quote what a CSMS sent,
    and the run's row and its JUnit file must hold whatever that was."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def one_line(text: str) -> str:
    """`storable(text)` with its line breaks escaped too: a line of the command's output
    that quotes a CSMS (a step's message) must not draw on the terminal (ANSI escapes,
    a carriage return over the line) nor forge lines of its own in a CI log."""
    return str(storable(text)).replace("\r", "\\r").replace("\n", "\\n")


# A name that says its value is a secret (a variable, a URL's query parameter): its value
# is shown as HIDDEN in everything a run keeps and shows (result, JUnit, messages, pages).
_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|sig|credential|cookie", re.IGNORECASE)
HIDDEN = "********"


def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def shown_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """A run's variables as kept and shown: a secret one's value hidden (it still runs
    with the real value)."""
    return {name: HIDDEN if secret_name(name) else value for name, value in variables.items()}


# A secret value shorter than this is not looked for in messages: hiding every "ab" of
# every message would garble them, and no real password or token is that short.
SECRET_MIN_CHARS = 3


def hiding(variables: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A function that shows `value` (JSON-like) with the values of the secret variables
    among `variables` replaced by HIDDEN wherever they appear: a step's message quotes what
    it sent and what it expected (`idTag SECRTAG accepted`), and the result, the JUnit file,
    the pages and the command's output show those messages."""
    texts: set[str] = set()
    for name, value in variables.items():
        if secret_name(name) and value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            texts.add(text)
            texts.add(json.dumps(text)[1:-1])  # as JSON writes it inside a string
    secrets = sorted((t for t in texts if len(t) >= SECRET_MIN_CHARS), key=len, reverse=True)

    def hide(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                if secret in value:
                    value = value.replace(secret, HIDDEN)
            return value
        if isinstance(value, dict):
            return {k: hide(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [hide(v) for v in value]
        return value

    return hide


def shown_url(url: str) -> str:
    """A URL as a message may show it: without a password, nor a secret query value."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user_info, _, host = netloc.rpartition("@")
            user = user_info.partition(":")[0]
            netloc = f"{user}:{HIDDEN}@{host}" if ":" in user_info else f"{user}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(name, HIDDEN if secret_name(name) else value) for name, value in pairs],
                safe="*",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL one can take apart: shown not at all
        return "(a URL that cannot be parsed)"


def written_secrets(data: Any) -> dict[str, str]:
    """The secrets a scenario's text writes out itself rather than through a secret
    variable, named as such variables (for `hiding`): a URL's password and secret query
    values, the value of a member named as a secret (a trigger's `Authorization` header),
    and the `value` a ChangeConfiguration of AuthorizationKey sets. Verdicts never show
    them; the run's stored source, its page and its download must not either."""
    found: list[str] = []

    def add(text: str) -> None:
        if "${" not in text:  # a variable's name, hidden by its own value if secret
            found.append(text)

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if "@" in value or "?" in value:
                _url_secrets(value, add)
        elif isinstance(value, dict):
            sets_key = any(
                str(name).lower() == "key" and str(item).lower() == "authorizationkey"
                for name, item in value.items()
            )
            for name, item in value.items():
                folded = str(name).lower()
                # "key" alone names a configuration key (ChangeConfiguration), not a secret.
                if isinstance(item, str) and (
                    (secret_name(folded) and folded != "key") or (sets_key and folded == "value")
                ):
                    add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return {f"written_secret_{index}": text for index, text in enumerate(found)}


def _url_secrets(text: str, add: Callable[[str], None]) -> None:
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return
    if password:
        add(password)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if secret_name(name) and value:
            add(value)
