"""Dashboard pages of scenario runs: the list with a form to start one, and a run's page.

Both read and act through the API (api/routers/scenarios.py) from the browser, with the
session's cookie: the form posts to POST /api/v1/scenarios/runs (so its errors are the
API's, with line and column), and a run's page polls GET /api/v1/scenarios/runs/{id}
every second while it runs. Seeing them needs `chargers.view_charger`, as the API does;
starting and cancelling, `chargers.change_charger`.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from scenarios import library
from scenarios.models import ScenarioRun

LIST_SIZE = 50
VIEW, CHANGE = "chargers.view_charger", "chargers.change_charger"
EXAMPLE = """\
name: boot-and-charge
description: One template charger boots, charges and stops.
chargers:
  template: {count: 1}
steps:
  - expect: {status: Accepted}
  - plug_in: {connector: 1, soc: 40}
  - present_id_tag: {id_tag: DEMO-TAG}
  - wait: {status: Charging, timeout: 30}
  - stop: {connector: 1}
  - wait: {status: Finishing}
"""


@login_required
@permission_required(VIEW, raise_exception=True)
def run_list(request: HttpRequest) -> HttpResponse:
    ScenarioRun.objects.mark_stale()
    runs = list(ScenarioRun.objects.defer("frames", "source")[:LIST_SIZE])
    context = {
        "nav": "scenarios",
        "runs": [(run, run.charger_counts()) for run in runs],
        "can_run": request.user.has_perm(CHANGE),
        "cases": library.cases(),
        "example": EXAMPLE,
    }
    return render(request, "dashboard/scenarios.html", context)


@login_required
@permission_required(VIEW, raise_exception=True)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(ScenarioRun.objects.defer("frames"), pk=pk)
    context = {"nav": "scenarios", "run": run, "can_run": request.user.has_perm(CHANGE)}
    return render(request, "dashboard/scenario_run.html", context)
