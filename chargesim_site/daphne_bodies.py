"""Request bodies go to Django whole, as Daphne received them.

Twisted's HTTP request (Daphne's is a subclass) parses a multipart/form-data POST itself,
into `request.args`, which Daphne never reads: it hands the raw body to the ASGI
application. A body Twisted cannot parse as multipart was answered with a bare 400 and
the connection closed, before Django saw the request, so the API could not say what was
wrong in its error body; a large upload was held parsed twice besides. Turning Twisted's
parsing off leaves it to Django (and the API), which parses what it needs once.
"""

from __future__ import annotations

from typing import Any


def leave_bodies_to_django() -> None:
    """Make Daphne's requests skip Twisted's form parsing. Idempotent."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server: nothing to change
        return
    if getattr(WebRequest, "bodies_left_to_django", False):
        return
    init = WebRequest.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # Read by Twisted's requestReceived (twisted.web.http.Request), set by its
        # __init__ from an argument that Daphne does not pass.
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest.bodies_left_to_django = True
