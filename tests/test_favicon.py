"""Every page's /favicon.ico request is answered (issue 19): no 404 line in the log."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_favicon_ico_is_served_at_the_site_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/")
    body = b"".join(response.streaming_content)
    response.close()
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO header, not an HTML error page


def test_pages_link_the_icon_and_the_linked_svg_is_served(admin_client_logged_in):
    page = admin_client_logged_in.get(reverse("chargers:home")).content.decode()
    assert '<link rel="icon" href="/favicon.ico"' in page
    svg = admin_client_logged_in.get("/favicon.svg")
    assert svg.status_code == 200
    assert svg["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(svg.streaming_content)
    svg.close()
