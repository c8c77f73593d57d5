"""Dashboard pages: server-rendered, made live by a WebSocket per page."""

from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from chargers.dashboard import pages
from chargers.models import Charger
from locations.models import Location
from simulator import contract
from vehicles.models import VehicleModel


@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    page = pages.fleet_page(request.GET, request.GET.get("page"), user=request.user)
    context = {"fleet": page, "nav": "fleet", "vehicles": [], "bulk_filter": {}}
    if page.can_change:  # the bulk actions' form
        context["vehicles"] = list(VehicleModel.objects.all())
        bulk_filter = page.filter.bulk_filter()
        context["bulk_filter"] = bulk_filter or {}
        context["bulk_too_many"] = bulk_filter is None
        context["bulk_max_ids"] = pages.BULK_MAX_IDS
        context["fault_codes"] = contract.FAULT_CODES
    return render(request, "dashboard/fleet.html", context)


@login_required
def charger_detail(request: HttpRequest, pk: int) -> HttpResponse:
    read_at = time.time()  # before the read: an edit applied meanwhile is then not missed
    charger = Charger.objects.select_related("location", "default_vehicle").filter(pk=pk).first()
    if charger is None:
        # A charge point id of digits only (serial numbers often are) matches this path
        # before `charger_by_id` can: with no charger of that pk, it is read as one.
        return charger_by_id(request, str(pk))
    page = pages.charger_page(charger, request.user, read_at)
    return render(request, "dashboard/charger.html", {"page": page, "nav": "fleet"})


@login_required
def charger_by_id(request: HttpRequest, charge_point_id: str) -> HttpResponse:
    """/chargers/DEMO-0001/: the charge point id, as the API, the logs and the CSMS name a
    charger, leads to its page (a user who typed it got a 404 listing the URL patterns)."""
    charger = get_object_or_404(Charger.objects.only("pk"), charge_point_id__iexact=charge_point_id)
    return redirect("chargers:charger", pk=charger.pk)


@login_required
def charger_transactions(request: HttpRequest, pk: int) -> HttpResponse:
    """The charger page's recent transactions alone (its live script fetches them)."""
    charger = get_object_or_404(Charger.objects.select_related("location"), pk=pk)
    return render(
        request,
        "dashboard/_transactions.html",
        {
            "transactions": pages.recent_transactions(charger),
            "time_zone": charger.location.time_zone,
        },
    )


@login_required
def location_list(request: HttpRequest) -> HttpResponse:
    locations = pages.locations_overview()
    return render(request, "dashboard/locations.html", {"locations": locations, "nav": "locations"})


@login_required
def location_detail(request: HttpRequest, pk: int) -> HttpResponse:
    location = get_object_or_404(Location, pk=pk)
    page = pages.fleet_page(request.GET, request.GET.get("page"), location=location)
    return render(
        request,
        "dashboard/location.html",
        {"location": location, "fleet": page, "nav": "locations"},
    )
