"""The import formats (docs/import-formats.md) as a page of the app: the admin's import
form links to it, and to the sample files it names, and both open."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from django.urls import reverse

from tests.cast import make_user

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parent.parent / "docs"


def links(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'<a href="([^"]+)"', html)]


@pytest.mark.parametrize("resource", ["chargers_charger", "locations_location"])
def test_the_import_form_links_to_the_formats_page_which_opens(admin_client_logged_in, resource):
    form = admin_client_logged_in.get(reverse(f"admin:{resource}_import")).content.decode()
    assert "<code>docs/import-formats.md</code>" not in form
    (href,) = [h for h in links(form) if h == reverse("imports:formats")]

    page = admin_client_logged_in.get(href)

    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Importing and exporting a fleet</h1>" in html
    assert "<table>" in html  # the document's tables, rendered
    assert html.count("<h1") == 1


def test_the_page_is_the_document_as_it_is_now():
    """One source: the page is rendered from the file, so a heading of the file is on it."""
    from fleet_io.formats_doc import import_formats_html

    headings = re.findall(r"^## (.+)$", (DOCS / "import-formats.md").read_text(), re.M)
    html = import_formats_html()
    assert headings
    for heading in headings:
        assert re.search(r"<h2>[^<]*" + re.escape(heading.split("`")[0].strip()), html), heading


def test_the_sample_files_it_links_to_download(admin_client_logged_in):
    page = admin_client_logged_in.get(reverse("imports:formats")).content.decode()
    samples = [h for h in links(page) if h.startswith("samples/")]
    assert samples == [
        "samples/locations.csv",
        "samples/vehicles.csv",
        "samples/chargers.csv",
        "samples/chargers.json",
    ]
    for href in samples:
        response = admin_client_logged_in.get(reverse("imports:formats") + href)
        assert response.status_code == 200, href
        assert b"".join(response.streaming_content) == (DOCS / href).read_bytes()
    for name in ("nothing.csv", "..%2Fimport-formats.md", "%2E%2E"):
        response = admin_client_logged_in.get(reverse("imports:formats") + "samples/" + name)
        assert response.status_code == 404, name


def test_a_user_who_is_not_staff_may_read_it_and_a_visitor_is_asked_to_log_in(client):
    response = client.get(reverse("imports:formats"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    client.force_login(make_user("reader"))
    assert client.get(reverse("imports:formats")).status_code == 200
