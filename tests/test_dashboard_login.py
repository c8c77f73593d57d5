"""The dashboard's own login and logout: a user who is not staff logs in, watches the fleet
and cannot drive it nor reach the admin, whose login stays for staff only."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.cast import ADMIN_PASSWORD, make_charger, make_location, make_superuser, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "pw-user-1"  # make_user's


def csrf_of(response) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def log_in(client: Client, username: str, password: str, next_path: str = "/"):
    form = client.get(f"{reverse('login')}?next={next_path}")
    return client.post(
        reverse("login"),
        {
            "username": username,
            "password": password,
            "next": next_path,
            "csrfmiddlewaretoken": csrf_of(form),
        },
    )


@pytest.fixture
def watcher():
    return make_user("watcher", "view_charger", "view_location")


def test_a_dashboard_page_sends_an_anonymous_visitor_to_the_dashboards_login(client):
    response = client.get(reverse("chargers:locations"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/locations/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/static/dashboard/dashboard.css"' in html  # the dashboard's look
    assert 'name="next" value="/locations/"' in html
    assert "logout" not in html  # nobody to log out, and no nav to pages that need a login


def test_a_user_who_is_not_staff_logs_in_and_watches_every_page(watcher):
    client = Client(enforce_csrf_checks=True)
    site = make_location("Depot")
    charger = make_charger("CP-W", location=site)

    response = log_in(client, "watcher", PASSWORD, "/locations/")

    assert response.status_code == 302
    assert response["Location"] == "/locations/"
    for url in (
        reverse("chargers:home"),
        reverse("chargers:locations"),
        reverse("chargers:charger", args=[charger.pk]),
        reverse("chargers:location", args=[site.pk]),
        reverse("scenarios:runs"),
    ):
        assert client.get(url).status_code == 200, url
    fleet = client.get(reverse("chargers:home"))
    assert not fleet.context["fleet"].can_change  # no bulk actions
    assert 'id="bulk"' not in fleet.content.decode()
    assert "Set-up" not in fleet.content.decode()  # the admin's link is for staff


def test_a_user_who_is_not_staff_cannot_drive_through_the_api_with_the_session(watcher):
    client = Client(enforce_csrf_checks=True)
    make_charger("CP-W")
    log_in(client, "watcher", PASSWORD)
    token = csrf_of(client.get(reverse("chargers:home")))

    response = client.post(
        "/api/v1/chargers/CP-W/actions/connect",
        "{}",
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert response.status_code == 403
    assert "change_charger" in response.json()["detail"]


def test_a_user_who_is_not_staff_cannot_reach_the_admin(watcher):
    client = Client()
    log_in(client, "watcher", PASSWORD)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    # And the admin's own login still refuses them.
    client.logout()
    refused = client.post(reverse("admin:login"), {"username": "watcher", "password": PASSWORD})
    assert refused.status_code == 200
    assert "staff account" in refused.content.decode()


def test_staff_log_in_on_the_dashboards_page_too_and_reach_the_admin():
    make_superuser()
    client = Client()
    assert log_in(client, "admin", ADMIN_PASSWORD)["Location"] == "/"
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_wrong_password_is_refused_on_the_login_page(watcher):
    client = Client()

    response = log_in(client, "watcher", "not-the-password")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert client.get(reverse("chargers:home")).status_code == 302


def test_the_dashboards_logout_is_a_post_with_the_csrf_token(watcher):
    client = Client(enforce_csrf_checks=True)
    log_in(client, "watcher", PASSWORD)
    page = client.get(reverse("chargers:home"))
    assert f'action="{reverse("logout")}"' in page.content.decode()

    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 403  # no CSRF token
    assert client.get(reverse("chargers:home")).status_code == 200  # still logged in

    response = client.post(reverse("logout"), {"csrfmiddlewaretoken": csrf_of(page)})

    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("chargers:home")).status_code == 302


def test_the_charger_pages_controls_are_served_disabled_to_a_user_who_only_watches(watcher):
    """Enabled as served and disabled only by the socket's first message, they looked
    usable for a moment to someone who may not use them."""
    charger = make_charger("CP-D", location=make_location("Depot"))
    url = reverse("chargers:charger", args=[charger.pk])

    def buttons(username: str, password: str) -> list[str]:
        client = Client()
        assert client.login(username=username, password=password)
        html = client.get(url).content.decode()
        forms = re.findall(r"<form[^>]*data-command[^>]*>.*?</form>", html, re.DOTALL)
        return re.findall(r"<button[^>]*data-command[^>]*>", html) + [
            tag for form in forms for tag in re.findall(r"<button[^>]*>", form)
        ]

    watched = buttons("watcher", PASSWORD)
    assert len(watched) >= 9 and all(" disabled" in tag for tag in watched)
    make_superuser()
    driven = buttons("admin", ADMIN_PASSWORD)
    assert len(driven) == len(watched) and not any(" disabled" in tag for tag in driven)
