"""The API's foundation: tokens and sessions, the one error body, the OpenAPI document and
the docs page, the token admin and `manage.py apitoken`."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import path, reverse
from django.utils import timezone
from ninja import NinjaAPI, Query, Router, Schema
from openapi_spec_validator import validate

from api import errors
from api.auth import require, session_auth, token_auth
from api.models import ApiToken
from chargesim_site import urls as site_urls
from tests.api_client import bearer, user_with_token
from tests.cast import make_superuser, make_user

pytestmark = pytest.mark.django_db

WHOAMI = "/api/v1/whoami"


def assert_error_body(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "errors"} and body["detail"]
    return body


# A probe API with the real auth classes and error handlers, for what the foundation's one
# endpoint cannot show: an unsafe method, a permission, a typed parameter.
probe = NinjaAPI(urls_namespace="api-probe", auth=[token_auth, session_auth])
errors.install(probe)
probe_router = Router()


@probe_router.post("/write")
@require("chargers.change_charger")
def probe_write(request, count: int) -> dict[str, int]:
    return {"count": count}


class Window(Schema):
    count: int


@probe_router.get("/read")
@require("chargers.view_charger")
async def probe_read(request, window: Query[Window]) -> dict[str, int]:
    # async, and its annotations are strings (`from __future__ import annotations`) naming
    # this module's types: ninja must still resolve them through require()'s wrapper.
    return {"count": window.count}


probe.add_router("", probe_router)
urlpatterns = [path("probe/", probe.urls), *site_urls.urlpatterns]


def test_anonymous_callers_get_401_in_the_error_body(client):
    body = assert_error_body(client.get(WHOAMI), 401)
    assert "Bearer" in body["detail"]
    assert client.get(WHOAMI)["WWW-Authenticate"].startswith("Bearer")


def test_a_token_authenticates_as_its_user(client):
    _, token = user_with_token("ci", "view_charger")
    response = client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 200
    me = response.json()
    assert me["username"] == "ci"
    assert me["via"] == "token"
    assert me["token"]["prefix"] == token[: len(me["token"]["prefix"])]
    assert me["permissions"] == ["chargers.view_charger"]
    assert ApiToken.objects.get().last_used is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer csim_not-a-real-token", "Token csim_whatever", "Bearer ", "csim_no-scheme"],
)
def test_a_wrong_or_malformed_token_is_401(client, header):
    user_with_token("ci")
    assert_error_body(client.get(WHOAMI, HTTP_AUTHORIZATION=header), 401)


def test_a_revoked_token_is_401_even_with_a_logged_in_session(client):
    user, token = user_with_token("ci")
    client.force_login(user)
    ApiToken.objects.get().revoke()
    body = assert_error_body(client.get(WHOAMI, headers=bearer(token)), 401)
    assert "revoked" in body["detail"]
    assert token not in body["detail"]


def test_an_inactive_users_token_is_401_saying_so(client):
    """It said "not valid or was revoked": its holder looked for a revocation."""
    user, token = user_with_token("ci")
    user.is_active = False
    user.save()
    response = client.get(WHOAMI, headers=bearer(token))
    body = assert_error_body(response, 401)
    assert "user is deactivated" in body["detail"] and token not in body["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="ChargeSim API", error="invalid_token"'


def test_a_refused_token_says_invalid_token_in_its_challenge(client):
    """RFC 6750 3.1: a token that was sent and refused is `invalid_token`; a request that
    sent none gets the bare challenge."""
    refused = client.get(WHOAMI, headers=bearer("csim_not-a-real-token"))
    assert refused["WWW-Authenticate"] == 'Bearer realm="ChargeSim API", error="invalid_token"'
    assert client.get(WHOAMI)["WWW-Authenticate"] == 'Bearer realm="ChargeSim API"'


def test_only_the_digest_is_stored():
    _, token = user_with_token("ci")
    row = ApiToken.objects.get()
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(row.prefix) and len(token) > len(row.prefix) + 30
    stored = [str(v) for v in ApiToken.objects.values_list(flat=False).get()]
    assert token not in stored


def test_the_session_works(client):
    client.force_login(make_user("alice"))
    response = client.get(WHOAMI)
    assert response.status_code == 200
    assert response.json()["via"] == "session"
    assert response.json()["token"] is None


@pytest.mark.urls(__name__)
def test_session_writes_need_the_csrf_token():
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_superuser())
    body = assert_error_body(browser.post("/probe/write?count=3"), 403)
    assert "CSRF" in body["detail"]
    browser.get(reverse("admin:index"))  # sets the csrftoken cookie
    csrf = browser.cookies["csrftoken"].value
    response = browser.post("/probe/write?count=3", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200, response.content
    assert response.json() == {"count": 3}


@pytest.mark.urls(__name__)
def test_token_writes_need_no_csrf_token():
    _, token = user_with_token("ci", "change_charger")
    response = Client(enforce_csrf_checks=True).post("/probe/write?count=1", headers=bearer(token))
    assert response.status_code == 200


@pytest.mark.urls(__name__)
def test_anonymous_writes_are_401_not_a_csrf_failure():
    assert_error_body(Client(enforce_csrf_checks=True).post("/probe/write?count=1"), 401)


@pytest.mark.urls(__name__)
def test_a_caller_without_the_permission_gets_403_naming_it(client):
    _, token = user_with_token("reader", "view_charger")
    body = assert_error_body(client.post("/probe/write?count=1", headers=bearer(token)), 403)
    assert "chargers.change_charger" in body["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/locations", {"name": 7, "max_power_kw": "lots"}),  # a sync handler
        ("/api/v1/chargers/CP-NONE/actions/plug-in", {"connector_id": "one", "soc": "x"}),
    ],
)
def test_a_caller_without_the_permission_gets_403_before_the_body_is_read(client, path, body):
    """A view-only user's write with a bad body got 422 (ninja validates before the handler
    runs, and the permission was checked in it): it must be refused for who it is first."""
    _, token = user_with_token("viewer", "view_charger", "view_location")
    response = client.post(path, body, content_type="application/json", headers=bearer(token))
    detail = assert_error_body(response, 403)["detail"]
    assert "chargers.change_charger" in detail or "locations.add_location" in detail
    _, writer = user_with_token("writer", "change_charger", "add_location")
    assert (
        client.post(path, body, content_type="application/json", headers=bearer(writer)).status_code
        == 422
    )


@pytest.mark.urls(__name__)
def test_require_guards_an_async_handler_and_keeps_its_typed_parameters(client):
    _, reader = user_with_token("reader", "view_charger")
    _, other = user_with_token("other", "view_location")
    assert client.get("/probe/read?count=2", headers=bearer(reader)).json() == {"count": 2}
    body = assert_error_body(client.get("/probe/read?count=2", headers=bearer(other)), 403)
    assert "chargers.view_charger" in body["detail"]
    wrong = assert_error_body(client.get("/probe/read?count=x", headers=bearer(reader)), 422)
    assert wrong["errors"] == [{"field": "count", "message": "Enter a whole number.", "row": None}]


@pytest.mark.urls(__name__)
def test_a_parameter_that_does_not_validate_is_422_naming_the_field(client):
    _, token = user_with_token("ci", "change_charger")
    body = assert_error_body(client.post("/probe/write?count=many", headers=bearer(token)), 422)
    assert [e["field"] for e in body["errors"]] == ["count"]
    assert body["errors"][0]["message"]
    assert body["errors"][0]["row"] is None


def test_an_unknown_path_or_object_answers_in_the_error_body(client):
    _, token = user_with_token("ci")
    body = assert_error_body(client.get("/api/v1/no-such-thing", headers=bearer(token)), 404)
    assert "/api/v1/no-such-thing" in body["detail"]
    # The API's root too (QA: Django's HTML page, with DEBUG the site's URL patterns).
    for method in ("get", "post"):
        root = assert_error_body(getattr(client, method)("/api/v1/", headers=bearer(token)), 404)
        assert "the endpoints are listed at /api/v1/docs" in root["detail"]
    # Any method: a script's POST to a mistyped path got Django's HTML CSRF page (403).
    strict = Client(enforce_csrf_checks=True)
    for method in ("post", "put", "patch", "delete"):
        answer = getattr(strict, method)("/api/v1/chargers/CP-1/actions/fly", headers=bearer(token))
        body = assert_error_body(answer, 404)
        assert "/api/v1/chargers/CP-1/actions/fly" in body["detail"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1_000, DATA_UPLOAD_MAX_NUMBER_FIELDS=50)
def test_a_body_or_query_django_refuses_to_read_is_a_4xx_in_the_error_body(client):
    # Django refuses them with SuspiciousOperation; the API's catch-all made them a 500.
    _, token = user_with_token("ci", "add_charger", "view_charger")
    big = {"charge_point_id": "CP-1", "vendor": "x" * 2_000}
    response = client.post(
        "/api/v1/chargers", big, content_type="application/json", headers=bearer(token)
    )
    assert assert_error_body(response, 413)["detail"] == (
        "The request body is larger than the 1,000 bytes accepted."
    )
    many = "&".join(f"location={n}" for n in range(60))
    body = assert_error_body(client.get(f"/api/v1/chargers?{many}", headers=bearer(token)), 400)
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in body["detail"]


@override_settings(DEBUG=True)
def test_no_token_reaches_the_log(client, caplog):
    _, token = user_with_token("ci")
    caplog.set_level(logging.DEBUG)
    client.get(WHOAMI, headers=bearer(token))
    revoked_user, revoked = user_with_token("gone")
    ApiToken.objects.filter(user=revoked_user).get().revoke()
    client.get(WHOAMI, headers=bearer(revoked))
    # ninja's own HttpBearer logs a header with another scheme in DEBUG; ours must not.
    client.get(WHOAMI, HTTP_AUTHORIZATION=f"Token {token}")
    client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {token}x")
    # The failures were logged (so the log was captured), without the tokens.
    assert "Unauthorized: /api/v1/whoami" in caplog.text
    for secret in (token, revoked, token[len("csim_") :]):
        assert secret not in caplog.text


def test_the_openapi_document_validates(client):
    _, token = user_with_token("ci")
    response = client.get("/api/v1/openapi.json", headers=bearer(token))
    assert response.status_code == 200
    spec = response.json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/whoami" in spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    whoami = spec["paths"]["/api/v1/whoami"]["get"]
    assert {"200", "401", "403"} <= set(whoami["responses"])


def test_the_openapi_document_names_no_key_twice(client):
    """Swagger UI reads the document as YAML, which refuses an object with a key twice
    ("duplicated mapping key": the docs page showed nothing); `json.loads` keeps the last
    silently, so the text is read here with a hook that sees every pair."""
    _, token = user_with_token("ci")
    text = client.get("/api/v1/openapi.json", headers=bearer(token)).content
    twice: list[list[str]] = []

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _value in pairs]
        if len(set(keys)) != len(keys):
            twice.append(keys)
        return dict(pairs)

    spec = json.loads(text, object_pairs_hook=unique)
    assert twice == []
    post = spec["paths"]["/api/v1/locations"]["post"]["responses"]
    assert {"201", "409", "422"} <= set(post)


def test_the_openapi_document_lists_the_422_of_every_parameter_that_can_fail(client):
    _, token = user_with_token("ci", "view_location", "view_charger")
    spec = client.get("/api/v1/openapi.json", headers=bearer(token)).json()
    validate(spec)
    paths = spec["paths"]
    # What ninja refuses before any handler runs: a list's paging, an id in the path.
    for operation in ("/api/v1/locations", "/api/v1/locations/{location_id}", "/api/v1/chargers"):
        assert "422" in paths[operation]["get"]["responses"], operation
    assert assert_error_body(client.get("/api/v1/locations?limit=0", headers=bearer(token)), 422)
    assert assert_error_body(client.get("/api/v1/locations/x", headers=bearer(token)), 422)
    # A JSON body that cannot be parsed is a 400, one over Django's limit a 413, and a write
    # that loses a race for a unique value a 409.
    assert {"400", "409", "413"} <= set(paths["/api/v1/chargers"]["post"]["responses"])
    assert "409" not in paths["/api/v1/chargers"]["get"]["responses"]
    # Any operation refuses a query parameter it does not take, one without parameters too.
    for url, operations in paths.items():
        for method, operation in operations.items():
            assert "422" in operation["responses"], (method, url)
    assert assert_error_body(client.get(f"{WHOAMI}?x=1", headers=bearer(token)), 422)


def test_the_openapi_document_lists_a_503_for_every_operation(client):
    # Any operation may find the database down: a 503 a client should retry, not a 500.
    _, token = user_with_token("ci", "view_location", "view_charger")
    spec = client.get("/api/v1/openapi.json", headers=bearer(token)).json()
    validate(spec)
    for url, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "503" in operation["responses"], (method, url)


def test_the_openapi_document_and_docs_refuse_anonymous_callers(client):
    assert_error_body(client.get("/api/v1/openapi.json"), 401)
    page = client.get("/api/v1/docs", HTTP_ACCEPT="text/html")
    assert page.status_code == 302
    assert page["Location"].startswith(reverse("login"))


def test_the_docs_page_is_served_from_the_projects_own_static_files(client):
    """With DEBUG off (as pytest-django runs), through WhiteNoise: no CDN."""
    client.force_login(make_user("alice"))
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert "cdn" not in html.lower()
    for asset in assets:
        assert asset.startswith("/static/"), asset
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content), asset
    # The page sends the CSRF token with "Try it out", so the session's writes work.
    assert re.search(r'data-csrf-token="[^"]+"', html)


def test_the_admin_shows_a_new_token_once_and_the_token_works(admin_client_logged_in, client):
    alice = make_user("alice", "view_charger")
    response = admin_client_logged_in.post(
        reverse("admin:api_apitoken_add"), {"user": alice.pk, "name": "CI"}
    )
    assert response.status_code == 200
    match = re.search(r'<code id="api-token"[^>]*>(csim_[^<]+)</code>', response.content.decode())
    assert match, response.content.decode()
    token = match.group(1)
    assert "no-store" in response["Cache-Control"]
    assert client.get(WHOAMI, headers=bearer(token)).json()["username"] == "alice"

    row = ApiToken.objects.get()
    for page in ("change", "changelist"):
        args = [row.pk] if page == "change" else []
        html = admin_client_logged_in.get(reverse(f"admin:api_apitoken_{page}", args=args))
        assert html.status_code == 200
        assert row.prefix in html.content.decode()
        assert token not in html.content.decode()


def test_the_admin_revokes_tokens(admin_client_logged_in, client):
    _, token = user_with_token("ci")
    row = ApiToken.objects.get()
    response = admin_client_logged_in.post(
        reverse("admin:api_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "Revoked 1 token." in response.content.decode()
    assert_error_body(client.get(WHOAMI, headers=bearer(token)), 401)


def test_the_command_creates_lists_and_revokes_tokens(client):
    make_user("ci")
    out, err = io.StringIO(), io.StringIO()
    call_command("apitoken", "create", "--user", "ci", "--name", "pipeline", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert "not shown again" in err.getvalue()
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200

    listing = io.StringIO()
    call_command("apitoken", "list", stdout=listing)
    row = ApiToken.objects.get()
    assert row.prefix in listing.getvalue() and "pipeline" in listing.getvalue()
    assert token not in listing.getvalue()

    call_command("apitoken", "revoke", row.prefix, stdout=io.StringIO())
    assert_error_body(client.get(WHOAMI, headers=bearer(token)), 401)
    with pytest.raises(CommandError, match="already revoked"):
        call_command("apitoken", "revoke", str(row.pk))
    with pytest.raises(CommandError, match="No user"):
        call_command("apitoken", "create", "--user", "nobody", "--name", "x")


def test_a_token_with_an_expiry_works_until_then_and_then_says_it_expired(client):
    make_user("ci")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "apitoken", "create", "--user", "ci", "--name", "nightly", "--expires", "2h",
        stdout=out, stderr=err,
    )  # fmt: skip
    token = out.getvalue().strip()
    row = ApiToken.objects.get()
    assert row.expires is not None
    assert timedelta(hours=1, minutes=59) < row.expires - timezone.now() <= timedelta(hours=2)
    assert row.expires.microsecond == 0  # whole seconds, as the API shows it
    assert f"until {row.expires:%Y-%m-%d %H:%M} UTC" in err.getvalue()
    me = client.get(WHOAMI, headers=bearer(token)).json()
    assert datetime.fromisoformat(me["token"]["expires"]) == row.expires
    listing = io.StringIO()
    call_command("apitoken", "list", stdout=listing)
    assert f"active until {row.expires:%Y-%m-%d %H:%M}" in listing.getvalue()

    ended = timezone.now() - timedelta(seconds=1)
    ApiToken.objects.filter(pk=row.pk).update(expires=ended)
    response = client.get(WHOAMI, headers=bearer(token))
    body = assert_error_body(response, 401)
    # Its holder is told to make a new one, not to look for a revocation.
    assert f"expired at {ended:%Y-%m-%d %H:%M} UTC" in body["detail"]
    assert token not in body["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="ChargeSim API", error="invalid_token"'
    listing = io.StringIO()
    call_command("apitoken", "list", stdout=listing)
    assert f"expired {ended:%Y-%m-%d %H:%M}" in listing.getvalue()


def test_apitoken_create_takes_a_span_or_a_moment_in_the_future(client):
    make_user("ci")

    def create(expires: str) -> ApiToken:
        call_command(
            "apitoken", "create", "--user", "ci", "--name", expires, "--expires", expires,
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
        return ApiToken.objects.get(name=expires)

    assert create("2099-06-30").expires == datetime(2099, 6, 30, tzinfo=UTC)
    assert create("2099-06-30T18:00").expires == datetime(2099, 6, 30, 18, tzinfo=UTC)
    assert create("2099-06-30T18:00+02:00").expires == datetime(2099, 6, 30, 16, tzinfo=UTC)
    week = create("1w").expires
    assert week is not None and week - timezone.now() > timedelta(days=6, hours=23)
    for wrong, said in (
        ("tomorrow", "neither a span"),
        ("2099-13-01", "neither a span"),
        ("2020-01-01", "not in the future"),
        ("0d", "not in the future"),
        ("99999d", "neither a span"),
    ):
        with pytest.raises(CommandError, match=said):
            create(wrong)
    assert ApiToken.objects.count() == 4


def test_the_admin_issues_a_token_with_an_expiry(admin_client_logged_in, client):
    alice = make_user("alice", "view_charger")
    response = admin_client_logged_in.post(
        reverse("admin:api_apitoken_add"),
        {"user": alice.pk, "name": "CI", "expires_0": "2099-01-31", "expires_1": "12:00:00"},
    )
    assert response.status_code == 200, response.content
    token = re.search(r'<code id="api-token"[^>]*>(csim_[^<]+)</code>', response.content.decode())
    assert token is not None
    row = ApiToken.objects.get()
    assert row.expires == datetime(2099, 1, 31, 12, tzinfo=UTC)
    assert client.get(WHOAMI, headers=bearer(token.group(1))).status_code == 200
    changelist = admin_client_logged_in.get(reverse("admin:api_apitoken_changelist"))
    assert "Expires" in changelist.content.decode()
