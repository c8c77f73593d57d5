"""A person's admin login over real HTTP, for tests that then open the dashboard's sockets
with its session cookie."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request


def log_in(host: str, password: str) -> str:
    """Log in as "admin" through the admin form like a person; return the session cookie.
    `host` is "127.0.0.1:<port>"."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"http://{host}/admin/login/", timeout=10).read().decode()
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found is not None, "no CSRF token on the login page"
    token = found.group(1)
    form = urllib.parse.urlencode(
        {"username": "admin", "password": password, "csrfmiddlewaretoken": token, "next": "/"}
    ).encode()
    request = urllib.request.Request(
        f"http://{host}/admin/login/", data=form, headers={"Referer": f"http://{host}/"}
    )
    fleet = opener.open(request, timeout=10).read().decode()
    assert "/ws/fleet/" in fleet  # landed on the dashboard
    return next(c.value for c in jar if c.name == "sessionid" and c.value is not None)
