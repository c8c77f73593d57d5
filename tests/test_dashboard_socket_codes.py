"""Why the server refuses a dashboard page's socket reaches a real browser's socket over
Daphne: as a close code the page acts on, not as an HTTP 403 it cannot tell from a
server that is down (the page then reconnected for ever after its user logged out)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import DemoSite, demo_site
from tests.web_session import log_in

PASSWORD = "pw-socket-codes-1"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[DemoSite]:
    with demo_site(tmp_path_factory.mktemp("codes"), PASSWORD, 1) as running:
        yield running


def close_code(site: DemoSite, path: str, session: str | None = None) -> int | None:
    """The close code a page's socket to `path` gets, sent nothing, before any message."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    headers = {"Origin": site.url}
    if session is not None:
        headers["Cookie"] = f"sessionid={session}"
    with connect(site.url.replace("http", "ws", 1) + path, additional_headers=headers) as ws:
        try:
            message = ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        raise AssertionError(f"a refused socket got a message: {message!r}")


@pytest.mark.parametrize("path", ["/ws/fleet/", "/ws/chargers/1/", "/ws/locations/"])
def test_a_page_without_a_login_learns_it_is_logged_out(site, path):
    assert close_code(site, path) == 4401


def test_a_page_of_a_charger_that_no_longer_exists_learns_so(site):
    session = log_in(site.url.removeprefix("http://"), PASSWORD)
    assert close_code(site, "/ws/chargers/999999/", session) == 4404
    assert close_code(site, "/ws/locations/999999/", session) == 4404
