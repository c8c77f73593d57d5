"""The dashboard pages as the server renders them: login, filters, pagination, controls."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from chargers.dashboard import pages
from chargers.models import Charger, Evse, Transaction
from tests.cast import make_charger, make_location, make_vehicle

pytestmark = pytest.mark.django_db


def rows(response) -> list[str]:
    return re.findall(
        r'<tr data-charger="\d+">\s*(?:<td class="pick">.*?</td>\s*)?<td><a href="[^"]+">([^<]+)</a>',
        response.content.decode(),
    )


def bulk_fleet(count: int, location, power_type: str = "AC") -> None:
    chargers = Charger.objects.bulk_create(
        Charger(
            charge_point_id=f"BULK-{n:05d}",
            location=location,
            power_type=power_type,
            csms_url="ws://127.0.0.1:9/ocpp",
        )
        for n in range(count)
    )
    Evse.objects.bulk_create(
        Evse(
            charger=c, connector_id=k, max_power_kw=22, status="Charging" if k == 1 else "Available"
        )
        for c in chargers
        for k in (1, 2)
    )


@pytest.mark.parametrize(
    "url",
    [
        reverse("chargers:home"),
        reverse("chargers:locations"),
        reverse("chargers:charger", args=[1]),
        reverse("chargers:location", args=[1]),
        "/chargers/CP-1/",  # by its charge point id
    ],
)
def test_every_page_asks_an_anonymous_visitor_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_home_page_is_the_fleet_with_counts_by_status(admin_client_logged_in):
    site = make_location("Depot")
    make_charger("CP-A", location=site)
    charger = make_charger("CP-B", location=site, evses=1)
    Evse.objects.filter(charger=charger).update(status="Faulted")

    response = admin_client_logged_in.get(reverse("chargers:home"))

    assert response.status_code == 200
    assert rows(response) == ["CP-A", "CP-B"]
    assert dict(response.context["fleet"].counts) == {
        "Available": 2,
        "Preparing": 0,
        "Charging": 0,
        "SuspendedEVSE": 0,
        "SuspendedEV": 0,
        "Finishing": 0,
        "Reserved": 0,
        "Unavailable": 0,
        "Faulted": 1,
    }
    assert 'data-count="Faulted"><b>1</b>' in response.content.decode()
    assert "/ws/fleet/" in response.content.decode()


def test_the_fleet_is_filtered_by_location_status_power_type_and_search(admin_client_logged_in):
    depot, garage = make_location("Depot"), make_location("Garage")
    make_charger("AC-DEPOT-1", location=depot)
    make_charger("DC-DEPOT-2", location=depot, power_type="DC", max_power_kw=150, model="HPC 150")
    faulted = make_charger("AC-GARAGE-3", location=garage)
    Evse.objects.filter(charger=faulted, connector_id=2).update(status="Faulted")
    home = reverse("chargers:home")

    assert rows(admin_client_logged_in.get(home, {"location": depot.pk})) == [
        "AC-DEPOT-1",
        "DC-DEPOT-2",
    ]
    assert rows(admin_client_logged_in.get(home, {"status": "Faulted"})) == ["AC-GARAGE-3"]
    assert rows(admin_client_logged_in.get(home, {"power_type": "DC"})) == ["DC-DEPOT-2"]
    assert rows(admin_client_logged_in.get(home, {"q": "hpc"})) == ["DC-DEPOT-2"]
    assert rows(admin_client_logged_in.get(home, {"q": "garage", "status": "Available"})) == [
        "AC-GARAGE-3"
    ]
    assert rows(admin_client_logged_in.get(home, {"status": "Bogus"})) == []


def test_a_filter_value_the_fleet_does_not_know_is_said_and_matches_no_charger(
    admin_client_logged_in,
):
    """A stale link (a location since deleted) said "2 chargers match the filter" of the
    whole fleet, and a bulk action over "every charger that matches the filter" ran on
    all of them, while the selects showed "All locations"."""
    depot = make_location("Depot")
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=depot)
    home = reverse("chargers:home")

    for params, problem in (
        ({"location": "999"}, "Location: no location has the id “999”"),
        ({"status": "Bogus"}, "Status: “Bogus” is not a connector status"),
        ({"power_type": "XX"}, "Power: “XX” is not a power type (AC or DC)"),
    ):
        response = admin_client_logged_in.get(home, params)
        html = response.content.decode()
        assert rows(response) == [], params
        assert problem in html
        # The select keeps the unknown value, selected, not its first option ("All
        # locations"): a page that says it matches no charger must not seem to show all.
        ((name, value),) = params.items()
        select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
        assert select is not None
        assert re.findall(r"<option[^>]* selected>([^<]*)</option>", select.group(1)) == [
            f"unknown: {value}"
        ]
        assert (
            "<small>no charger shown: the filter has a value this fleet does not know</small>"
            in html
        )
        assert response.context["bulk_filter"] == {"charge_point_ids": []}
        assert re.search(r'<input type="radio" name="target" value="filter"[^>]* disabled>', html)

    # A parameter the filter does not have (the label "Power" for power_type) is not
    # understood either: it showed every charger as if it were the DC ones, and a bulk
    # action "over the filter" ran on all of them.
    for params in ({"power": "banana"}, {"power": "DC", "page": "1"}):
        response = admin_client_logged_in.get(home, params)
        assert rows(response) == [], params
        html = response.content.decode()
        assert (
            "No charger is shown: “power” is not a filter here: did you mean power_type (AC "
            "or DC)? The filters are q, location, status and power_type. Choose again, or "
            "clear the filter." in html
        )
        assert response.context["bulk_filter"] == {"charge_point_ids": []}
        assert re.search(r'<input type="radio" name="target" value="filter"[^>]* disabled>', html)
        assert '<a href="?">Clear</a>' in html
    # `page` is no filter, and no problem.
    response = admin_client_logged_in.get(home, {"page": "1"})
    assert rows(response) == ["CP-1", "CP-2"]
    assert "every charger of the fleet (2)" in response.content.decode()


def test_a_filtered_page_says_its_counts_are_of_the_whole_fleet_or_location(
    admin_client_logged_in,
):
    """The count boxes (and the engine's live counts that replace them) are of the whole
    fleet or location; with a filter on, the page says so rather than seem to count the
    chargers that match."""
    depot = make_location("Depot")
    make_charger("AC-DEPOT-1", location=depot)
    home, site = reverse("chargers:home"), reverse("chargers:location", args=[depot.pk])

    def note(url: str, params: dict) -> str | None:
        page = admin_client_logged_in.get(url, params).content.decode()
        found = re.search(r'<p class="note counts-scope"[^>]*>([^<]*)</p>', page)
        return found[1] if found else None

    assert note(home, {}) is None
    assert note(home, {"page": 1}) is None
    assert note(home, {"status": "Faulted"}) == (
        "These counts are for the whole fleet, not only the chargers that match the filter."
    )
    assert note(site, {}) is None
    assert note(site, {"q": "dc"}) == (
        "These counts are for the whole location, not only the chargers that match the filter."
    )


def test_the_fleet_page_says_how_many_chargers_match_in_good_grammar(admin_client_logged_in):
    """It said "1 charger match the filter"."""
    make_charger("CP-1")
    make_charger("CP-2", evses=1)
    Evse.objects.filter(charger__charge_point_id="CP-1", connector_id=1).update(status="Reserved")
    home = reverse("chargers:home")

    def title(params: dict) -> str:
        page = admin_client_logged_in.get(home, params).content.decode()
        found = re.search(r"<h1>Fleet <small>([^<]*)</small>", page)
        assert found, page
        return found[1]

    assert title({"status": "Reserved"}) == "1 charger matches the filter"
    assert title({"q": "CP-"}) == "2 chargers match the filter"
    assert title({}) == "2 chargers"


def test_five_thousand_chargers_are_paged_in_a_constant_number_of_queries(
    admin_client_logged_in, django_assert_max_num_queries
):
    bulk_fleet(5000, make_location("Big Depot"))
    home = reverse("chargers:home")

    with django_assert_max_num_queries(10):
        first = admin_client_logged_in.get(home)
    with django_assert_max_num_queries(10):
        last = admin_client_logged_in.get(home, {"page": 100, "status": "Charging"})

    assert rows(first)[:2] == ["BULK-00000", "BULK-00001"]
    assert len(rows(first)) == 50
    assert rows(last)[-1] == "BULK-04999"
    assert "page 100 of 100 (5000 chargers)" in last.content.decode()
    assert "status=Charging&amp;page=99" in last.content.decode()
    assert dict(first.context["fleet"].counts)["Charging"] == 5000
    # The page watches exactly its own rows.
    assert len(first.context["fleet"].charger_ids) == 50


def test_the_charger_page_has_a_control_for_every_local_action(admin_client_logged_in):
    make_vehicle(0)
    charger = make_charger("CP-CTRL", evses=2)

    response = admin_client_logged_in.get(reverse("chargers:charger", args=[charger.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    for command in (
        "connect",
        "disconnect",
        "cut_network",
        "plug_in",
        "present_id_tag",
        "stop",
        "unplug",
        "inject_fault",
        "clear_fault",
    ):
        assert f'data-command="{command}"' in html, command
    assert html.count('class="card evse-card"') == 2
    assert "Volkswagen ID.3 Pro (58 kWh)" in html
    assert "<option selected>OtherError</option>" in html
    assert 'id="message-log"' in html
    assert "vendor/uplot/uPlot.iife.min.js" in html


class UnnamedControls(HTMLParser):
    """The form controls a screen reader has no name for: neither inside a <label>, nor
    named by a <label for>, nor with an aria-label (a placeholder is no label)."""

    def __init__(self) -> None:
        super().__init__()
        self.open_labels = 0
        self.labelled_ids: set[str] = set()
        self.controls: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "label":
            self.open_labels += 1
            if fields.get("for"):
                self.labelled_ids.add(fields["for"] or "")
        elif tag in ("input", "select", "textarea") and fields.get("type") != "hidden":
            self.controls.append({**fields, "in_label": "yes" if self.open_labels else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1

    def unnamed(self) -> list[dict[str, str | None]]:
        return [
            c
            for c in self.controls
            if not c["in_label"]
            and not c.get("aria-label")
            and not c.get("aria-labelledby")
            and c.get("id") not in self.labelled_ids
        ]


@pytest.mark.parametrize("page", ["chargers:home", "chargers:charger", "chargers:location"])
def test_every_control_of_the_dashboard_has_a_name_a_screen_reader_says(
    admin_client_logged_in, page
):
    site = make_location("Depot")
    charger = make_charger("CP-NAMES", evses=2, location=site)
    args = {"chargers:home": [], "chargers:charger": [charger.pk], "chargers:location": [site.pk]}
    response = admin_client_logged_in.get(reverse(page, args=args[page]))
    assert response.status_code == 200
    parser = UnnamedControls()
    parser.feed(response.content.decode())
    assert parser.controls  # the page has controls to check
    assert parser.unnamed() == []


@pytest.mark.parametrize(("page", "charts"), [("chargers:charger", 2), ("chargers:location", 1)])
def test_every_chart_has_a_text_a_screen_reader_says(admin_client_logged_in, page, charts):
    """A chart is a canvas: without a role and a label a screen reader skipped it."""
    site = make_location("Depot")
    charger = make_charger("CP-CHARTS", evses=2, location=site)
    pk = charger.pk if page == "chargers:charger" else site.pk
    html = admin_client_logged_in.get(reverse(page, args=[pk])).content.decode()
    found = re.findall(r'<div[^>]*class="chart"[^>]*>', html)
    assert len(found) == charts
    for tag in found:
        assert 'role="img"' in tag
        label = re.search(r'aria-label="([^"]+)"', tag)
        assert label is not None and "over time" in label.group(1), tag


def test_the_charger_page_shows_its_csms_url_without_the_password_in_it(client, django_user_model):
    """A CSMS URL may carry HTTP Basic credentials (ws://user:password@host/ocpp), which the
    message log and the connection events already leave out; the charger page, open to
    any logged-in user, showed them."""
    charger = make_charger("CP-CRED", csms_url="ws://cp:s3cret-pw@csms.example:9000/ocpp")
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-1"))

    html = client.get(reverse("chargers:charger", args=[charger.pk])).content.decode()

    assert "s3cret-pw" not in html
    assert "<code>ws://cp:********@csms.example:9000/ocpp</code>" in html


def test_an_unknown_charger_or_location_is_not_found(admin_client_logged_in):
    assert admin_client_logged_in.get(reverse("chargers:charger", args=[424242])).status_code == 404
    assert (
        admin_client_logged_in.get(reverse("chargers:location", args=[424242])).status_code == 404
    )


def test_a_charger_page_is_found_by_its_charge_point_id_too(admin_client_logged_in):
    """The README's /chargers/<id>/ read as the charge point id (DEMO-0001, as the API,
    the logs and the CSMS name it) was a 404 listing the URL patterns."""
    charger = make_charger("DEMO-0001")
    response = admin_client_logged_in.get("/chargers/DEMO-0001/")
    assert response.status_code == 302
    assert response["Location"] == reverse("chargers:charger", args=[charger.pk])
    assert admin_client_logged_in.get("/chargers/demo-0001/")["Location"] == response["Location"]
    assert admin_client_logged_in.get("/chargers/NO-SUCH-ONE/").status_code == 404


def test_a_charger_page_is_found_by_a_charge_point_id_of_digits(admin_client_logged_in):
    """/chargers/<digits>/ is the pk's path: a charge point id of digits only (a serial
    number) was a 404 there. With no charger of that pk it is read as the id; a pk that
    exists wins, as the README says."""
    first = make_charger("CP-FIRST")
    serial = make_charger("100234")
    response = admin_client_logged_in.get("/chargers/100234/")
    assert response.status_code == 302
    assert response["Location"] == reverse("chargers:charger", args=[serial.pk])
    same_as_pk = make_charger(str(first.pk))
    assert admin_client_logged_in.get(f"/chargers/{first.pk}/").status_code == 200
    assert same_as_pk.pk != first.pk
    assert admin_client_logged_in.get("/chargers/999999/").status_code == 404


def test_the_recent_transactions_are_served_alone_for_the_page_to_follow(
    admin_client_logged_in,
):
    charger = make_charger("CP-TX")
    url = reverse("chargers:transactions", args=[charger.pk])
    empty = admin_client_logged_in.get(url).content.decode()
    assert 'id="recent-transactions" hidden' in empty  # none yet: the page keeps it hidden
    for n in range(12):
        Transaction.objects.create(
            charger=charger,
            connector_id=1,
            local_id=f"L-{n}",
            id_tag=f"<TAG-{n}>",
            transaction_id=100 + n if n else None,
            meter_start=1000 * n,
            started_at=f"2026-12-03T10:{n:02d}:00Z",
        )
    page = admin_client_logged_in.get(url).content.decode()
    assert 'id="recent-transactions">' in page
    assert page.count("<tr><td>") == 10  # the newest ten
    # In the location's zone (Berlin, UTC+1 in December), 24-hour, named in the header:
    # the page's chart, log and events tell the time the same way.
    assert "<td>2026-12-03 11:11:00</td>" in page
    assert "T10:11:00Z" not in page
    assert "<th>started <small>(Europe/Berlin)</small></th>" in page
    assert "&lt;TAG-11&gt;" in page and "<TAG-11>" not in page  # escaped, as on the page
    assert "TAG-1&gt;" not in page  # the oldest two are not shown
    assert Client().get(url).status_code == 302  # a login first
    missing = reverse("chargers:transactions", args=[424242])
    assert admin_client_logged_in.get(missing).status_code == 404


def test_the_location_page_shows_its_chargers_and_grid_limit(admin_client_logged_in):
    depot = make_location("Depot", grid_limit_kw=400)
    make_charger("CP-HERE", location=depot)
    make_charger("CP-THERE", location=make_location("Elsewhere"))

    response = admin_client_logged_in.get(reverse("chargers:location", args=[depot.pk]))

    html = response.content.decode()
    assert rows(response) == ["CP-HERE"]
    assert "of 400 kW grid limit" in html
    assert f"/ws/locations/{depot.pk}/" in html
    overview = admin_client_logged_in.get(reverse("chargers:locations")).content.decode()
    assert "Depot" in overview and "Elsewhere" in overview


def test_the_message_log_is_shown_only_to_a_user_with_the_view_permission(
    client, django_user_model
):
    from django.contrib.auth.models import Permission

    charger = make_charger("CP-LOG", evses=1)
    user = django_user_model.objects.create_user("plain", password="pw-plain-1")
    client.force_login(user)
    url = reverse("chargers:charger", args=[charger.pk])

    html = client.get(url).content.decode()
    assert 'id="message-log"' not in html
    assert "needs the “view charger” permission" in html
    assert 'data-command="plug_in"' in html  # the rest of the page is there

    user.user_permissions.add(Permission.objects.get(codename="view_charger"))
    html = client.get(url).content.decode()
    assert 'id="message-log"' in html
    # Every column has a header a screen reader says (the direction's was empty).
    head = re.search(r'<table class="log" id="message-log">\s*<thead>(.*?)</thead>', html, re.S)
    assert head, html
    headers = re.findall(r"<th[^>]*>(.*?)</th>", head[1])
    assert len(headers) == 5 and all(re.sub(r"<[^>]+>", "", h).strip() for h in headers), headers


def test_a_disabled_charger_shows_not_running_and_is_not_counted_available(
    admin_client_logged_in,
):
    site = make_location("Depot")
    make_charger("CP-ON", location=site, evses=1)
    off = make_charger("CP-OFF", location=site, evses=2, enabled=False)

    response = admin_client_logged_in.get(reverse("chargers:home"))

    assert dict(response.context["fleet"].counts)["Available"] == 1
    page = response.content.decode()
    assert page.count('status-not-running" data-field="status">not running<') == 2
    charger_page = admin_client_logged_in.get(reverse("chargers:charger", args=[off.pk]))
    assert "not running (disabled)" in charger_page.content.decode()
    assert "status-available" not in charger_page.content.decode()


def test_bulk_actions_are_offered_to_a_user_who_may_change_chargers_only(client, django_user_model):
    from django.contrib.auth.models import Permission

    site = make_location("Depot")
    make_charger("CP-BULK-1", location=site, evses=1)
    make_charger("CP-BULK-2", location=site, evses=1)
    user = django_user_model.objects.create_user("watcher", password="pw-watcher-1")
    user.user_permissions.add(Permission.objects.get(codename="view_charger"))
    client.force_login(user)
    html = client.get(reverse("chargers:home")).content.decode()
    assert 'id="bulk"' not in html and 'name="pick"' not in html

    user.user_permissions.add(Permission.objects.get(codename="change_charger"))
    user = django_user_model.objects.get(pk=user.pk)  # permissions are cached per object
    client.force_login(user)
    html = client.get(reverse("chargers:home")).content.decode()
    assert 'id="bulk"' in html
    assert 'name="csrfmiddlewaretoken"' in html  # the API wants it with the session
    assert html.count('name="pick"') == 2
    assert "/api/v1/fleet/actions/" in html


def test_the_bulk_filter_is_the_page_filter_in_the_api_terms(admin_client_logged_in):
    site = make_location("Depot")
    other = make_location("Elsewhere")
    make_charger("CP-F-1", location=site, evses=1)
    make_charger("CP-F-2", location=other, evses=1)
    make_charger("XX-F-3", location=site, evses=1)

    def bulk_filter(query: str) -> dict:
        response = admin_client_logged_in.get(reverse("chargers:home") + query)
        return response.context["bulk_filter"]

    assert bulk_filter("") == {"every": True}
    assert bulk_filter("?q=CP-") == {"charge_point_ids": ["CP-F-1", "CP-F-2"]}
    assert bulk_filter(f"?location={site.pk}&status=Charging") == {
        "location_id": site.pk,
        "status": "Charging",
    }
    assert bulk_filter(f"?location={site.pk}&q=CP-") == {
        "location_id": site.pk,
        "charge_point_ids": ["CP-F-1"],
    }


def test_every_charger_of_a_fleet_larger_than_a_request_takes_is_every_one(
    admin_client_logged_in, monkeypatch
):
    """10,001 chargers: "every charger of the fleet (10001)" sent the first 10,000 ids, and
    the action left the last one out, unsaid. A search that matches more than a request
    takes is refused on the page instead of cut."""
    monkeypatch.setattr(pages, "BULK_MAX_IDS", 2)
    for n in range(3):
        make_charger(f"BIG-{n}", evses=1)
    home = reverse("chargers:home")

    whole = admin_client_logged_in.get(home)
    assert whole.context["bulk_filter"] == {"every": True}
    assert not whole.context["bulk_too_many"]

    searched = admin_client_logged_in.get(home + "?q=BIG")
    assert searched.context["bulk_filter"] == {} and searched.context["bulk_too_many"]
    html = searched.content.decode()
    target = re.search(r'<input type="radio" name="target" value="filter"[^>]*>', html)
    assert target is not None and "disabled" in target.group(0)
    assert "reaches at most 2 chargers at once, and this one matches 3" in html


def test_the_energy_on_the_charger_page_is_the_register_the_csms_is_sent(admin_client_logged_in):
    """48.9 Wh showed as 49 while StopTransaction said meterStop 48: the charger reports
    whole Wh, cut (the live update does the same, in live.js)."""
    charger = make_charger("CP-WH", evses=1)
    charger.evses.update(register_wh=48.9)
    html = admin_client_logged_in.get(reverse("chargers:charger", args=[charger.pk])).content
    assert b'<span data-field="energy">48</span> Wh' in html
    # Named as what it is: "Energy" read as the session's (2,398 Wh for an 18 Wh session).
    label = re.search(r"<dt[^>]*>([^<]*)</dt><dd><span data-field=\"energy\">", html.decode())
    assert label and label[1] == "Meter register"


class Controls(HTMLParser):
    """The buttons, inputs and selects of a page's control boxes (<div class="controls">),
    hidden inputs left out: each as (tag, name or command, disabled)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # of <div>s, from the control box's own
        self.found: list[tuple[str, str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "div" and (self.depth or fields.get("class") == "controls"):
            self.depth += 1
        elif self.depth and tag in ("button", "input", "select") and fields.get("type") != "hidden":
            name = fields.get("name") or fields.get("data-command") or fields.get("type") or ""
            self.found.append((tag, name, "disabled" in fields))

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.depth:
            self.depth -= 1


WATCH_ONLY = (
    "You can watch but not drive chargers (your account lacks the 'change charger' permission)."
)


def controls_of(html: str) -> list[tuple[str, str, bool]]:
    parser = Controls()
    parser.feed(html)
    return parser.found


def test_a_user_who_only_watches_is_told_why_the_controls_are_disabled_inputs_too(
    client, django_user_model
):
    """Every button was disabled with no word of why, and the inputs beside them took
    values no button would send."""
    from django.contrib.auth.models import Permission

    make_vehicle(0)
    charger = make_charger("CP-WATCH", evses=2)
    user = django_user_model.objects.create_user("watcher", password="pw-watcher-1")
    user.user_permissions.add(Permission.objects.get(codename="view_charger"))
    client.force_login(user)
    url = reverse("chargers:charger", args=[charger.pk])

    html = client.get(url).content.decode()
    controls = controls_of(html)
    # The connection's 4, a reboot, set-network's 4, and 14 per connector.
    assert len(controls) == 4 + 1 + 4 + 2 * 14
    assert [c for c in controls if not c[2]] == []
    assert re.search(
        rf'<p class="watch-only" id="watch-only" role="note">{re.escape(WATCH_ONLY)}', html
    )
    fleet = client.get(reverse("chargers:home")).content.decode()
    assert re.search(rf'<p class="watch-only"[^>]*role="note">{re.escape(WATCH_ONLY)}', fleet)

    user.user_permissions.add(Permission.objects.get(codename="change_charger"))
    client.force_login(django_user_model.objects.get(pk=user.pk))  # perms cached per object
    html = client.get(url).content.decode()
    assert [c for c in controls_of(html) if c[2]] == []
    assert re.search(r'<p class="watch-only" id="watch-only" role="note" hidden>', html)
    assert WATCH_ONLY not in client.get(reverse("chargers:home")).content.decode()


def test_a_disabled_chargers_page_disables_its_controls_and_says_why(admin_client_logged_in):
    """They stayed live, and a click answered with the worker's "not running on this
    simulator worker" error."""
    off = make_charger("CP-OFF", evses=2, enabled=False)
    on = make_charger("CP-ON", evses=1)
    note = (
        "This charger is not running (disabled in the set-up): nothing to drive until it "
        "runs again."
    )

    html = admin_client_logged_in.get(reverse("chargers:charger", args=[off.pk])).content
    page = html.decode()
    assert controls_of(page) and [c for c in controls_of(page) if not c[2]] == []
    # Next to each box of controls: the connection's and each connector's.
    assert page.count(f'<p class="watch-only" data-out-of-service role="note">{note}</p>') == 3
    assert 'id="watch-only" role="note" hidden>' in page  # only the charger is why

    page = admin_client_logged_in.get(reverse("chargers:charger", args=[on.pk])).content.decode()
    assert [c for c in controls_of(page) if c[2]] == []
    assert page.count('<p class="watch-only" data-out-of-service role="note" hidden></p>') == 2
