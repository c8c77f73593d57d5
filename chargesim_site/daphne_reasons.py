"""Every status line names its status.

Daphne hands Twisted the status code of an ASGI response (ASGI has no reason phrase), and
Twisted writes the phrase from its own table, which lacks some the API answers: 422 (its
"The request is not valid.") and 429 (too many scenario runs) went out as
`HTTP/1.1 422 Unknown Status`, and `requests`' raise_for_status() said "422 Client Error:
Unknown Status" in a CI job's log. The phrases Python's http.HTTPStatus knows fill the gaps.
"""

from __future__ import annotations

from http import HTTPStatus


def name_every_status() -> None:
    """Add the reason phrases Twisted's table lacks. Idempotent; one it has is kept."""
    try:
        from twisted.web import http
    except ImportError:  # served by another ASGI server: nothing to change
        return
    for status in HTTPStatus:
        http.RESPONSES.setdefault(status.value, status.phrase.encode("ascii"))
