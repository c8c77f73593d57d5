"""Django's error page (DEBUG on, the default) when the database is away: it shows the
settings, the request and each frame's variables, to anyone who asked for a page, and
none of the secrets among them (chargesim_site/error_reports.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.database_away import unreachable_database

DATABASE_PASSWORD = "db-pa55-never-shown"
REDIS_PASSWORD = "redis-pa55-never-shown"
REDIS_URL = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:6379/3"
KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def down(django_db_blocker: Any, settings: Any) -> Iterator[Client]:
    settings.DEBUG = True
    # What a scaled-out web tier's settings make of REDIS_URL.
    settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = REDIS_URL
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    with django_db_blocker.unblock(), unreachable_database(DATABASE_PASSWORD):
        client = Client(raise_request_exception=False)
        client.cookies["sessionid"] = "a" * 32  # the session is read from the database
        yield client


def assert_error_page_without_secrets(response: Any) -> None:
    text = response.content.decode()
    assert response.status_code == 500
    assert "OperationalError" in text and "Settings" in text  # still the page that helps
    for secret in (REDIS_PASSWORD, DATABASE_PASSWORD, KEY):
        assert secret not in text, text[max(text.find(secret) - 300, 0) :][:600]
    assert "redis://default:***@127.0.0.1:6379/3" in text


@pytest.mark.parametrize("path", ["/accounts/login/", "/", "/admin/"])
def test_a_page_that_fails_without_the_database_shows_no_url_password(down, path):
    assert_error_page_without_secrets(down.get(path))


def test_a_charger_form_that_fails_to_save_shows_not_its_authorization_key(down):
    form = {"charge_point_id": "ERR-1", "security_profile": "1", "authorization_key": KEY}
    assert_error_page_without_secrets(down.post("/admin/chargers/charger/add/", form))
