"""Answer overrides, network conditions and clock skew stored on a charger (issue 16,
"overrides without a scenario"): checked by the model, the admin and the API in the same
words, and applied live to the running charger when saved."""

from __future__ import annotations

import html
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from chargers.models import Charger
from simulator.core.clock import parse_iso
from simulator.csms import CALLRESULT, CentralSystem
from tests.admin_forms import form_values
from tests.api_client import user_with_token
from tests.cast import make_charger, make_superuser
from tests.engine import loaded, wait_until
from tests.test_answer_overrides import answer_to, send
from tests.test_api_fleet_live import PERMISSIONS, Api
from tests.test_live_fleet import worker  # noqa: F401
from tests.workers import running

pytestmark = pytest.mark.usefixtures("flushed_layer")

REJECT_REMOTE_START = {"action": "RemoteStartTransaction", "status": "Rejected"}
BAD_STATUS = {"action": "RemoteStartTransaction", "status": "Maybe"}
BAD_STATUS_TEXT = (
    "rule 1: status 'Maybe' is not valid in a RemoteStartTransaction answer "
    "(one of Accepted, Rejected)"
)


# -- the model ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_model_stores_rules_as_every_rules_and_refuses_bad_ones_in_plain_words():
    charger = make_charger("OV-MODEL", evses=1)
    charger.answer_overrides = [REJECT_REMOTE_START, {"action": "Reset", "delay": 2}]
    charger.full_clean()
    assert charger.answer_overrides == [
        {"action": "RemoteStartTransaction", "mode": "every", "status": "Rejected"},
        {"action": "Reset", "mode": "every", "delay": 2.0},
    ]
    for rules, message in [
        ([BAD_STATUS], BAD_STATUS_TEXT),
        ([{"action": "Reset", "mode": "next", "no_answer": True}], "stored rules apply to every"),
        ({"action": "Reset"}, "must be a list of rules"),
        ([{"action": "Reset", "call_error": "Nope"}], "not an OCPP 1.6 CALLERROR code"),
    ]:
        charger.answer_overrides = rules
        with pytest.raises(ValidationError) as refused:
            charger.full_clean()
        assert message in " ".join(refused.value.message_dict["answer_overrides"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("network_drop_rate", 1.5),
        ("network_drop_rate", -0.1),
        ("network_latency_ms", 60_001),
        ("clock_skew_seconds", 1e12),
    ],
)
def test_the_model_refuses_network_values_out_of_range(field, value):
    charger = make_charger("OV-NET", evses=1)
    setattr(charger, field, value)
    with pytest.raises(ValidationError) as refused:
        charger.full_clean()
    assert field in refused.value.message_dict


# -- the admin ---------------------------------------------------------------------------


def change_form(client: Client, charger: Charger) -> tuple[str, dict[str, str]]:
    url = reverse("admin:chargers_charger_change", args=[charger.pk])
    response = client.get(url)
    assert response.status_code == 200
    return url, form_values(response.content.decode())


@pytest.mark.django_db
def test_the_admin_shows_an_example_and_refuses_a_bad_rule_with_its_reason(
    admin_client_logged_in,
):
    charger = make_charger("OV-ADMIN", evses=1)
    url, data = change_form(admin_client_logged_in, charger)
    page = admin_client_logged_in.get(url).content.decode()
    assert "this charger answers RemoteStartTransaction Rejected" in page
    data["answer_overrides"] = '[{"action": "RemoteStartTransaction", "status": "Maybe"}]'
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    assert BAD_STATUS_TEXT in html.unescape(response.content.decode())
    # A NUL written as JSON's escape: refused with its reason (PostgreSQL cannot store it).
    data["answer_overrides"] = (
        '[{"action": "Reset", "call_error": "InternalError", "description": "a\\u0000b"}]'
    )
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    assert "description holds a NUL character" in html.unescape(response.content.decode())
    data["answer_overrides"] = '[{"action": "RemoteStartTransaction", "status": "Rejected"}]'
    data["network_drop_rate"] = "0.25"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 302
    charger.refresh_from_db()
    assert charger.answer_overrides == [{**REJECT_REMOTE_START, "mode": "every"}]
    assert charger.network_drop_rate == 0.25
    # Emptied, the field stores no rules (not null).
    _, data = change_form(admin_client_logged_in, charger)
    data["answer_overrides"] = "[]"
    assert admin_client_logged_in.post(url, data).status_code == 302
    charger.refresh_from_db()
    assert charger.answer_overrides == []


# -- the API -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_refuses_a_bad_rule_with_the_same_words_and_returns_the_stored_ones():
    make_charger("OV-API", evses=1)
    _, token = user_with_token("ci", "change_charger", "view_charger")
    client = Client(headers={"Authorization": f"Bearer {token}"})

    def patch(body: dict[str, Any]) -> Any:
        return client.patch(
            "/api/v1/chargers/OV-API?wait=false", body, content_type="application/json"
        )

    refused = patch({"answer_overrides": [BAD_STATUS]})
    assert refused.status_code == 422
    errors = refused.json()["errors"]
    assert [(e["field"], e["message"]) for e in errors] == [("answer_overrides", BAD_STATUS_TEXT)]
    refused = patch({"network_drop_rate": 2})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "network_drop_rate"
    done = patch({"answer_overrides": [REJECT_REMOTE_START], "clock_skew_seconds": -30})
    assert done.status_code == 200, done.content
    body = done.json()["charger"]
    assert body["answer_overrides"] == [{**REJECT_REMOTE_START, "mode": "every"}]
    assert body["clock_skew_seconds"] == -30
    assert body["network_latency_ms"] == 0


# -- live: a save reaches the running charger -------------------------------------------


async def remote_start_status(csms: CentralSystem, cp_id: str) -> str:
    unique_id = await send(csms, cp_id, "RemoteStartTransaction", {"idTag": "T1", "connectorId": 1})
    answer = await answer_to(csms, cp_id, unique_id)
    assert answer.message_type == CALLRESULT
    return str(answer.payload["status"])


@pytest.mark.django_db(transaction=True)
async def test_an_api_save_reaches_the_running_charger_live(worker, csms):  # noqa: F811
    _, token = await sync_to_async(user_with_token)("ci", *PERMISSIONS)
    api = Api(token)
    charger = loaded(worker, "CP-LIVE")
    assert await remote_start_status(csms, "CP-LIVE") == "Accepted"
    body = {"answer_overrides": [REJECT_REMOTE_START], "network_latency_ms": 50}
    response = await api("patch", "/chargers/CP-LIVE", body)
    assert response.status_code == 200, response.content
    assert response.json()["workers"][0] == {"reached": True, "message": "CP-LIVE applied live."}
    assert loaded(worker, "CP-LIVE") is charger  # not a reboot
    assert charger.impairments.network.latency_ms == 50
    assert await remote_start_status(csms, "CP-LIVE") == "Rejected"
    assert await remote_start_status(csms, "CP-LIVE") == "Rejected"  # every call
    # Saving the charger for another reason leaves a run-time rule alone.
    charger.impairments.answers.add(
        {"action": "Reset", "mode": "every", "call_error": "InternalError"}
    )
    response = await api("patch", "/chargers/CP-LIVE", {"simulate_ev_on_remote_start": True})
    assert response.status_code == 200, response.content
    assert loaded(worker, "CP-LIVE") is charger and charger.spec.simulate_ev_on_remote_start
    assert [rule["action"] for rule in charger.impairments.answers.rules()] == [
        "Reset",
        "RemoteStartTransaction",
    ]
    assert charger.impairments.network.latency_ms == 50


@pytest.mark.django_db(transaction=True)
async def test_an_admin_save_reaches_the_running_charger_live(worker, csms):  # noqa: F811
    client = Client()
    await sync_to_async(client.force_login)(await sync_to_async(make_superuser)())
    row = await sync_to_async(Charger.objects.get)(charge_point_id="CP-LIVE")
    url, data = await sync_to_async(change_form)(client, row)
    data["answer_overrides"] = '[{"action": "RemoteStartTransaction", "status": "Rejected"}]'
    response = await sync_to_async(client.post)(url, data)
    assert response.status_code == 302
    charger = loaded(worker, "CP-LIVE")
    await wait_until(lambda: bool(charger.impairments.answers), message="the rule applied")
    assert await remote_start_status(csms, "CP-LIVE") == "Rejected"
    _, data = await sync_to_async(change_form)(client, row)
    data["answer_overrides"] = "[]"
    assert (await sync_to_async(client.post)(url, data)).status_code == 302
    await wait_until(lambda: not charger.impairments.answers, message="the rule removed")
    assert await remote_start_status(csms, "CP-LIVE") == "Accepted"


@pytest.mark.django_db(transaction=True)
async def test_a_worker_starts_the_charger_with_its_stored_values(csms):
    await sync_to_async(make_charger)(
        "OV-LOAD",
        evses=1,
        csms_url=csms.url,
        answer_overrides=[REJECT_REMOTE_START],
        network_jitter_ms=5,
        clock_skew_seconds=3600,
    )
    async with running("OV-LOAD") as charger:
        assert charger.impairments.network.jitter_ms == 5
        assert charger.impairments.clock_skew_s == 3600
        assert await remote_start_status(csms, "OV-LOAD") == "Rejected"
    status = next(e for e in csms.log if e.cp_id == "OV-LOAD" and e.action == "StatusNotification")
    ahead = (parse_iso(status.payload["timestamp"]) - status.at).total_seconds()
    assert 3600 - 5 < ahead < 3600 + 5


# -- the API's actions (what a scenario's steps send) ----------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_api_actions_drive_the_running_charger(worker, csms):  # noqa: F811
    _, token = await sync_to_async(user_with_token)("ci", *PERMISSIONS)
    api = Api(token)
    path = "/chargers/CP-LIVE/actions/"
    refused = await api("post", path + "set-answer-override", BAD_STATUS)
    assert refused.status_code == 422
    assert "status 'Maybe' is not valid in a RemoteStartTransaction answer" in refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["status"]
    done = await api("post", path + "set-answer-override", {**REJECT_REMOTE_START, "mode": "next"})
    assert done.status_code == 200, done.content
    assert await remote_start_status(csms, "CP-LIVE") == "Rejected"
    assert await remote_start_status(csms, "CP-LIVE") == "Accepted"  # "next": once
    done = await api("post", path + "set-network", {"latency_ms": 20, "drop_rate": 0})
    assert done.status_code == 200, done.content
    assert loaded(worker, "CP-LIVE").impairments.network.latency_ms == 20
    refused = await api("post", path + "close-connection", {"code": 1005})
    assert refused.status_code == 422
    done = await api("post", path + "close-connection", {"code": 4100, "reason": "bye"})
    assert done.status_code == 200, done.content
    await wait_until(lambda: any(c.code == 4100 for c in csms.closures), message="the close")
    done = await api("post", path + "set-clock-skew", {"seconds": 90})
    assert done.status_code == 200, done.content
    assert loaded(worker, "CP-LIVE").impairments.clock_skew_s == 90


@pytest.mark.django_db(transaction=True)
async def test_a_reboot_keeps_what_was_set_at_run_time(worker, csms):  # noqa: F811
    """A scenario's "reboot" step builds the charger afresh from its row: the rules and
    network conditions the scenario set must survive it, as the stored ones do."""
    before = loaded(worker, "CP-LIVE")
    before.impairments.answers.add(
        {"action": "RemoteStartTransaction", "mode": "every", "status": "Rejected"}
    )
    before.impairments.network.latency_ms = 30
    before.impairments.clock_skew_s = -10
    boots = csms.counts["BootNotification"]
    assert (await worker.reloader.power_cycle(before)).startswith("reboots now")
    after = loaded(worker, "CP-LIVE")
    assert after is not before
    await wait_until(lambda: csms.counts["BootNotification"] > boots, message="the new boot")
    await wait_until(lambda: after.online, message="online after the reboot")
    assert after.impairments.network.latency_ms == 30
    assert after.impairments.clock_skew_s == -10
    assert await remote_start_status(csms, "CP-LIVE") == "Rejected"
