"""The MCP server: the automation API's operations as MCP tools and resources.

Built on the official Python SDK (`mcp`, its `MCPServer`). Two transports serve the same
server: stdio (`manage.py mcp`, for an MCP client that starts the command itself) and
streamable HTTP at `/mcp` behind the API's token auth (`api.mcp_http`).

Each tool calls the very function its REST endpoint runs, looked up in the endpoint's
router (`endpoint`), with the request object the transport's caller makes
(`api.mcp_calls`): the same permission checks, validation, engine round trips and error
messages, and no HTTP hop. A tool's description is its endpoint's summary and description.

- account: whoami;
- fleet: list, get and create locations and vehicle models; list, get, create (one or
  many) and change chargers;
- live: a charger's state (optionally once a condition holds), the fleet summary, each
  charger action (connect, plug_in, present_id_tag, stop, ... with wait_for) and any of
  them on many chargers (bulk_action);
- message log: a charger's frames and connection events, a page at a time;
- scenarios: start a run (YAML or a built-in case), follow it, list runs, cancel one.

Resources (JSON): chargesim://fleet/summary, chargesim://chargers/{id}/state and
chargesim://chargers/{id}/log (its newest entries).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO, cast

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from mcp.server.stdio import stdio_server
from mcp.types import ToolAnnotations
from ninja import Field, Router, Schema
from ninja.responses import NinjaJSONEncoder, Status
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticUndefined

from api.errors import ErrorItem, pydantic_text
from api.fleet_schemas import (
    ChargerDetail,
    ChargerFilters,
    ChargerIn,
    ChargerOut,
    ChargerPatch,
    ChargersCreated,
    ChargersIn,
    ChargerWritten,
    LocationFilters,
    LocationIn,
    LocationOut,
    VehicleModelFilters,
    VehicleModelIn,
    VehicleModelOut,
)
from api.mcp_calls import (
    caller_request,
    closed,
    error_text,
    in_thread,
    in_tool_words,
    not_found,
    not_json_types,
    refusal,
    tool_errors,
    unknown_arguments,
    without_status_codes,
)
from api.mcp_messages import CheckedLines
from api.mcp_owed import AnswersOwed
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Paged
from api.query_params import DB_INT_MAX
from api.routers import account, fleet, live, log, scenarios
from simulator import contract

INSTRUCTIONS = """\
ChargeSim simulates fleets of OCPP 1.6J charge points against a central system (CSMS).
Chargers are named by their charge point id. Read the fleet (locations, vehicle models,
chargers), read a charger's live state and the fleet summary, drive a charger as a driver
or technician would (plug in a vehicle, present an idTag, stop, unplug, faults, network
cuts) and read its OCPP message log. Actions can wait for a condition (wait_for, e.g.
"Charging") so that no polling is needed."""

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Only adds to the fleet: MCP's destructiveHint false is "performs only additive updates",
# which a client may take as safe to run without asking.
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
# Changes what is there: a charger's set-up, or what it does (a stop or a reboot ends a
# session at the CSMS, a scenario may drive the fleet's own chargers).
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)

# What a tool answers: the JSON its endpoint answers (the same field names). Not the
# endpoint's ninja schema as the tool's output type: the SDK validates a returned model
# again, by alias, and a ninja schema's aliases and resolvers read ORM objects, not itself.
Answer = dict[str, Any]


def as_answered(model: BaseModel) -> Answer:
    """A response schema's value as the endpoint's JSON answer is: dumped as ninja dumps
    it and encoded by its renderer's encoder (DjangoJSONEncoder: a time to the
    millisecond), so that a tool's answer is the API's, field for field (pydantic's own JSON
    mode writes microseconds: a run's `created` read by a tool was not the one a GET
    answers, and a script comparing the two saw a change where there was none)."""
    answer: Answer = json.loads(json.dumps(model.model_dump(), cls=NinjaJSONEncoder))
    return answer


FILTERS = "Only the items that match every filter given (all without)."
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="How many items to return.")]
Offset = Annotated[int, Field(ge=0, le=DB_INT_MAX, description="How many items to skip.")]
ChargePointId = Annotated[str, Field(description="The charger's charge point id.")]
# A row's id, checked as the REST path's (`path_id`): -1 is refused as out of range, not
# looked up and answered "No location -1.".
RowId = Annotated[int, Field(ge=1, le=DB_INT_MAX, description="Its id.")]
WaitFor = Annotated[
    contract.WaitCondition | None,
    Field(
        description="Answer once this holds: a status of the action's connector (e.g. "
        "Charging), or Accepted (online, boot accepted)."
    ),
]
Timeout = Annotated[
    float,
    Field(gt=0, le=contract.WAIT_TIMEOUT_MAX, description="Seconds to wait for wait_for."),
]


def endpoint(router: Router, path: str, method: str) -> tuple[Callable[..., Any], str]:
    """The function an endpoint runs (with its permission check) and its documentation,
    in the tools' words (`TOOL_WORDS`)."""
    for operation in router.path_operations[path].operations:
        if method in operation.methods:
            summary = (operation.summary or "").rstrip(".")
            text = ". ".join(p for p in (summary, operation.description) if p)
            return operation.view_func, in_tool_words(without_status_codes(text))
    raise LookupError(f"no {method} {path}")


async def _sync_call(
    view: Callable[..., Any], out: type[BaseModel], method: str, *args: Any, **kwargs: Any
) -> Any:
    """Run a synchronous endpoint function (the ORM) in a thread, as the caller, and read
    its answer into its response schema there too (a queryset is evaluated lazily), as the
    JSON the endpoint answers."""
    request = caller_request(method)

    def call() -> Any:
        result = view(request, *args, **kwargs)
        if isinstance(result, Status):
            result = result.value
        return as_answered(out.model_validate(result))

    return await in_thread(call)()


# -- account ---------------------------------------------------------------------------


_WHOAMI, _WHOAMI_DOC = endpoint(account.router, "/whoami", "GET")


@tool_errors
async def whoami() -> Answer:
    return await _sync_call(_WHOAMI, account.WhoAmI, "GET")


# -- fleet -------------------------------------------------------------------------------


class LocationPage(Schema):
    items: list[LocationOut]
    count: int = Field(description="How many there are in all (for limit and offset).")


class VehicleModelPage(Schema):
    items: list[VehicleModelOut]
    count: int = Field(description="How many there are in all (for limit and offset).")


class ChargerPage(Schema):
    items: list[ChargerOut]
    count: int = Field(description="How many there are in all (for limit and offset).")


_LIST_LOCATIONS, _LIST_LOCATIONS_DOC = endpoint(fleet.router, "/locations", "GET")
_GET_LOCATION, _GET_LOCATION_DOC = endpoint(fleet.router, "/locations/{location_id}", "GET")
_CREATE_LOCATION, _CREATE_LOCATION_DOC = endpoint(fleet.router, "/locations", "POST")
_LIST_VEHICLES, _LIST_VEHICLES_DOC = endpoint(fleet.router, "/vehicle-models", "GET")
_GET_VEHICLE, _GET_VEHICLE_DOC = endpoint(fleet.router, "/vehicle-models/{vehicle_model_id}", "GET")
_CREATE_VEHICLE, _CREATE_VEHICLE_DOC = endpoint(fleet.router, "/vehicle-models", "POST")
_LIST_CHARGERS, _LIST_CHARGERS_DOC = endpoint(fleet.router, "/chargers", "GET")
_GET_CHARGER, _GET_CHARGER_DOC = endpoint(fleet.router, "/chargers/{charge_point_id}", "GET")
_CREATE_CHARGER, _CREATE_CHARGER_DOC = endpoint(fleet.router, "/chargers", "POST")
_CREATE_CHARGERS, _CREATE_CHARGERS_DOC = endpoint(fleet.router, "/bulk/chargers", "POST")
_CHANGE_CHARGER, _CHANGE_CHARGER_DOC = endpoint(
    fleet.router, "/chargers/{charge_point_id}", "PATCH"
)

Wait = Annotated[
    bool,
    Field(
        description="Wait (a few seconds at most) for the simulator workers to say what they "
        "did with the change (`workers`); false answers at once."
    ),
]


def _page(limit: int, offset: int) -> Any:
    return Paged.Input(limit=limit, offset=offset)


@tool_errors
async def list_locations(
    filters: Annotated[LocationFilters | None, Field(description=FILTERS)] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Answer:
    return await _sync_call(
        _LIST_LOCATIONS,
        LocationPage,
        "GET",
        filters=filters or LocationFilters.model_validate({}),
        ninja_pagination=_page(limit, offset),
    )


@tool_errors
async def get_location(location_id: RowId) -> Answer:
    return await _sync_call(_GET_LOCATION, LocationOut, "GET", location_id=location_id)


@tool_errors
async def create_location(
    location: Annotated[LocationIn, Field(description="The new location's fields.")],
) -> Answer:
    return await _sync_call(_CREATE_LOCATION, LocationOut, "POST", payload=location)


@tool_errors
async def list_vehicle_models(
    filters: Annotated[VehicleModelFilters | None, Field(description=FILTERS)] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Answer:
    return await _sync_call(
        _LIST_VEHICLES,
        VehicleModelPage,
        "GET",
        filters=filters or VehicleModelFilters.model_validate({}),
        ninja_pagination=_page(limit, offset),
    )


@tool_errors
async def get_vehicle_model(vehicle_model_id: RowId) -> Answer:
    return await _sync_call(_GET_VEHICLE, VehicleModelOut, "GET", vehicle_model_id=vehicle_model_id)


@tool_errors
async def create_vehicle_model(
    vehicle_model: Annotated[VehicleModelIn, Field(description="The new model's fields.")],
) -> Answer:
    return await _sync_call(_CREATE_VEHICLE, VehicleModelOut, "POST", payload=vehicle_model)


@tool_errors
async def list_chargers(
    filters: Annotated[ChargerFilters | None, Field(description=FILTERS)] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Answer:
    return await _sync_call(
        _LIST_CHARGERS,
        ChargerPage,
        "GET",
        filters=filters or ChargerFilters.model_validate({}),
        ninja_pagination=_page(limit, offset),
    )


@tool_errors
async def get_charger(charge_point_id: ChargePointId) -> Answer:
    return await _sync_call(_GET_CHARGER, ChargerDetail, "GET", charge_point_id=charge_point_id)


@tool_errors
async def create_charger(
    charger: Annotated[ChargerIn, Field(description="The new charger's fields.")],
    wait: Wait = True,
) -> Answer:
    return await _sync_call(_CREATE_CHARGER, ChargerWritten, "POST", payload=charger, wait=wait)


@tool_errors
async def create_chargers(
    chargers: Annotated[
        list[ChargerIn], Field(description="The new chargers, each as create_charger takes it.")
    ],
    wait: Wait = True,
) -> Answer:
    return await _sync_call(
        _CREATE_CHARGERS,
        ChargersCreated,
        "POST",
        payload=ChargersIn(items=chargers),
        wait=wait,
    )


# The endpoint's `?force=true`, which its description and its 409 offer.
Force = Annotated[bool, Field(description=fleet.FORCE_RENAME.description)]


@tool_errors
async def change_charger(
    charge_point_id: ChargePointId,
    changes: Annotated[ChargerPatch, Field(description="The fields to change, and only them.")],
    wait: Wait = True,
    force: Force = False,
) -> Answer:
    return await _sync_call(
        _CHANGE_CHARGER,
        ChargerWritten,
        "PATCH",
        charge_point_id=charge_point_id,
        payload=changes,
        wait=wait,
        force=force,
    )


# -- live state and actions --------------------------------------------------------------


_STATE, _STATE_DOC = endpoint(live.router, "/chargers/{charge_point_id}/state", "GET")
_SUMMARY, _SUMMARY_DOC = endpoint(live.router, "/fleet/summary", "GET")


@tool_errors
async def charger_state(
    charge_point_id: ChargePointId,
    connector_id: Annotated[
        int, Field(ge=1, le=99, description="The connector wait_for looks at (1 is the first).")
    ] = 1,
    wait_for: WaitFor = None,
    timeout: Timeout = contract.WAIT_TIMEOUT_DEFAULT,
) -> Answer:
    params = live.StateParams(connector_id=connector_id, wait_for=wait_for, timeout=timeout)
    result: live.StateOut = await _STATE(
        caller_request(), charge_point_id=charge_point_id, params=params
    )
    return as_answered(result)


@tool_errors
async def fleet_summary() -> Answer:
    result: live.FleetSummaryOut = await _SUMMARY(caller_request())
    return as_answered(result)


def _action_tool(action: live.Action) -> Callable[..., Awaitable[Answer]]:
    """The tool of one charger action: the charge point id, the action's own arguments
    (its body's fields, flat), then wait_for and timeout; it runs the action's endpoint."""
    view, doc = endpoint(
        live.router, f"/chargers/{{charge_point_id}}/actions/{action.path}", "POST"
    )
    has_body = action.args is not live.NoArgs
    fields = action.args.model_fields

    async def run(
        charge_point_id: str,
        wait_for: contract.WaitCondition | None = None,
        timeout: float = contract.WAIT_TIMEOUT_DEFAULT,
        **values: Any,
    ) -> Answer:
        kwargs: dict[str, Any] = {
            "charge_point_id": charge_point_id,
            "params": live.WaitParams(wait_for=wait_for, timeout=timeout),
        }
        if has_body:
            kwargs["payload"] = action.args(**values)
        result: live.ActionOut = await view(caller_request("POST"), **kwargs)
        return as_answered(result)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("charge_point_id", keyword, annotation=ChargePointId)]
    for name, info in fields.items():
        default = inspect.Parameter.empty if info.default is PydanticUndefined else info.default
        # Annotated[type, constraints..., description], built at run time from the field.
        annotation = cast(Any, Annotated)[
            (info.annotation, *info.metadata, Field(description=info.description))
        ]
        parameters.append(inspect.Parameter(name, keyword, default=default, annotation=annotation))
    parameters += [
        inspect.Parameter("wait_for", keyword, default=None, annotation=WaitFor),
        inspect.Parameter(
            "timeout", keyword, default=contract.WAIT_TIMEOUT_DEFAULT, annotation=Timeout
        ),
    ]
    run.__signature__ = inspect.Signature(parameters, return_annotation=Answer)  # type: ignore[attr-defined]  # what the SDK reads
    run.__name__ = action.command
    run.__doc__ = doc
    return tool_errors(run)


if TYPE_CHECKING:
    ActionName = str
else:  # a Literal of the actions' commands: the tool's schema lists them as an enum
    ActionName = Literal[tuple(action.command for action in live.ACTIONS)]


@tool_errors
async def bulk_action(
    action: Annotated[ActionName, Field(description="The action, named as its own tool.")],
    filter: Annotated[live.BulkFilter, Field(description="The chargers it runs on.")],
    args: Annotated[
        dict[str, Any] | None,
        Field(
            description="The action's own arguments, as its single-charger tool takes them "
            "(e.g. plug_in: vehicle_model_id, soc, target_soc)."
        ),
    ] = None,
    wait_for: WaitFor = None,
    timeout: Timeout = contract.WAIT_TIMEOUT_DEFAULT,
) -> Answer:
    """Run one action on every charger the filter chooses (ids, location, live connector
    status, or `every` charger of the fleet; they combine), with a result per charger (per connector, for a connector
    action). A charger that refuses is a failed result, not an error. Needs
    `chargers.change_charger`."""
    chosen = next(a for a in live.ACTIONS if a.command == action)
    unknown = unknown_arguments(chosen.args, args or {}, "args.", f"the action {action}")
    if unknown:
        raise ToolError(error_text("The request is not valid.", unknown))
    view, _doc = endpoint(live.router, f"/fleet/actions/{chosen.path}", "POST")
    body_type = inspect.signature(view).parameters["payload"].annotation
    try:
        given = chosen.args(**(args or {}))
    except PydanticValidationError as exc:  # named as the REST body names them: args.<name>
        problems = [
            ErrorItem(
                field=".".join(["args", *(str(p) for p in e["loc"])]), message=pydantic_text(e)
            )
            for e in exc.errors()
        ]
        raise ToolError(error_text("The request is not valid.", problems)) from None
    payload = body_type(filter=filter, args=given)
    params = live.WaitParams(wait_for=wait_for, timeout=timeout)
    result: live.BulkOut = await view(caller_request("POST"), payload=payload, params=params)
    return as_answered(result)


# -- message log -------------------------------------------------------------------------


_LOG, _LOG_DOC = endpoint(log.router, "/chargers/{charge_point_id}/log", "GET")


@tool_errors
async def charger_log(
    charge_point_id: ChargePointId,
    since: Annotated[datetime | None, Field(description="Entries at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Field(description="Entries before (ISO 8601).")] = None,
    order: Annotated[
        Literal["asc", "desc"], Field(description="desc: newest first; asc: oldest first.")
    ] = "desc",
    limit: Annotated[
        int, Field(ge=1, le=log.MAX_LIMIT, description="How many entries a page holds at most.")
    ] = 100,
    cursor: Annotated[str | None, Field(description="The previous page's next_cursor.")] = None,
) -> Answer:
    return await _sync_call(
        _LOG,
        log.LogPage,
        "GET",
        charge_point_id=charge_point_id,
        since=since,
        until=until,
        order=order,
        limit=limit,
        cursor=cursor,
    )


# -- scenarios ---------------------------------------------------------------------------

_START_RUN, _START_RUN_DOC = endpoint(scenarios.router, "/scenarios/runs", "POST")
_GET_RUN, _GET_RUN_DOC = endpoint(scenarios.router, "/scenarios/runs/{run_id}", "GET")
_LIST_RUNS, _LIST_RUNS_DOC = endpoint(scenarios.router, "/scenarios/runs", "GET")
_CANCEL_RUN, _CANCEL_RUN_DOC = endpoint(scenarios.router, "/scenarios/runs/{run_id}/cancel", "POST")


class RunPage(Schema):
    items: list[scenarios.RunSummaryOut]
    count: int = Field(description="How many there are in all (for limit and offset).")


@tool_errors
async def start_scenario_run(
    run: Annotated[scenarios.RunIn, Field(description="The scenario and how to run it.")],
) -> Answer:
    answer = await _START_RUN(caller_request("POST"), payload=run)
    if isinstance(answer, Status) and isinstance(answer.value, scenarios.FormatErrorBody):
        # A problem of the whole text (YAML that cannot be read) has no path: not "1: : ...".
        problems = [
            ": ".join(p for p in (f"line {e.line}, column {e.column}", e.path, e.message) if p)
            for e in answer.value.errors
        ]
        raise ToolError("\n".join([answer.value.detail, *problems]))
    value = answer.value if isinstance(answer, Status) else answer
    out: Answer = await in_thread(lambda: as_answered(scenarios.RunOut.model_validate(value)))()
    return out


@tool_errors
async def get_scenario_run(run_id: RowId) -> Answer:
    return await _sync_call(_GET_RUN, scenarios.RunOut, "GET", run_id=run_id)


@tool_errors
async def list_scenario_runs(
    filters: Annotated[scenarios.RunToolFilters | None, Field(description=FILTERS)] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Answer:
    chosen = filters or scenarios.RunToolFilters.model_validate({})
    return await _sync_call(
        _LIST_RUNS,
        RunPage,
        "GET",
        filters=scenarios.RunFilters(name=chosen.name),
        status=chosen.status,
        ninja_pagination=_page(limit, offset),
    )


@tool_errors
async def cancel_scenario_run(run_id: RowId) -> Answer:
    return await _sync_call(_CANCEL_RUN, scenarios.RunOut, "POST", run_id=run_id)


# -- resources ---------------------------------------------------------------------------


async def _resource(read: Awaitable[Answer]) -> str:
    """A tool's answer as a resource's JSON text; its refusal as the resource's error: a
    charger that does not exist is the caller's mistake, -32602 naming it (the SDK's
    ResourceNotFoundError, as SEP-2164 says), not -32603, an internal error, which a
    client reads as the server's fault."""
    try:
        return json.dumps(await read)
    except ToolError as exc:
        if not_found(exc.__cause__):
            raise ResourceNotFoundError(str(exc)) from exc
        raise ResourceError(str(exc)) from exc


async def summary_resource() -> str:
    """The fleet summary: chargers, connectors by status, power, per location."""
    return await _resource(fleet_summary())


async def state_resource(charge_point_id: str) -> str:
    """A charger's live state."""
    return await _resource(charger_state(charge_point_id))


async def log_resource(charge_point_id: str) -> str:
    """A charger's newest 100 message-log entries."""
    return await _resource(charger_log(charge_point_id))


# -- the server --------------------------------------------------------------------------

TOOLS: list[tuple[Callable[..., Any], str, ToolAnnotations]] = [
    (whoami, _WHOAMI_DOC, READ),
    (list_locations, _LIST_LOCATIONS_DOC, READ),
    (get_location, _GET_LOCATION_DOC, READ),
    (create_location, _CREATE_LOCATION_DOC, ADD),
    (list_vehicle_models, _LIST_VEHICLES_DOC, READ),
    (get_vehicle_model, _GET_VEHICLE_DOC, READ),
    (create_vehicle_model, _CREATE_VEHICLE_DOC, ADD),
    (list_chargers, _LIST_CHARGERS_DOC, READ),
    (get_charger, _GET_CHARGER_DOC, READ),
    (create_charger, _CREATE_CHARGER_DOC, ADD),
    (create_chargers, _CREATE_CHARGERS_DOC, ADD),
    (change_charger, _CHANGE_CHARGER_DOC, WRITE),
    (charger_state, _STATE_DOC, READ),
    (fleet_summary, _SUMMARY_DOC, READ),
    *((_action_tool(action), "", WRITE) for action in live.ACTIONS),
    (bulk_action, "", WRITE),
    (charger_log, _LOG_DOC, READ),
    (start_scenario_run, _START_RUN_DOC, WRITE),
    (get_scenario_run, _GET_RUN_DOC, READ),
    (list_scenario_runs, _LIST_RUNS_DOC, READ),
    (cancel_scenario_run, _CANCEL_RUN_DOC, WRITE),
]


def _stdin_text() -> TextIO:
    """Standard input as text, left open when this is closed (it is the process's)."""
    return open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)


class _Server(MCPServer):
    """The SDK's server, with the arguments it refuses worded as the API words a 422.

    The SDK checks a call's arguments against the tool's signature before the tool runs,
    and its refusal is pydantic's own text: the arguments model's name, error type codes
    and a link per problem. The model gets the endpoint's form instead: "The request is
    not valid.", then each argument and what is wrong with it (`refusal`)."""

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().add_tool(fn, *args, **kwargs)
        tool = self._tool_manager.get_tool(kwargs.get("name") or fn.__name__)
        if tool is not None:
            closed(tool.parameters)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        problems = []
        if tool is not None:
            model = tool.fn_metadata.arg_model
            problems = unknown_arguments(model, arguments) + not_json_types(model, arguments)
        if tool is not None and problems:
            # Said with what else the SDK's check finds, as one answer names every problem;
            # a name said already is not said again (a nested model's own check names its
            # unknown names too, "of this request").
            named = {item.field for item in problems}
            try:
                tool.fn_metadata.validate_arguments(arguments)
            except PydanticValidationError as exc:
                for e in exc.errors():
                    field = ".".join(str(p) for p in e["loc"])
                    if e["loc"] and str(e["loc"][0]) not in named and field not in named:
                        problems.append(ErrorItem(field=field, message=pydantic_text(e)))
            text = error_text("The request is not valid.", problems)
            raise ToolError(f"Error executing tool {name}: {text}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            # Only the SDK's own check raises with pydantic's error as the cause: a tool's
            # refusals come wrapped in our ToolError (`tool_errors`), crashes unexpected.
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(
                cause, PydanticValidationError
            ):
                raise
            raise ToolError(f"Error executing tool {name}: {refusal(cause)}") from cause

    async def run_stdio_async(self) -> None:
        """The SDK's stdio transport, with a message that gives a key twice answered with
        an error before the SDK reads it (`api.mcp_messages`). Standard input is read as
        the SDK reads it (UTF-8, an undecodable byte replaced); given explicitly, it is not
        diverted to the null device while serving, which matters only to a child process
        reading it, and no tool starts one. Its end lets the requests read before it be
        answered (`api.mcp_owed`)."""
        lines = CheckedLines(anyio.wrap_file(_stdin_text()))
        owed = AnswersOwed(lines)
        async with stdio_server(stdin=cast(Any, owed)) as (read_stream, write_stream):
            lines.answer_to(write_stream)
            await self._lowlevel_server.run(
                read_stream,
                owed.watching(write_stream),
                self._lowlevel_server.create_initialization_options(),
            )


def build() -> MCPServer:
    """The server with every tool and resource."""
    server = _Server(
        "ChargeSim",
        title="ChargeSim",
        instructions=INSTRUCTIONS,
        version="1",
        log_level="WARNING",
    )
    for tool, doc, hints in TOOLS:
        server.add_tool(tool, description=doc or inspect.getdoc(tool), annotations=hints)
    json = "application/json"
    server.resource("chargesim://fleet/summary", mime_type=json)(summary_resource)
    server.resource("chargesim://chargers/{charge_point_id}/state", mime_type=json)(state_resource)
    server.resource("chargesim://chargers/{charge_point_id}/log", mime_type=json)(log_resource)
    return server


@functools.cache
def server() -> MCPServer:
    """The process's server, built once."""
    return build()


__all__ = ["build", "refusal", "server"]
