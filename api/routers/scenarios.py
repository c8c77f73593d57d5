"""Scenario runs (issue 16, docs/scenarios.md) through the API: start one inside the running
simulator (scenarios.launch), follow its live progress, cancel it, read and download its
result (JUnit XML, the result JSON, the OCPP frames as JSON Lines).

Reading needs `chargers.view_charger`; starting and cancelling, `chargers.change_charger`
(a run drives chargers as the live actions do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any, Literal

import orjson
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from api.auth import require
from api.errors import AUTH_ERRORS, READ_ERRORS, ApiError, ErrorBody, ErrorItem
from api.fleet_schemas import Strict
from api.pagination import Paged
from api.query_params import path_id
from chargers.validators import validate_csms_url
from scenarios import format, launch, library
from scenarios.junit import stored_run_junit
from scenarios.models import ACTIVE, ScenarioRun
from scenarios.texts import shown_variables

router = Router(tags=["scenarios"])

VIEW, CHANGE = "chargers.view_charger", "chargers.change_charger"
JSONL = "application/x-ndjson"
RunStatus = Literal["queued", "running", "passed", "failed", "error"]
# A 429's Retry-After: a run saves its progress every second and a built-in case lasts
# seconds, so a place is often free again within this; a client waits and asks again.
RETRY_AFTER_SECONDS = 10


class RunIn(Strict):
    source: str | None = Field(
        None, description="The scenario's YAML text (docs/scenarios.md). Or `library`."
    )
    library: str | None = Field(
        None, description="The name of a built-in case (GET /scenarios/library)."
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Override the file's `variables` (as --var does)."
    )
    seed: int | None = Field(
        None, ge=0, lt=2**63, description="Override the file's seed (to repeat a run)."
    )
    csms_url: str = Field(
        "",
        max_length=500,
        # Checked by the chargers' own rules in `start_run`, in their words; the pattern
        # stays in the OpenAPI document for a client generator.
        json_schema_extra={"pattern": r"^(wss?://\S+)?$"},
        description="The CSMS of the template's chargers (ws:// or wss://), unless the "
        "template names one.",
    )


class FormatErrorOut(Schema):
    line: int
    column: int
    path: str = Field(description="Where in the scenario, e.g. steps[2].plug_in.soc.")
    message: str
    field: str | None = Field(
        None,
        description="The request's field: `source` (or `library`), or `variables` for a "
        "given variable.",
    )


class FormatErrorBody(Schema):
    detail: str
    errors: list[FormatErrorOut]


class RunCounts(Schema):
    passed: int
    failed: int
    error: int
    total: int


class RunSummaryOut(Schema):
    id: int
    name: str
    file: str
    status: RunStatus = Field(
        description="`passed`: every check held; `failed`: the CSMS failed a check and "
        "everything ran; `error`: something could not run (the chargers could not be set "
        "up or connect, a step errored, the run was cancelled), even if a check failed "
        "too. `runscenario` exits 0, 1 and 3 for them."
    )
    message: str
    seed: int
    variables: dict[str, Any]
    created: datetime
    started: datetime | None
    finished: datetime | None
    duration: float | None = Field(description="Seconds, once finished.")
    chargers: RunCounts = Field(description="Chargers by verdict (so far, while it runs).")
    cancel_requested: bool

    @staticmethod
    def resolve_chargers(run: ScenarioRun) -> dict[str, int]:
        return run.charger_counts()

    @staticmethod
    def resolve_variables(run: ScenarioRun) -> dict[str, Any]:
        return shown_variables(run.variables)  # a secret one (by its name) is never shown


class RunOut(RunSummaryOut):
    csms_url: str
    result: dict[str, Any] = Field(
        description="The result JSON (docs/scenarios.md): per charger its steps with verdict, "
        "message and timings. While running: the steps done so far (saved every second), "
        "with `steps_total`."
    )
    frame_count: int
    frames_dropped: int
    links: dict[str, str]

    @staticmethod
    def resolve_links(run: ScenarioRun) -> dict[str, str]:
        base = f"/api/v1/scenarios/runs/{run.pk}"
        return {
            "self": base,
            "junit": f"{base}/junit.xml",
            "result": f"{base}/result.json",
            "frames": f"{base}/frames.jsonl",
        }


class RunFilters(Schema):
    name: str | None = Field(None, description="Only runs of this scenario (its name).")


STATUSES = Query(None, description="Only runs with this status, or any of these (repeat it).")


class RunToolFilters(RunFilters):
    """The MCP tool's filters: the statuses beside the name, as the API's query has them."""

    status: list[RunStatus] | None = Field(
        None,
        description="Only runs with one of these statuses (failed and error: every "
        "run that did not pass).",
    )


class LibraryCaseOut(Schema):
    name: str
    description: str


def _run(run_id: int) -> ScenarioRun:
    ScenarioRun.objects.mark_stale()
    found = ScenarioRun.objects.defer("frames").filter(pk=run_id).first()
    if found is None:
        raise Http404(f"No scenario run {run_id}.")
    return found


def _scenario(payload: RunIn) -> format.Scenario:
    if (payload.source is None) == (payload.library is None):
        both = payload.source is not None
        message = (
            "Give the scenario's `source` or a `library` name, not both."
            if both
            else "Give the scenario's `source` or a `library` name."
        )
        raise ApiError(
            422, "The request is not valid.", [ErrorItem(field="source", message=message)]
        )
    if payload.library is not None:
        case = library.find(payload.library)
        if case is None:
            names = ", ".join(c.name for c in library.cases()) or "none here"
            raise ApiError(
                422,
                "The request is not valid.",
                [
                    ErrorItem(
                        field="library",
                        message=f"No built-in case {payload.library!r} (the cases: {names}).",
                    )
                ],
            )
        scenario = format.load(case.path, payload.variables)
    else:
        assert payload.source is not None
        scenario = format.parse(payload.source, file="<api>", variables=payload.variables)
    unknown = format.unknown_variables(payload.variables, [scenario])
    if unknown:
        raise ApiError(
            422,
            "The request is not valid.",
            [ErrorItem(field="variables", message=f"{name}: {why}") for name, why in unknown],
        )
    return scenario


@router.post(
    "/scenarios/runs",
    response={
        202: RunOut,
        **AUTH_ERRORS,
        422: FormatErrorBody | ErrorBody,
        429: ErrorBody,
    },
    openapi_extra={
        "responses": {
            429: {
                "description": "CHARGESIM_SCENARIO_RUNS runs are queued or running.",
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before starting a run again.",
                        "schema": {"type": "integer"},
                    }
                },
            }
        }
    },
    summary="Start a scenario run",
    description="The scenario's YAML (`source`) or a built-in case (`library`), run inside "
    "the running simulator against its workers; answered at once (202, status `queued`): "
    "follow it with GET /scenarios/runs/{id}. A scenario with format errors is a 422 listing "
    "each with its line, column and path. At most CHARGESIM_SCENARIO_RUNS runs (default 4) "
    "may be queued or running: one more is a 429 (with Retry-After). Needs "
    "`chargers.change_charger`.",
)
@require(CHANGE)
async def start_run(request: HttpRequest, payload: RunIn) -> Any:
    try:
        scenario = await sync_to_async(_scenario)(payload)
    except format.ScenarioError as exc:
        given = {format.variable_path(name) for name in payload.variables}
        return Status(
            422,
            FormatErrorBody(
                detail=f"The scenario has {len(exc.errors)} problem"
                f"{'' if len(exc.errors) == 1 else 's'}.",
                errors=[
                    FormatErrorOut(
                        line=e.line,
                        column=e.column,
                        path=e.path,
                        message=e.message,
                        field="variables"
                        if e.path in given
                        else "library"
                        if payload.library
                        else "source",
                    )
                    for e in exc.errors
                ],
            ),
        )
    if payload.csms_url:
        try:
            validate_csms_url(payload.csms_url)  # the chargers' own rules: no password in it
        except DjangoValidationError as exc:
            raise ApiError(
                422,
                "The request is not valid.",
                [ErrorItem(field="csms_url", message=message) for message in exc.messages],
            ) from None
    homeless = launch.unmet_csms(scenario, payload.csms_url)
    if homeless is not None:
        raise ApiError(
            422, "The request is not valid.", [ErrorItem(field="csms_url", message=homeless)]
        )
    unmet = launch.unmet_hook(scenario, payload.csms_url)
    if unmet is not None:
        raise ApiError(
            422, "The request is not valid.", [ErrorItem(field="variables", message=unmet)]
        )
    try:
        run = await sync_to_async(launch.queue)(
            scenario,
            variables={str(k): v for k, v in payload.variables.items()},
            seed=payload.seed,
            csms_url=payload.csms_url,
        )
    except launch.TooManyRuns as exc:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        raise ApiError(429, str(exc), headers=headers) from None
    run = await launch.dispatch(run)
    return Status(202, run)


@router.get(
    "/scenarios/runs",
    response={200: list[RunSummaryOut], **READ_ERRORS},
    summary="List scenario runs",
    description="Newest first, paged (`limit`, `offset`); filter by `status` (repeat it for "
    "several: `status=failed&status=error` lists every run that did not pass) or `name`. "
    "Needs `chargers.view_charger`.",
)
@require(VIEW)
@paginate(Paged)
def list_runs(
    request: HttpRequest,
    filters: Query[RunFilters],
    # Repeated, so that a CI job after every run that did not pass asks once
    # (`status=failed&status=error`), not once per status. A parameter of its own, not a
    # field of RunFilters: there an error named it `filters.status.0`.
    status: list[RunStatus] | None = STATUSES,
) -> Any:
    ScenarioRun.objects.mark_stale()
    runs = ScenarioRun.objects.defer("frames", "source")
    if status:
        runs = runs.filter(status__in=status)
    if filters.name:
        runs = runs.filter(name=filters.name)
    return runs


@router.get(
    "/scenarios/runs/{run_id}",
    response={200: RunOut, **READ_ERRORS},
    summary="Follow a scenario run",
    description="Its status and result; while it runs, the steps each charger has done so "
    "far with their verdicts and timings (saved every second). Poll it until `status` is "
    "passed, failed or error. Needs `chargers.view_charger`.",
)
@require(VIEW)
def get_run(request: HttpRequest, run_id: int = path_id()) -> Any:
    return _run(run_id)


@router.post(
    "/scenarios/runs/{run_id}/cancel",
    response={202: RunOut, **READ_ERRORS, 409: ErrorBody},
    summary="Cancel a scenario run",
    description="A queued run is cancelled at once; a running one stops within about a "
    "second, removes its temporary chargers and is stored as error (`cancelled before it "
    "finished`). A finished run is a 409. Needs `chargers.change_charger`.",
)
@require(CHANGE)
def cancel_run(request: HttpRequest, run_id: int = path_id()) -> Any:
    run = _run(run_id)
    if run.status not in ACTIVE:
        raise ApiError(409, f"Scenario run {run_id} has finished ({run.status}).")
    return Status(202, launch.request_cancel(run))


def _download(body: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@router.get(
    "/scenarios/runs/{run_id}/junit.xml",
    response=READ_ERRORS,
    openapi_extra={
        "responses": {200: {"description": "JUnit XML", "content": {"application/xml": {}}}}
    },
    summary="Download a run's JUnit XML",
    description="One testcase per charger and step (scenarios/junit.py). While the run is "
    "queued or running, an errored testcase `unfinished` comes first: the report is not "
    "its verdict yet. Needs `chargers.view_charger`.",
)
@require(VIEW)
def run_junit(request: HttpRequest, run_id: int = path_id()) -> HttpResponse:
    run = _run(run_id)
    return _download(stored_run_junit(run), "application/xml", f"scenario-run-{run.pk}.xml")


@router.get(
    "/scenarios/runs/{run_id}/result.json",
    response=READ_ERRORS,
    openapi_extra={
        "responses": {200: {"description": "The result JSON", "content": {"application/json": {}}}}
    },
    summary="Download a run's result JSON",
    description="The verdicts and timings (docs/scenarios.md), as `runscenario --json` "
    "writes them. Needs `chargers.view_charger`.",
)
@require(VIEW)
def run_result(request: HttpRequest, run_id: int = path_id()) -> HttpResponse:
    run = _run(run_id)
    body = orjson.dumps(run.result, option=orjson.OPT_INDENT_2) + b"\n"
    return _download(body, "application/json", f"scenario-run-{run.pk}.json")


@router.get(
    "/scenarios/runs/{run_id}/frames.jsonl",
    response=READ_ERRORS,
    openapi_extra={
        "responses": {
            200: {
                "description": "One event a line: an OCPP frame or a connection event "
                "(at, kind, charger_id, charge_point_id, data).",
                "content": {JSONL: {}},
            }
        }
    },
    summary="Download a run's OCPP frames",
    description="Streamed JSON Lines, stored when the run finished (empty before). Needs "
    "`chargers.view_charger`.",
)
@require(VIEW)
def run_frames(request: HttpRequest, run_id: int = path_id()) -> StreamingHttpResponse:
    _run(run_id)
    run = ScenarioRun.objects.only("pk", "frames").get(pk=run_id)
    response = StreamingHttpResponse(_chunks(run.frame_lines()), content_type=JSONL)
    response["Content-Disposition"] = f'attachment; filename="scenario-run-{run.pk}.jsonl"'
    response["Cache-Control"] = "no-store"
    return response


async def _chunks(lines: Iterator[bytes], size: int = 1000) -> AsyncIterator[bytes]:
    # Async: under ASGI a sync iterator is read whole before the first byte goes out.
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


@router.get(
    "/scenarios/schema",
    response={200: dict[str, Any], **AUTH_ERRORS},
    summary="The scenario format's JSON Schema",
    description="docs/scenario.schema.json: a file as written, a `${var}` taken where a value "
    "is typed (it is checked once replaced). Needs `chargers.view_charger`.",
)
@require(VIEW)
def scenario_schema(request: HttpRequest) -> Any:
    return format.published_schema()


@router.get(
    "/scenarios/library",
    response={200: list[LibraryCaseOut], **AUTH_ERRORS},
    summary="List the built-in scenario cases",
    description="Their names (for `library` when starting a run) and descriptions. Needs "
    "`chargers.view_charger`.",
)
@require(VIEW)
def library_cases(request: HttpRequest) -> Any:
    return [LibraryCaseOut(name=c.name, description=c.description) for c in library.cases()]
