"""Live state and actions, answered by the simulator worker that runs each charger.

The web side holds nothing live: every request here asks the worker of the charger's shard
through the engine client (`chargers.engine_client`) and awaits its answer, whichever of
the workers it is. A charger is named by its charge point id, as in the fleet resources.

- `GET /chargers/{id}/state`: its snapshot (connection, boot, each connector's status,
  power, energy, SoC, transaction); with `wait_for`, once that condition holds.
- `POST /chargers/{id}/actions/<action>`: one endpoint per action, each with its own body.
- `GET /fleet/summary`: the counts of every shard, added up, and per location.
- `POST /fleet/actions/<action>`: the same actions on every charger a filter chooses (ids,
  location, live connector status), with a result per charger (per connector).

`wait_for` (query): the action is answered only once the condition holds (a connector
status of the action's connector, or `Accepted`: online with its boot accepted), or when
`timeout` seconds have passed. Either way the answer is 200 and says which (`wait.met`):
the action itself was done, and a client that took a 504 for "not done" and sent it again
would plug in a second time. Errors: 404 no such charger (or location); 409 the charger
refuses (the worker's words: "no vehicle plugged in") or no worker runs it (disabled); 422
a bad value; 503 (`UNAVAILABLE`) no worker acknowledged (none runs that shard), the worker
that acknowledged went away before it answered, or the channel layer or the database is
out of reach; 504 the worker acknowledged but did not answer in time.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import ValidationError as NinjaValidationError
from ninja.schema import DjangoGetter
from pydantic import (
    BaseModel,
    ModelWrapValidatorHandler,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from api import no_worker
from api.auth import require
from api.errors import READ_ERRORS, WRITE_ERRORS, ApiError, ErrorBody, ErrorItem
from api.fleet_schemas import Strict
from api.query_params import DB_INT_MAX
from chargers.engine_client import (
    BulkOutcome,
    EngineClient,
    EngineError,
    NotFinished,
    NoWorker,
)
from chargers.models import Charger
from locations.models import Location
from simulator import contract
from simulator.contract import overrides, traffic

router = Router(tags=["live"])

VIEW = "chargers.view_charger"
CHANGE = "chargers.change_charger"
STATE_TAGS = ["live state"]
ACTION_TAGS = ["charger actions"]
BULK_TAGS = ["bulk actions"]

# The contract's vocabulary as Literal types: the OpenAPI document lists them as enums.
WaitCondition = contract.WaitCondition
ConnectorStatusName = contract.StatusName
FaultCode = contract.FaultCode
BULK_MAX_IDS = 10_000
# Why a charger's bulk result is not ok: the engine's kinds (contract.ERROR_*), the engine
# client's (no_worker, timeout, worker_gone) and the API's own (not_found); a test holds them
# equal.
BulkError = Literal[
    "invalid",
    "refused",
    "not_running",
    "failed",
    "skipped",
    "no_worker",
    "timeout",
    "worker_gone",
    "not_found",
]


def client() -> EngineClient:
    """The engine client a request uses (a function, so that tests can shorten its waits)."""
    return EngineClient()


# -- schemas: what the engine reports ---------------------------------------------------------


class EvseState(Schema):
    connector_id: int
    status: ConnectorStatusName
    error_code: contract.ErrorCodeName = Field(
        description="OCPP ChargePointErrorCode; NoError when not faulted"
    )
    power_w: float
    register_wh: float = Field(description="Energy.Active.Import.Register")
    soc: float | None = Field(description="the plugged-in vehicle's state of charge, percent")
    voltage_v: list[float]
    current_a: list[float]
    transaction_id: int | None = Field(description="the CSMS's id, once it confirmed the start")
    id_tag: str | None
    vehicle: str | None = Field(description="the plugged-in vehicle model")
    info: str | None = Field(
        description="why the connector is in its status, as its last StatusNotification's "
        "info said it (e.g. what holds a car in SuspendedEVSE); null when it said nothing"
    )


class NetworkState(Schema):
    latency_ms: int = Field(description="added to each frame each way")
    jitter_ms: int = Field(description="up to this much more, at random")
    drop_rate: float = Field(description="share of the charger's outgoing frames lost, 0..1")


class ChargerState(Schema):
    id: int | None = Field(description="the charger's primary key")
    charge_point_id: str
    location_id: int | None
    link: contract.LinkName = Field(description="offline, connecting or online")
    link_error: str | None
    boot: contract.BootName = Field(
        description="None (not booted since power-on), Pending, Accepted, Rejected"
    )
    power_type: str
    evses: list[EvseState]
    # What the charger page shows too: a script that set the network or started a firmware
    # update reads them here rather than from the page.
    network: NetworkState = Field(
        description="the network conditions the charger runs with now (set-network)"
    )
    offline_until: float | None = Field(
        None, description="Unix time a network cut (cut-network) ends; null: no cut"
    )
    firmware_status: str = Field(
        "Idle", description="the last FirmwareStatusNotification's status, or Idle"
    )
    firmware_waiting: str | None = Field(
        None, description="what a firmware update waits for now, in words; null: it does not wait"
    )
    firmware_waiting_until: float | None = Field(
        None, description="Unix time that wait ends; null: until something happens (a session ends)"
    )
    at: float = Field(description="Unix time of the snapshot")


class WaitOut(Schema):
    condition: WaitCondition
    met: bool = Field(description="false: the timeout passed first")
    status: str = Field(
        description="the connector's status when answered (for Accepted: the boot state when "
        "online, else the link state)"
    )
    waited: float = Field(description="seconds from the end of the action to the answer")


class StateOut(Schema):
    charger: ChargerState
    wait: WaitOut | None = None


class ActionOut(Schema):
    charge_point_id: str
    action: str
    message: str = Field(description="what the worker did, in words")
    wait: WaitOut | None = Field(None, description="present when the action carried wait_for")
    charger: ChargerState = Field(description="the charger's state after the action")


class SiteSummary(Schema):
    location_id: int
    chargers: int
    charging: int = Field(description="connectors drawing power")
    power_w: float
    statuses: dict[str, int]
    links: dict[str, int]
    held_back: int = Field(
        description="connectors the site's load management holds below what they would draw"
    )
    grid_limit_w: float | None = Field(
        description="the location's grid limit as the workers apply it (null: none)"
    )
    load_management: bool = Field(
        description="whether the site's controller keeps it under its grid limit"
    )


class FleetSummaryOut(Schema):
    shards: int = Field(description="CHARGESIM_SHARDS: the workers the web side addresses")
    answered: list[int] = Field(description="shards whose worker answered")
    missing: list[int] = Field(description="shards without a worker (their chargers missing)")
    chargers: int = Field(description="chargers the answering workers run")
    chargers_enabled: int = Field(
        description="enabled chargers in the database, of every shard: `chargers` plus those "
        "of missing shards (and any not loaded yet)"
    )
    chargers_on_missing_shards: int = Field(
        description="enabled chargers of the shards in `missing`: not running, not in the "
        "other counts"
    )
    statuses: dict[str, int] = Field(description="connectors by status")
    links: dict[str, int] = Field(description="chargers by link state")
    power_w: float
    locations: list[SiteSummary]


class BulkItem(Schema):
    charge_point_id: str | None
    connector_id: int | None = Field(description="the connector a connector action ran on")
    ok: bool
    message: str
    error: BulkError | None = Field(
        None,
        description="when not ok: invalid, refused, not_running, skipped (a listed charger "
        "the other filters leave out), not_found, no_worker, timeout, worker_gone (its "
        "worker stopped answering or restarted before it answered: the action may or may "
        "not have been done), failed",
    )
    status: str | None = Field(None, description="the connector's status afterwards")
    session: bool | None = Field(
        None,
        description="connector actions: whether a transaction runs on the connector "
        "afterwards (a pause-ev without one paused no session)",
    )
    wait: WaitOut | None = None


class BulkOut(Schema):
    action: str
    total: int
    succeeded: int
    failed: int
    results: list[BulkItem]
    missing_shards: list[int] = Field(description="shards without a worker")
    unfinished_shards: list[int] = Field(description="shards that did not answer in time")
    gone_shards: list[int] = Field(
        description="shards whose worker acknowledged, then stopped answering or restarted "
        "before it answered (its chargers' results say worker_gone)"
    )


# -- schemas: what a caller sends ---------------------------------------------------------------


class WaitParams(Schema):
    wait_for: WaitCondition | None = Field(
        None,
        description="answer once this holds: a status of the action's connector, or "
        "Accepted (online, boot accepted)",
    )
    timeout: float = Field(
        contract.WAIT_TIMEOUT_DEFAULT,
        gt=0,
        le=contract.WAIT_TIMEOUT_MAX,
        description="seconds to wait for wait_for at most",
    )

    def wait(self) -> contract.WaitFor | None:
        if self.wait_for is None:
            return None
        return contract.WaitFor(condition=self.wait_for, timeout=self.timeout)


class StateParams(WaitParams):
    connector_id: int = Field(1, ge=1, le=99, description="the connector wait_for looks at")


class Arguments(Strict):
    """An action's arguments: a name it does not take is a 422 naming it, not ignored (a
    script's `vehicle_id` for `vehicle_model_id` would otherwise plug in the default car);
    a number is a JSON number (`true` is not connector 1). A NaN or an infinity is refused
    as such ("a finite number"), not by a range check that it fails for being no number
    at all ("less than or equal to ...")."""

    @model_validator(mode="wrap")
    @classmethod
    def an_object(cls, values: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # ninja's schemas read attributes from any object (`from_attributes`, for ORM
        # rows): a list, a string or a number had none to refuse and ran the action with
        # the defaults.
        if not isinstance(values, Mapping | BaseModel | DjangoGetter):
            raise PydanticCustomError("model_type", "The arguments must be an object (JSON {...}).")
        return handler(values)


class NoArgs(Arguments):
    """An action that takes no arguments: any given is refused (422), never ignored."""


class ConnectorArgs(Arguments):
    connector_id: int = Field(1, ge=1, le=99, description="the connector (1 is the first)")


class PlugInArgs(ConnectorArgs):
    vehicle_model_id: int | None = Field(
        None,
        ge=1,
        le=DB_INT_MAX,
        description="the vehicle model; none: the charger's default vehicle",
    )
    soc: float = Field(20.0, ge=0, le=100, description="the vehicle's state of charge, percent")
    target_soc: float = Field(
        100.0,
        ge=1,
        le=100,
        description="the EV stops drawing power here (SuspendedEV); not below soc",
    )

    @model_validator(mode="after")
    def a_target_to_charge_to(self) -> "PlugInArgs":
        if self.target_soc < self.soc:
            message = (
                f"target_soc {self.target_soc:g} % is below soc {self.soc:g} %: the EV would "
                "draw nothing"
            )
            raise _at_field("target_soc", message, self.target_soc)
        return self


class PresentIdTagArgs(ConnectorArgs):
    id_tag: str = Field(
        min_length=1,
        max_length=20,
        description="printable ASCII (OCPP 1.6 idTag, a CiString20Type)",
    )

    @field_validator("id_tag")
    @classmethod
    def an_id_tag(cls, id_tag: str) -> str:
        problem = traffic.id_tag_problem(id_tag.strip())  # the engine strips it
        if problem is not None:
            raise ValueError(problem)
        return id_tag


class InjectFaultArgs(ConnectorArgs):
    error_code: FaultCode = Field(
        "OtherError", description="the OCPP ChargePointErrorCode its StatusNotification gives"
    )
    info: str = Field("", max_length=50, description="the StatusNotification's info text")


class CutNetworkArgs(Arguments):
    seconds: float = Field(ge=1, le=86_400, description="how long the network stays down")


def _at_field(field: str, message: str, value: Any) -> ValidationError:
    """A model validator's refusal located at one field: a plain ValueError there is the
    whole body's (`errors[].field` null), though the check knows which field is wrong."""
    error = InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}),
        loc=(field,),
        input=value,
    )
    return ValidationError.from_exception_data("arguments", [error])


class AnswerOverrideArgs(Arguments):
    """A rule (action, mode and one of status, call_error, delay, no_answer), or clear."""

    action: str | None = Field(None, description="the CSMS's CALL, e.g. RemoteStartTransaction")
    mode: Literal["next", "every"] = Field("next", description="once, or until cleared")
    status: str | None = Field(None, description="this status in the normal answer")
    call_error: str | None = Field(None, description="a CALLERROR code, e.g. NotSupported")
    description: str | None = Field(
        None,
        max_length=overrides.DESCRIPTION_MAX,
        description="the CALLERROR's errorDescription (with call_error)",
    )
    delay: float | None = Field(None, description="seconds: the normal answer, this late")
    no_answer: bool | None = Field(None, description="true: never answer")
    clear: bool = Field(False, description="remove the run-time rules (of `action` if given)")

    @model_validator(mode="after")
    def checked(self) -> "AnswerOverrideArgs":
        if not self.clear:
            try:
                overrides.check_rule(_given(self))  # its ValueError is a 422 naming the problem
            except overrides.FieldError as exc:
                if exc.field is None or exc.field not in type(self).model_fields:
                    raise
                raise _at_field(exc.field, str(exc), getattr(self, exc.field)) from None
        elif self.action is not None and self.action not in overrides.ANSWER_STATUSES:
            raise ValueError(f"{self.action!r} is not a CALL the CSMS sends")
        return self


class NetworkArgs(Arguments):
    latency_ms: int | None = Field(
        None, ge=0, le=overrides.LATENCY_MAX_MS, description="added to each frame it sends"
    )
    jitter_ms: int | None = Field(
        None, ge=0, le=overrides.LATENCY_MAX_MS, description="up to this much more, at random"
    )
    drop_rate: float | None = Field(None, ge=0, le=1, description="share of frames lost")
    seed: int | None = Field(None, description="seeds the charger's jitter and drops")

    @model_validator(mode="after")
    def something(self) -> "NetworkArgs":
        if not _given(self):
            raise ValueError("give latency_ms, jitter_ms, drop_rate or seed")
        return self


class CloseConnectionArgs(Arguments):
    code: int = Field(1000, description="a close code: 1000-1003, 1007-1014 or 3000-4999")
    reason: str = Field("", description="at most 123 bytes")

    # Each checked on its own, so that a refusal names its field (a model validator's
    # error names none).
    @field_validator("code")
    @classmethod
    def code_checked(cls, code: int) -> int:
        overrides.check_close({"code": code})
        return code

    @field_validator("reason")
    @classmethod
    def reason_checked(cls, reason: str) -> str:
        overrides.check_close({"reason": reason})
        return reason


class ClockSkewArgs(Arguments):
    seconds: float = Field(
        ge=-overrides.SKEW_MAX_S,
        le=overrides.SKEW_MAX_S,
        description="the charger's clock is this far ahead (negative: behind)",
    )


def _given(args: Schema) -> dict[str, Any]:
    """The values a caller gave (the engine tells "left out" from a default)."""
    return {k: v for k, v in args.dict().items() if v is not None and k != "clear"}


class BulkFilter(Arguments):
    charge_point_ids: list[str] | None = Field(
        None, max_length=BULK_MAX_IDS, description="these chargers (each gets a result)"
    )
    location_id: int | None = Field(
        None, ge=1, le=DB_INT_MAX, description="the chargers at this location"
    )
    status: ConnectorStatusName | None = Field(
        None,
        description="the connectors in this status now: a connector action runs on each of "
        "them (their connector_id, not the one in args), a charger action on each charger "
        "with one",
    )
    every: bool = Field(
        False,
        description="every enabled charger of the fleet (the other filters narrow it): "
        "said outright, as a filter left empty is refused",
    )

    @model_validator(mode="after")
    def names_chargers(self) -> "BulkFilter":
        chosen = (self.charge_point_ids, self.location_id, self.status)
        if all(value is None for value in chosen) and not self.every:
            raise ValueError(
                "choose the chargers: charge_point_ids, location_id, status or every: true"
            )
        return self


@dataclass(frozen=True)
class Action:
    path: str
    command: str
    args: type[Schema]
    summary: str
    description: str


ACTIONS = (
    Action("connect", "connect", NoArgs, "Connect", "Open its connection to the CSMS."),
    Action(
        "disconnect",
        "disconnect",
        NoArgs,
        "Disconnect",
        "Close its connection (it stays offline until connected).",
    ),
    Action(
        "reboot",
        "reboot",
        NoArgs,
        "Reboot (power cycle)",
        "The charger goes down as after a power loss and boots again: an open transaction "
        "ends with reason PowerLoss, a new BootNotification follows; the plugged-in "
        "vehicles stay, and one that was charging starts a new session with its idTag once "
        "the boot is accepted. `wait_for=Accepted` answers once it is back.",
    ),
    Action(
        "plug-in",
        "plug_in",
        PlugInArgs,
        "Plug in a vehicle",
        "The connector goes Preparing (or Charging, if an idTag was presented first).",
    ),
    Action(
        "present-id-tag",
        "present_id_tag",
        PresentIdTagArgs,
        "Present an idTag",
        "A driver holds a card to the reader: Authorize, then StartTransaction if a vehicle "
        "is plugged in; the same idTag again stops its own transaction.",
    ),
    Action("stop", "stop", ConnectorArgs, "Stop the transaction", "Reason Local."),
    Action(
        "unplug",
        "unplug",
        ConnectorArgs,
        "Unplug the vehicle",
        "During a transaction: StopTransactionOnEVSideDisconnect decides what follows.",
    ),
    Action(
        "pause-ev",
        "pause_ev",
        ConnectorArgs,
        "Pause the EV",
        "The EV stops drawing power: SuspendedEV (SuspendedEVSE, if the charger offers "
        "nothing, wins). The transaction goes on.",
    ),
    Action(
        "resume-ev",
        "resume_ev",
        ConnectorArgs,
        "Resume the EV",
        "The paused EV draws power again: Charging.",
    ),
    Action(
        "inject-fault",
        "inject_fault",
        InjectFaultArgs,
        "Inject a fault",
        "The connector goes Faulted with this OCPP error code.",
    ),
    Action(
        "clear-fault",
        "clear_fault",
        ConnectorArgs,
        "Clear the fault",
        "Back to the status the connector would have without it.",
    ),
    Action(
        "cut-network",
        "cut_network",
        CutNetworkArgs,
        "Cut the network",
        "The connection drops now and stays down this long; transaction messages queue up "
        "and go out after it (not a reboot).",
    ),
    Action(
        "set-answer-override",
        "set_answer_override",
        AnswerOverrideArgs,
        "Override its answers",
        "How the charger answers the CSMS's next (or every) CALL of an action: a status in "
        "the normal answer (the call then has no effect: a Rejected RemoteStartTransaction "
        "starts nothing), a CALLERROR, the normal answer late (`delay` s), or no answer. "
        'Example: {"action": "RemoteStartTransaction", "mode": "every", "status": '
        '"Rejected"}. `clear: true` removes the rules set this way (the charger\'s stored '
        "ones stay). Not stored: a restart forgets them.",
    ),
    Action(
        "set-network",
        "set_network",
        NetworkArgs,
        "Set network conditions",
        "Latency and jitter added to each frame the charger sends (in order, never "
        "reordered), and the share of its frames lost (a lost transaction message is sent "
        "again as after a lost answer). Not stored.",
    ),
    Action(
        "close-connection",
        "close_connection",
        CloseConnectionArgs,
        "Close its connection with a code",
        "The charger closes its websocket with this close code and reason, then reconnects "
        "as after any close (no new BootNotification).",
    ),
    Action(
        "set-clock-skew",
        "set_clock_skew",
        ClockSkewArgs,
        "Skew its clock",
        "The timestamps it sends are off by this many seconds, whatever time the CSMS sets. "
        "Not stored.",
    ),
    Action(
        "request-certificate",
        "request_certificate",
        NoArgs,
        "Request a charge point certificate",
        "SignCertificate with a CSR for a new key (security whitepaper); the certificate the "
        "CSMS sends back in CertificateSigned is used for security profile 3.",
    ),
)

ACTION_RESPONSES: dict[int, Any] = {
    200: ActionOut,
    **WRITE_ERRORS,
    409: ErrorBody,
    503: ErrorBody,
    504: ErrorBody,
}
STATE_RESPONSES: dict[int, Any] = {
    200: StateOut,
    **READ_ERRORS,
    409: ErrorBody,
    422: ErrorBody,
    503: ErrorBody,
    504: ErrorBody,
}
BULK_RESPONSES: dict[int, Any] = {200: BulkOut, **WRITE_ERRORS, 503: ErrorBody}
# Every 503 an operation that asks the workers answers (each worth sending again later):
# the engine client's NoWorker, WorkerGone and LayerDown, and `api.errors.on_database_down`.
UNAVAILABLE = (
    "503 (`detail` says which; send it again later): no worker runs the charger's shard; "
    "the worker that acknowledged stopped answering or restarted before it answered "
    "(`detail` says whether the action was carried out); the channel layer (Redis) or the "
    "database cannot be reached"
)
ERRORS_DOC = (
    " Errors: 404 no such charger; 409 the charger refuses, with the worker's reason, or no "
    f"worker runs it; 422 a bad value; {UNAVAILABLE}; 504 no answer in time."
)


# -- one charger --------------------------------------------------------------------------------


async def _charger_pk(charge_point_id: str) -> int:
    pk = (
        await Charger.objects.filter(charge_point_id=charge_point_id)
        .values_list("pk", flat=True)
        .afirst()
    )
    if pk is None:
        raise ApiError(404, f"No charger {charge_point_id!r}.")
    return pk


async def ask_charger(
    charge_point_id: str,
    command: str,
    args: Mapping[str, Any],
    wait: contract.WaitFor | None,
) -> contract.CommandResult:
    """The worker's result of a command (or `state`) that it did; an ApiError with the
    status to answer otherwise. The routers and the MCP tools call this."""
    pk = await _charger_pk(charge_point_id)
    engine = client()
    try:
        result = await engine.command(pk, charge_point_id, command, args, wait_for=wait)
    except NoWorker:
        raise ApiError(503, no_worker.for_charger(engine, charge_point_id)) from None
    except NotFinished as exc:
        raise ApiError(504, _sentence(str(exc))) from None
    except EngineError as exc:
        raise ApiError(503, _sentence(str(exc))) from None
    if not result["ok"]:
        error = result.get("error")
        # A worker that does not run the charger knows only its row's number: the caller
        # named it by charge point id.
        message = result["message"].replace(f"charger #{pk} ", f"{charge_point_id} ", 1)
        if error == contract.ERROR_INVALID:
            field = result.get("field")  # the argument the worker found wrong, if one
            field = _API_NAMES.get(field, field) if field is not None else None
            raise ApiError(422, message, [ErrorItem(field=field, message=message)])
        raise ApiError(500 if error == contract.ERROR_FAILED else 409, message)
    if "charger" not in result:  # done, but the charger went away meanwhile
        raise ApiError(409, f"{charge_point_id} is no longer running")
    return result


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


# The engine's argument names that the API spells otherwise (`_engine_args`).
_API_NAMES = {"vehicle_id": "vehicle_model_id"}


def _engine_args(command: str, args: Schema) -> dict[str, Any]:
    values = args.dict()
    if command == "plug_in":
        values["vehicle_id"] = values.pop("vehicle_model_id")
    if command in ("set_answer_override", "set_network"):
        values = {k: v for k, v in values.items() if v is not None and v is not False}
    return values


@router.get(
    "/chargers/{charge_point_id}/state",
    response=STATE_RESPONSES,
    tags=STATE_TAGS,
    summary="Get a charger's live state",
    description="Its snapshot from the worker that runs it: connection, boot state, and each "
    "connector's status, power, energy, SoC and transaction. With `wait_for`, answered once "
    "that holds for `connector_id` (or after `timeout`: then `wait.met` is false). Needs "
    f"`{VIEW}`." + ERRORS_DOC,
)
@require(VIEW)
async def get_state(
    request: HttpRequest, charge_point_id: str, params: Query[StateParams]
) -> StateOut:
    result = await ask_charger(
        charge_point_id,
        contract.STATE,
        {"connector_id": params.connector_id},
        params.wait(),
    )
    return StateOut.model_validate({"charger": result["charger"], "wait": result.get("wait")})


def _add_action(action: Action) -> None:
    """POST /chargers/{id}/actions/<action>: a body of the action's own arguments, which
    may be left out when every one has a default (connect needs none)."""
    args_type = action.args

    async def run(charge_point_id: str, payload: Schema | None, params: WaitParams) -> ActionOut:
        args = _engine_args(action.command, payload or no_arguments(args_type))
        result = await ask_charger(charge_point_id, action.command, args, params.wait())
        return ActionOut.model_validate(
            {
                "charge_point_id": charge_point_id,
                "action": action.command,
                "message": result["message"],
                "wait": result.get("wait"),
                "charger": result["charger"],
            }
        )

    if _all_optional(args_type):  # connect's too: a body it does not take is refused

        async def act(
            request: HttpRequest,
            charge_point_id: str,
            params: Query[WaitParams],
            payload: args_type | None = None,  # type: ignore[valid-type]  # per action
        ) -> ActionOut:
            return await run(charge_point_id, payload, params)

    else:

        async def act(  # type: ignore[misc]  # one signature per kind of body
            request: HttpRequest,
            charge_point_id: str,
            payload: args_type,  # type: ignore[valid-type]  # per action
            params: Query[WaitParams],
        ) -> ActionOut:
            return await run(charge_point_id, payload, params)

    act.__name__ = f"charger_{action.command}"
    router.post(
        f"/chargers/{{charge_point_id}}/actions/{action.path}",
        response=ACTION_RESPONSES,
        tags=ACTION_TAGS,
        summary=action.summary,
        description=f"{action.description} With `wait_for`, answered once that holds for the "
        "action's connector (or after `timeout`: then `wait.met` is false, still 200). "
        f"Needs `{CHANGE}`." + ERRORS_DOC,
        operation_id=f"charger_{action.command}",
    )(require(CHANGE)(act))


def no_arguments(args_type: type[Schema]) -> Schema:
    """The arguments of a body left out (or `null`): none given, validated as `{}` would
    be. An action that needs one of them (set-network: "give latency_ms, ...") is refused
    with its own 422, as ninja refuses a body that fails it, not a 500."""
    try:
        return args_type.model_validate({})
    except ValidationError as exc:
        raise NinjaValidationError(
            [{**error, "loc": ("body", "payload", *error["loc"])} for error in exc.errors()]
        ) from None


def _all_optional(schema: type[Schema]) -> bool:
    return not any(field.is_required() for field in schema.model_fields.values())


# -- the fleet ----------------------------------------------------------------------------------


@router.get(
    "/fleet/summary",
    response={200: FleetSummaryOut, **READ_ERRORS, 503: ErrorBody},
    tags=STATE_TAGS,
    summary="Get the fleet summary",
    description="Every worker's counts now, added up: chargers, connectors by status, "
    "chargers by link state, power, and the same per location. Shards without a worker are "
    "listed in `missing` (503 when none answers, when the channel layer (Redis) or the "
    "database cannot be reached, or when the workers run another number of shards than "
    "CHARGESIM_SHARDS says); `chargers_enabled` counts the fleet's "
    "chargers from the database, and `chargers_on_missing_shards` those of the missing "
    f"shards, which the other counts leave out. Needs `{VIEW}`.",
)
@require(VIEW)
async def fleet_summary(request: HttpRequest) -> FleetSummaryOut:
    return await ask_summary()


async def ask_summary() -> FleetSummaryOut:
    """Every shard's counts, added up; an ApiError (503) when no worker answers."""
    engine = client()
    try:
        overview = await engine.summary()
    except EngineError as exc:
        raise ApiError(503, _sentence(str(exc))) from None
    if not overview.answered:
        raise ApiError(503, no_worker.for_fleet(engine, overview.missing))
    enabled = Charger.objects.enabled()
    if overview.missing:
        per_shard = await sync_to_async(enabled.per_shard)(overview.shards)
        in_all = sum(per_shard.values())
        on_missing = sum(per_shard.get(shard, 0) for shard in overview.missing)
    else:
        in_all, on_missing = await enabled.acount(), 0
    return FleetSummaryOut.model_validate(
        {
            "shards": overview.shards,
            "answered": overview.answered,
            "missing": overview.missing,
            **overview.counts,
            "chargers_enabled": in_all,
            "chargers_on_missing_shards": on_missing,
            "locations": [
                {"location_id": pk, **site} for pk, site in sorted(overview.locations.items())
            ],
        }
    )


async def ask_bulk(
    command: str,
    chosen: BulkFilter,
    args: Mapping[str, Any],
    wait: contract.WaitFor | None,
) -> BulkOut:
    """Run one action on every charger the filter chooses; a result per charger. An
    ApiError for what fails as a whole (404 location, 422, 503)."""
    location = chosen.location_id
    if location is not None and not await Location.objects.filter(pk=location).aexists():
        raise ApiError(404, f"No location {location}.")
    listed: dict[int, str] | None = None
    not_found: list[str] = []
    if chosen.charge_point_ids is not None:
        wanted = list(dict.fromkeys(chosen.charge_point_ids))
        rows = Charger.objects.filter(charge_point_id__in=wanted)
        listed = {pk: cp_id async for pk, cp_id in rows.values_list("pk", "charge_point_id")}
        not_found = sorted(set(wanted) - set(listed.values()))
        known = listed
    else:
        # The chargers the filters may reach: a shard without a worker still gets a
        # result for each of its own ("no worker"), so that none goes missing unsaid.
        rows = Charger.objects.filter(enabled=True)
        if chosen.location_id is not None:
            rows = rows.filter(location_id=chosen.location_id)
        known = {pk: cp_id async for pk, cp_id in rows.values_list("pk", "charge_point_id")}
    engine = client()
    try:
        outcome = await engine.bulk(
            command,
            args,
            chargers=listed,
            location_id=chosen.location_id,
            status=chosen.status,
            wait_for=wait,
            known=known,
            every=chosen.every,
        )
    except EngineError as exc:
        raise ApiError(503, _sentence(str(exc))) from None
    if outcome.refused:  # the workers refuse the command as a whole: the same words each
        message = outcome.refused[0]
        raise ApiError(422, message, [ErrorItem(field=None, message=message)])
    if outcome.asked and outcome.missing == outcome.asked:
        raise ApiError(503, no_worker.for_fleet(engine, outcome.missing))
    return _bulk_out(command, outcome, listed or {}, not_found)


def _named(result: contract.ChargerResult, listed: Mapping[int, str]) -> str:
    """The result's message with the charger named as the caller names it (a worker that
    does not run the charger says "charger #13 ...")."""
    pk = result["charger_id"]
    cp_id = result["charge_point_id"] or listed.get(pk)
    message = result["message"]
    return message.replace(f"charger #{pk} ", f"{cp_id} ", 1) if cp_id else message


def _bulk_out(
    command: str, outcome: BulkOutcome, listed: Mapping[int, str], not_found: list[str]
) -> BulkOut:
    items = [
        BulkItem.model_validate(
            {
                "charge_point_id": result["charge_point_id"] or listed.get(result["charger_id"]),
                "connector_id": result["connector_id"],
                "ok": result["ok"],
                "message": _named(result, listed),
                "error": result.get("error"),
                "status": result.get("status"),
                "session": result.get("session"),
                "wait": result.get("wait"),
            }
        )
        for result in outcome.results
    ]
    items.extend(
        BulkItem(
            charge_point_id=cp_id,
            connector_id=None,
            ok=False,
            message=f"there is no charger {cp_id!r}",
            error="not_found",
            status=None,
            session=None,
        )
        for cp_id in not_found
    )
    items.sort(key=lambda item: (item.charge_point_id or "", item.connector_id or 0))
    succeeded = sum(item.ok for item in items)
    return BulkOut(
        action=command,
        total=len(items),
        succeeded=succeeded,
        failed=len(items) - succeeded,
        results=items,
        missing_shards=outcome.missing,
        unfinished_shards=outcome.unfinished,
        gone_shards=sorted(outcome.gone),
    )


def _add_bulk(action: Action) -> None:
    """POST /fleet/actions/<action>: {"filter": {...}, "args": {...}}."""
    args_type = action.args
    args_field: Any = ... if not _all_optional(args_type) else Field(default_factory=args_type)
    body = create_model(
        f"Bulk{_camel(action.command)}In",
        __base__=Arguments,
        filter=(BulkFilter, Field(description="which chargers; the filters combine (and)")),
        args=(args_type, args_field),
    )

    async def act(
        request: HttpRequest,
        payload: body,  # type: ignore[valid-type]  # one body schema per action
        params: Query[WaitParams],
    ) -> BulkOut:
        args = _engine_args(action.command, payload.args)  # type: ignore[attr-defined]
        chosen: BulkFilter = payload.filter  # type: ignore[attr-defined]
        return await ask_bulk(action.command, chosen, args, params.wait())

    act.__name__ = f"bulk_{action.command}"
    router.post(
        f"/fleet/actions/{action.path}",
        response=BULK_RESPONSES,
        tags=BULK_TAGS,
        summary=f"{action.summary}: on many chargers",
        description=f"{action.description} On every charger the filter chooses, with a "
        "result per charger (per connector, for a connector action); each worker runs its "
        "own chargers at once. A charger that refuses is a failed result, not an error of "
        "the request; unknown ids, chargers of a shard without a worker and those of a worker "
        "that went away before it answered get a result that says so. Needs "
        f"`{CHANGE}`. Errors: 404 no such location; 422 a bad value; 503 no worker runs any "
        "shard, or the channel layer (Redis) or the database cannot be reached (a worker "
        "that goes away during the action is a result per charger: `gone_shards`).",
        operation_id=f"bulk_{action.command}",
    )(require(CHANGE)(act))


def _camel(command: str) -> str:
    return "".join(part.capitalize() for part in command.split("_"))


for _action in ACTIONS:
    _add_action(_action)
for _action in ACTIONS:
    _add_bulk(_action)
