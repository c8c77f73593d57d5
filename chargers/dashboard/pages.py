"""What the dashboard pages show from the database: the filtered fleet, one charger, a site.

Live values (connection, power, SoC) come from the engine over the WebSocket; the pages
start from what the engine last checkpointed (each EVSE's status), so a page is right
before its socket connects and for chargers no worker runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from chargers.models import Charger, Evse, Transaction
from locations.models import Location
from simulator import contract
from simulator.contract import overrides
from vehicles.models import VehicleModel

PAGE_SIZE = 50
# The API's bulk filter takes at most this many charge point ids (api.routers.live).
BULK_MAX_IDS = 10_000


class FleetFilter(forms.Form):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "id, model, serial…", "type": "search"}),
    )
    location = forms.ModelChoiceField(
        queryset=Location.objects.all(),
        required=False,
        empty_label="All locations",
        error_messages={"invalid_choice": "no location has the id “%(value)s”"},
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), *((s, s) for s in contract.CONNECTOR_STATUSES)],
        required=False,
        help_text="An EVSE of the charger has this status.",
        error_messages={"invalid_choice": "“%(value)s” is not a connector status"},
    )
    power_type = forms.ChoiceField(
        label="Power",
        choices=[("", "AC and DC"), *Charger.PowerType.choices],
        required=False,
        error_messages={"invalid_choice": "“%(value)s” is not a power type (AC or DC)"},
    )

    # What a fleet page's query string may hold besides the filter's fields.
    NOT_FILTERS = frozenset({"page"})

    def unknown_parameters(self) -> list[str]:
        """The query's parameters that are no filter (?power=DC for ?power_type=DC)."""
        return [
            name for name in self.data if name not in self.fields and name not in self.NOT_FILTERS
        ]

    def clean(self) -> dict[str, Any]:
        """A parameter the filter does not have is not understood, said as an unknown value
        is: read as no filter, ?power=DC showed every charger as if it were the DC ones,
        and a bulk action "over the filter" ran on all of them."""
        cleaned = super().clean() or {}
        *others, last = self.fields
        names = f"{', '.join(others)} and {last}"
        for name in self.unknown_parameters():
            # Its label ("Power" of power_type) or its name in other case ("Status").
            hint = next(
                (
                    f"did you mean {field_name}{self._values(field)}? "
                    for field_name, field in self.fields.items()
                    if name.lower() in {(field.label or "").lower(), field_name}
                ),
                "",
            )
            the = "The" if hint else "the"
            self.add_error(None, f"“{name}” is not a filter here: {hint}{the} filters are {names}")
        return cleaned

    @staticmethod
    def _values(field: forms.Field) -> str:
        """A choice field's values, as its refusal of another one lists them: " (AC or DC)"."""
        if not isinstance(field, forms.ChoiceField):
            return ""
        choices: Any = field.choices  # a list of (value, label) pairs on these fields
        values = [str(value) for value, _ in choices if value != ""]
        return f" ({', '.join(values[:-1])} or {values[-1]})" if len(values) > 1 else ""

    def problems(self) -> list[str]:
        """An unknown value (a stale link: a location since deleted) or parameter, in words
        per field."""
        if self.is_valid():
            return []
        return [
            str(message)
            if name == NON_FIELD_ERRORS
            else f"{self.fields[name].label or name.capitalize()}: {message}"
            for name, messages in self.errors.items()
            for message in messages
        ]

    def full_clean(self) -> None:
        """A select also shows its unknown value, selected: otherwise the browser selects
        its first option ("All locations") for a filter that matches no charger, and the
        next submit silently drops the value the page says it does not know."""
        super().full_clean()
        for name in self.errors:
            field = self.fields.get(name)
            value = self.data.get(name)
            if isinstance(field, forms.ChoiceField) and value:
                widget = field.widget
                assert isinstance(widget, forms.Select)
                widget.choices = [*widget.choices, (value, f"unknown: {value}")]

    def chargers(self) -> QuerySet[Charger]:
        """The chargers that match, with what a row shows, in a constant number of queries.
        None with an unknown value: the whole fleet is not what such a filter matches (a
        bulk action "over the filter" then ran on every charger)."""
        rows = Charger.objects.select_related("location").prefetch_related(
            Prefetch("evses", queryset=Evse.objects.order_by("connector_id"))
        )
        if not self.is_valid():
            return rows.none()
        data = self.cleaned_data
        if data["q"]:
            q = data["q"].strip()
            rows = rows.filter(
                Q(charge_point_id__icontains=q)
                | Q(model__icontains=q)
                | Q(vendor__icontains=q)
                | Q(serial_number__icontains=q)
            )
        if data["location"]:
            rows = rows.filter(location=data["location"])
        if data["status"]:
            rows = rows.filter(
                Exists(Evse.objects.filter(charger=OuterRef("pk"), status=data["status"]))
            )
        if data["power_type"]:
            rows = rows.filter(power_type=data["power_type"])
        return rows

    def bulk_filter(self) -> dict[str, Any] | None:
        """The filter in the terms of the API's bulk actions (`BulkFilter`): a location and a
        status pass through (the workers apply them to their live chargers), no filter at
        all is `every`; a search or a power type become the matching chargers' ids. None
        when they are more than one request takes: cut to the first ones, "every charger
        that matches" would have driven only those."""
        if not self.is_valid():
            return {"charge_point_ids": []}  # an unknown value matches no charger
        data = self.cleaned_data
        chosen: dict[str, Any] = {}
        if data.get("location"):
            chosen["location_id"] = data["location"].pk
        if data.get("status"):
            chosen["status"] = data["status"]
        if data.get("q") or data.get("power_type"):
            ids = (
                self.chargers()
                .order_by("charge_point_id")
                .values_list("charge_point_id", flat=True)
            )
            chosen["charge_point_ids"] = list(ids[: BULK_MAX_IDS + 1])
            if len(chosen["charge_point_ids"]) > BULK_MAX_IDS:
                return None
        elif not chosen:
            # Not the ids of the whole fleet: 120 kB in every page of 10,000 chargers.
            chosen["every"] = True
        return chosen

    def query_without_page(self) -> str:
        """The filter as a query string, for pagination links."""
        params = {k: v for k, v in self.data.items() if k != "page" and v}
        from urllib.parse import urlencode

        return urlencode(params)


def status_counts(evses: QuerySet[Evse] | None = None) -> list[tuple[str, int]]:
    """EVSEs per status as the engine last checkpointed them, in OCPP order. A disabled
    charger is not running: its EVSEs are in no status (not Available)."""
    evses = Evse.objects.all() if evses is None else evses
    evses = evses.filter(charger__enabled=True)
    counted = dict(evses.values_list("status").annotate(n=Count("id")).order_by())
    return [(status, counted.get(status, 0)) for status in contract.CONNECTOR_STATUSES]


@dataclass
class FleetPage:
    filter: FleetFilter
    page: Page
    counts: list[tuple[str, int]]
    total_chargers: int
    filtered: bool
    can_change: bool = False

    @property
    def charger_ids(self) -> list[int]:
        return [charger.pk for charger in self.page.object_list]


def fleet_page(
    params: Any,
    page_number: Any = 1,
    location: Location | None = None,
    user: Any = None,
) -> FleetPage:
    data = params.copy()
    if location is not None:
        data["location"] = str(location.pk)
    fleet_filter = FleetFilter(data)
    paginator = Paginator(fleet_filter.chargers(), PAGE_SIZE)
    evses = (
        Evse.objects.all() if location is None else Evse.objects.filter(charger__location=location)
    )
    return FleetPage(
        filter=fleet_filter,
        page=paginator.get_page(page_number),
        counts=status_counts(evses),
        total_chargers=paginator.count,
        # A filter's field given, valid or not, or a parameter it does not know (said as a
        # problem, with a "Clear" beside it); not `page`.
        filtered=any(
            params.get(name)
            for name in FleetFilter.base_fields
            if location is None or name != "location"
        )
        or bool(fleet_filter.unknown_parameters()),
        can_change=user is not None and user.has_perm("chargers.change_charger"),
    )


# The rows a charger page's log table keeps (static/dashboard/live.js, LOG_ROWS).
PAGE_LOG_ROWS = 500


@dataclass(frozen=True)
class LogKeeps:
    """What the message log keeps, from the settings, for the page to say so."""

    count: int  # the engine's in-memory log, per charger
    kilobytes: int
    page_rows: int
    stored_rows: str  # the stored log (0: not stored)
    stored_days: float

    @classmethod
    def from_settings(cls) -> LogKeeps:
        stored = settings.CHARGESIM_MESSAGE_LOG_STORE
        return cls(
            count=settings.CHARGESIM_MESSAGE_LOG_LIMIT,
            kilobytes=settings.CHARGESIM_MESSAGE_LOG_BYTES // 1024,
            page_rows=PAGE_LOG_ROWS,
            stored_rows=f"{settings.CHARGESIM_MESSAGE_LOG_MAX_ROWS:,}" if stored else "",
            stored_days=settings.CHARGESIM_MESSAGE_LOG_MAX_DAYS,
        )


@dataclass
class ChargerPage:
    charger: Charger
    evses: list[Evse]
    vehicles: list[VehicleModel]
    transactions: list[TransactionRow]
    shows_log: bool = False
    log_keeps: LogKeeps | None = None
    fault_codes: tuple[str, ...] = contract.FAULT_CODES
    latency_max_ms: int = overrides.LATENCY_MAX_MS  # the engine's bound (set_network)
    csms_url: str = ""  # as shown: without a password in it
    # When its set-up was read (Unix time): an edit that reaches the running charger later
    # is not on the page, which then says so.
    rendered_at: float = 0.0
    can_change: bool = False  # the user may drive chargers
    # Why no worker runs it, as served ("" while it is enabled); its snapshots say it later.
    out_of_service: str = ""

    @property
    def controls_off(self) -> bool:
        """Its controls are disabled as served: nobody to drive, or nothing running."""
        return not self.can_change or bool(self.out_of_service)


def shown_csms_url(url: str) -> str:
    """A CSMS URL to show: the password of ws://user:password@host/... masked, as the
    message log and the connection events leave it out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:********@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def may_see_message_log(user: Any) -> bool:
    """The OCPP message log shows what the charger and its CSMS said, configuration and
    idTags included: it needs the "view charger" permission (which "change" implies, as
    in the admin), not just a login."""
    return user.has_perm("chargers.view_charger") or user.has_perm("chargers.change_charger")


# The charger page's "Recent transactions": this many, newest first.
RECENT_TRANSACTIONS = 10


@dataclass(frozen=True)
class TransactionRow:
    """A recent transaction as the charger page shows it: its times (which the charger
    wrote in UTC) in the location's time zone, as every time on that page."""

    transaction: Transaction
    started: str
    stopped: str  # "" while it is open


def location_zone(charger: Charger) -> ZoneInfo:
    try:
        return ZoneInfo(charger.location.time_zone)
    except (ValueError, ZoneInfoNotFoundError):  # validated on save; a row written past it
        return ZoneInfo("UTC")


def shown_time(iso: str, zone: ZoneInfo) -> str:
    """An ISO 8601 time (UTC when it names no zone) in `zone`, 24-hour, to the second;
    as it is when it does not parse."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def recent_transactions(charger: Charger) -> list[TransactionRow]:
    zone = location_zone(charger)
    return [
        TransactionRow(tx, shown_time(tx.started_at, zone), shown_time(tx.stopped_at, zone))
        for tx in charger.transactions.all()[:RECENT_TRANSACTIONS]
    ]


# Why a disabled charger is not running, in the engine's words (its last snapshot's
# link_error: simulator.runtime.live_fleet).
DISABLED = "disabled in the set-up"


def charger_page(charger: Charger, user: Any, read_at: float | None = None) -> ChargerPage:
    """The charger page of this row, read from the database at `read_at` (Unix time; now
    if None)."""
    return ChargerPage(
        charger=charger,
        evses=list(charger.evses.order_by("connector_id")),
        vehicles=list(VehicleModel.objects.all()),
        transactions=recent_transactions(charger),
        shows_log=may_see_message_log(user),
        log_keeps=LogKeeps.from_settings(),
        csms_url=shown_csms_url(charger.csms_url),
        rendered_at=time.time() if read_at is None else read_at,
        can_change=user.has_perm("chargers.change_charger"),
        out_of_service="" if charger.enabled else DISABLED,
    )


def locations_overview() -> QuerySet[Location]:
    return Location.objects.annotate(charger_count=Count("chargers"))
