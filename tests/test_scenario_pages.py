"""The dashboard's scenario pages (scenarios/views.py): who sees them, what the list shows,
the start form only for those who may start a run, a run's page with its downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from scenarios import library
from scenarios.models import ScenarioRun
from tests.cast import make_user

pytestmark = pytest.mark.django_db

RESULT = {
    "chargers": [
        {"charge_point_id": "A", "status": "passed", "steps": []},
        {"charge_point_id": "B", "status": "failed", "steps": []},
        {"charge_point_id": "C", "status": "passed", "steps": []},
    ]
}


def logged_in(*codenames: str) -> Client:
    client = Client()
    client.force_login(make_user("-".join(("user", *codenames)), *codenames))
    return client


def test_the_pages_need_a_login_and_view_charger() -> None:
    assert Client().get("/scenarios/").status_code == 302
    assert logged_in().get("/scenarios/").status_code == 403
    run = ScenarioRun.objects.create(name="x", source="x", seed=1)
    assert logged_in("view_location").get(f"/scenarios/runs/{run.pk}/").status_code == 403


def test_the_list_shows_runs_with_their_verdicts_and_the_form_only_to_who_may_run() -> None:
    ScenarioRun.objects.create(name="nightly", source="x", seed=1, status="failed", result=RESULT)
    viewer = logged_in("view_charger").get("/scenarios/")
    assert viewer.status_code == 200
    text = viewer.content.decode()
    assert "nightly" in text and "2 / 1 of 3" in text
    assert 'id="start-run"' not in text
    runner = logged_in("view_charger", "change_charger").get("/scenarios/").content.decode()
    assert 'id="start-run"' in runner and 'aria-current="page">Scenarios' in runner


def test_a_running_runs_chargers_have_not_passed_yet() -> None:
    ScenarioRun.objects.create(name="now", source="x", seed=1, status="running", result=RESULT)
    text = logged_in("view_charger").get("/scenarios/").content.decode()
    assert "0 / 1 of 3" in text


def test_a_runs_page_links_its_downloads() -> None:
    run = ScenarioRun.objects.create(name="one", source="x", seed=5, status="passed")
    page = logged_in("view_charger").get(f"/scenarios/runs/{run.pk}/")
    assert page.status_code == 200
    text = page.content.decode()
    for tail in ("junit.xml", "result.json", "frames.jsonl"):
        assert f"/api/v1/scenarios/runs/{run.pk}/{tail}" in text
    assert 'id="cancel-run"' not in text
    assert logged_in("view_charger", "add_charger").get("/scenarios/runs/9999/").status_code == 404


def test_the_form_offers_the_built_in_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library, "folder", lambda: tmp_path / "missing")
    runner = logged_in("view_charger", "change_charger")
    assert 'name="library"' not in runner.get("/scenarios/").content.decode()
    (tmp_path / "boot-accepted.yaml").write_text(
        "name: b\ndescription: >\n  Boots & is <Accepted>.\n"
    )
    monkeypatch.setattr(library, "folder", lambda: tmp_path)
    text = runner.get("/scenarios/").content.decode()
    assert (
        '<option value="boot-accepted" data-description="Boots &amp; is &lt;Accepted&gt;.">' in text
    )
