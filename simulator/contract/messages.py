"""The messages that cross the channel layer between the web side and the engine.

Each message has a TypedDict here and one function that builds it; producers call the
function, receivers annotate what they read with the TypedDict. The channel-layer `type`
of an event is also the name of the consumer method that receives it, with `.` -> `_`.

Web -> engine: `engine_command` (a person or a script drives a charger, or reads its
state), `bulk_command` (one action on many chargers of a shard), `summary_request` (a
shard's counts) and `watch_request` (a page asks for snapshots and keeps them coming), all
sent to the worker's group (`groups.engine_group`). Engine -> web: the owning worker
answers a command or a bulk command on its `reply_channel` with `command_ack` at once (so
the sender tells "no worker" from "slow CSMS"), then with `command_result` (or
`bulk_result`); a summary request with `shard_summary`. It publishes `charger_state` and
`charger_log` to the charger's group, `fleet_summary` and `location_summary` once a second
per shard.

An action may carry `wait_for` (`WaitFor`): the worker then answers only once the
condition holds or its timeout has passed, and says which (`WaitOutcome`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict, get_args

from simulator.contract.statuses import StatusName

# -- channel-layer types ----------------------------------------------------------------------

COMMAND: Final = "engine.command"
EVENT_CHARGER_STATE: Final = "charger.state"  # full idempotent snapshot of one charger
EVENT_CHARGER_LOG: Final = "charger.log"  # OCPP frames, newest last
EVENT_COMMAND_ACK: Final = "command.ack"  # the owning worker received the command
# ... and, for one with `wait_for`, did it and now waits (a caller whose worker goes away
# during the wait can then say the action was carried out)
EVENT_COMMAND_DONE: Final = "command.done"
EVENT_COMMAND_RESULT: Final = "command.result"  # answer to a command
EVENT_FLEET_SUMMARY: Final = "fleet.summary"  # one shard's counts by status and link
EVENT_LOCATION_SUMMARY: Final = "location.summary"  # one shard's power and counts of a site
BULK_COMMAND: Final = "engine.bulk"  # one action on many chargers of one shard
EVENT_BULK_RESULT: Final = "bulk.result"  # answer to a bulk command: a result per charger
EVENT_SHARD_SUMMARY: Final = "shard.summary"  # answer to a summary request

# -- commands -------------------------------------------------------------------------------

# What a person (a page, the API) may ask of a charger (their arguments: the *Args below).
# `reload` (re-read a charger from the database) is not here: no worker implements it yet.
DRIVE_COMMANDS: Final = frozenset(
    {
        "connect",
        "disconnect",
        "reboot",  # a power cycle: down as after a power loss, then it boots again
        "plug_in",
        "present_id_tag",
        "stop",
        "unplug",
        "pause_ev",  # the EV stops drawing power (SuspendedEV) ...
        "resume_ev",  # ... and draws again (Charging)
        "inject_fault",
        "clear_fault",
        "cut_network",
        "request_certificate",  # SignCertificate (security whitepaper)
        # Fault injection (issue 16; arguments and their checks: contract.overrides):
        "set_answer_override",  # AnswerOverrideArgs: a rule, or clear
        "set_network",  # NetworkArgs: latency_ms, jitter_ms, drop_rate (and seed)
        "close_connection",  # CloseArgs: the charger closes its socket with a code
        "set_clock_skew",  # ClockSkewArgs: its timestamps are off by seconds
    }
)
# Drive commands that act on one connector (`ConnectorArgs.connector_id`, 1 when missing);
# the others act on the whole charger.
CONNECTOR_COMMANDS: Final = frozenset(
    {
        "plug_in",
        "present_id_tag",
        "stop",
        "unplug",
        "pause_ev",
        "resume_ev",
        "inject_fault",
        "clear_fault",
    }
)
# Read-only requests, answered on the reply channel: one charger's state (a `command_result`
# carrying its snapshot; with `wait_for`, once the condition holds), and a shard's counts
# (`summary_request`, answered with `shard_summary`).
STATE: Final = "state"
SUMMARY: Final = "summary"
# What a page's socket asks on its own: a full snapshot now (and start watching those
# chargers), or keep publishing snapshots of chargers it still shows.
SNAPSHOT: Final = "snapshot"
WATCH: Final = "watch"
WATCH_COMMANDS: Final = frozenset({SNAPSHOT, WATCH})
COMMANDS: Final = DRIVE_COMMANDS | WATCH_COMMANDS | {STATE, SUMMARY}

# What an action may wait for: a connector status (of the action's connector, 1 when it
# names none), or "Accepted": the charger is online and its BootNotification accepted.
ACCEPTED: Final = "Accepted"
WaitCondition = Literal[StatusName, "Accepted"]
WAIT_CONDITIONS: Final[tuple[str, ...]] = get_args(WaitCondition)
WAIT_TIMEOUT_DEFAULT: Final = 30.0
WAIT_TIMEOUT_MAX: Final = 300.0  # seconds; a longer wait is refused, not shortened


# Arguments of the drive commands. They come from a browser, so the engine checks every
# value (simulator.runtime.commands) and answers a bad one with a message, never a crash.
class ConnectorArgs(TypedDict, total=False):
    """unplug, clear_fault (connector 1 when missing); stop: `StopArgs`."""

    connector_id: int


class StopArgs(ConnectorArgs, total=False):
    # The StopTransaction's reason, an OCPP 1.6 Reason; Local (a driver's stop at the
    # charger) when missing.
    reason: str


class PlugInArgs(ConnectorArgs, total=False):
    vehicle_id: int | None  # None or missing: the charger's default vehicle
    soc: float  # percent, default 20
    target_soc: float  # percent, default 100


class PresentIdTagArgs(ConnectorArgs, total=False):
    id_tag: str


class InjectFaultArgs(ConnectorArgs, total=False):
    error_code: str  # one of FAULT_CODES
    info: str  # at most 50 characters kept


class CutNetworkArgs(TypedDict, total=False):
    seconds: float


class WaitFor(TypedDict):
    """Answer the action only once `condition` (one of WAIT_CONDITIONS) holds, or after
    `timeout` seconds (at most WAIT_TIMEOUT_MAX), whichever comes first."""

    condition: str
    timeout: float


class WaitOutcome(TypedDict):
    condition: str
    met: bool  # False: the timeout passed first
    status: str  # the connector's status (for "Accepted": the charger's boot state) then
    waited: float  # seconds from the end of the action to the answer


class WatchArgs(TypedDict):
    chargers: list[int]
    log: bool  # send the chargers' OCPP frame logs too
    series: NotRequired[bool]  # with each session's series (the charger page's chart)


class EngineCommand(TypedDict):
    """A request to the worker of a charger's shard (a page's or the API's)."""

    type: Literal["engine.command"]
    command: str  # one of COMMANDS
    args: dict[str, Any]  # the command's *Args, or WatchArgs
    reply_channel: str
    charger_id: NotRequired[int | None]  # drive commands and `state` only
    request_id: NotRequired[str]  # not for watch requests: the ack and result repeat it
    wait_for: NotRequired[WaitFor]  # drive commands and `state` only
    # Unix time after which the sender no longer waits for the ack: it has answered that no
    # worker runs the charger. A worker that reads the command later (paused, overloaded)
    # drops it, rather than do what the caller was told did not happen (`expired`).
    expires: NotRequired[float]


def engine_command(
    command: str,
    charger_id: int | None,
    args: Mapping[str, Any],
    reply_channel: str,
    request_id: str,
    *,
    wait_for: WaitFor | None = None,
    expires: float | None = None,
) -> EngineCommand:
    """A drive command, or `state` (args empty): answered with `command_ack` at once, then
    `command_result`."""
    message: EngineCommand = {
        "type": COMMAND,
        "command": command,
        "charger_id": charger_id,
        "args": dict(args),
        "reply_channel": reply_channel,
        "request_id": request_id,
    }
    if wait_for is not None:
        message["wait_for"] = wait_for
    if expires is not None:
        message["expires"] = expires
    return message


def summary_request(
    reply_channel: str, request_id: str, *, history: int | None = None
) -> EngineCommand:
    """Answered with one `shard_summary` by the worker (no ack: the answer is at once);
    with `history` (a location pk), that site's last hour of power in it too."""
    return {
        "type": COMMAND,
        "command": SUMMARY,
        "args": {} if history is None else {"history": history},
        "reply_channel": reply_channel,
        "request_id": request_id,
    }


def watch_request(
    command: Literal["snapshot", "watch"],
    chargers: list[int],
    *,
    log: bool,
    reply_channel: str,
    series: bool = False,
) -> EngineCommand:
    """`snapshot` is answered with one `charger_state` (with the sessions' series if
    asked, and a `charger_log` if asked) per charger the worker runs, and no result;
    `watch` only renews the chargers' leases."""
    args: WatchArgs = {"chargers": chargers, "log": log, "series": series}
    return {"type": COMMAND, "command": command, "args": dict(args), "reply_channel": reply_channel}


class CommandAck(TypedDict):
    type: Literal["command.ack"]
    request_id: str | None
    # When the worker started, as in its summaries: the caller, asking the shard meanwhile
    # (`summary_request`), tells a restarted worker by it.
    started: NotRequired[float]


def command_ack(request_id: str | None, started: float | None = None) -> CommandAck:
    ack: CommandAck = {"type": EVENT_COMMAND_ACK, "request_id": request_id}
    if started is not None:
        ack["started"] = started
    return ack


class CommandDone(TypedDict):
    type: Literal["command.done"]
    request_id: str | None
    message: str  # what was done, as a result's message says it


def command_done(request_id: str | None, message: str) -> CommandDone:
    return {"type": EVENT_COMMAND_DONE, "request_id": request_id, "message": message}


# Why a command was not done (`CommandResult.error`), so that a caller can tell its own
# mistake from a charger that refuses: a bad argument; the charger cannot do it now ("no
# vehicle plugged in"); this worker does not run the charger; the simulator failed.
ERROR_INVALID: Final = "invalid"
ERROR_REFUSED: Final = "refused"
ERROR_NOT_RUNNING: Final = "not_running"
ERROR_FAILED: Final = "failed"
ERROR_SKIPPED: Final = "skipped"  # bulk: a listed charger the other filters leave out
# How a refused present_id_tag says that the charger, offline, decided without its CSMS (a
# scenario step that would say so itself does not say it twice).
DECIDED_ALONE: Final = "the charger is not connected to its CSMS, so it decided alone"
# How an accepted present_id_tag with no vehicle plugged in says so: no StartTransaction
# follows until one is (a scenario step expecting a refusal need not wait for one).
AWAITS_VEHICLE: Final = "plug in a vehicle"


class CommandResult(TypedDict):
    type: Literal["command.result"]
    request_id: str | None
    charger_id: int | None
    command: str | None
    ok: bool
    message: str  # for the person who clicked
    error: NotRequired[str]  # when not ok: one of the ERROR_* kinds
    charger: NotRequired[ChargerSnapshot]  # its state after the command (when it runs here)
    wait: NotRequired[WaitOutcome]  # when the command carried wait_for and was done
    field: NotRequired[str]  # the argument an ERROR_INVALID is about, when one is


def command_result(
    request_id: str | None,
    charger_id: int | None,
    command: str | None,
    ok: bool,
    message: str,
    *,
    error: str | None = None,
    charger: ChargerSnapshot | None = None,
    wait: WaitOutcome | None = None,
    field: str | None = None,
) -> CommandResult:
    result: CommandResult = {
        "type": EVENT_COMMAND_RESULT,
        "request_id": request_id,
        "charger_id": charger_id,
        "command": command,
        "ok": ok,
        "message": message,
    }
    if error is not None:
        result["error"] = error
    if charger is not None:
        result["charger"] = charger
    if wait is not None:
        result["wait"] = wait
    if field is not None:
        result["field"] = field
    return result


# -- bulk commands ----------------------------------------------------------------------------


class BulkTargets(TypedDict, total=False):
    """Which chargers of the shard a bulk command drives; the filters combine (and).

    `chargers`: these primary keys (the sender sends each shard only its own, and gets a
    result for each, "not running" included). `location_id`: the chargers of that site.
    `status`: the connectors in that status now (live state, so the worker filters): a
    connector command runs on each of them, a charger command on each charger with one.
    `every`: every charger of the shard, said outright (no filter at all is refused, so
    that a request that lost its filter on the way drives no fleet).
    """

    chargers: list[int]
    location_id: int
    status: str  # a ConnectorStatus value
    every: bool


class BulkCommand(TypedDict):
    type: Literal["engine.bulk"]
    command: str  # one of DRIVE_COMMANDS
    args: dict[str, Any]  # as for one charger; a status filter chooses the connector
    targets: BulkTargets
    reply_channel: str
    request_id: str
    wait_for: NotRequired[WaitFor]  # each charger waits for its own condition
    expires: NotRequired[float]  # as EngineCommand's


def bulk_command(
    command: str,
    args: Mapping[str, Any],
    targets: BulkTargets,
    reply_channel: str,
    request_id: str,
    *,
    wait_for: WaitFor | None = None,
    expires: float | None = None,
) -> BulkCommand:
    """Answered with `command_ack` at once, then one `bulk_result`."""
    message: BulkCommand = {
        "type": BULK_COMMAND,
        "command": command,
        "args": dict(args),
        "targets": targets,
        "reply_channel": reply_channel,
        "request_id": request_id,
    }
    if wait_for is not None:
        message["wait_for"] = wait_for
    if expires is not None:
        message["expires"] = expires
    return message


# How far the clocks of a web process and a worker may disagree (NTP keeps hosts within
# milliseconds): a command is dropped only this long after its sender gave up on it.
CLOCK_SKEW_SECONDS = 1.0


def expired(message: Mapping[str, Any], now: float) -> bool:
    """Whether the sender of this command has given up on it (see EngineCommand.expires)."""
    expires = message.get("expires")
    return isinstance(expires, int | float) and now > expires + CLOCK_SKEW_SECONDS


class ChargerResult(TypedDict):
    """What one charger (one connector, for a connector command) made of a bulk command."""

    charger_id: int
    charge_point_id: str | None  # None: not known (the worker does not run that charger)
    connector_id: int | None  # None for a charger command
    ok: bool
    message: str
    error: NotRequired[str]  # when not ok: one of the ERROR_* kinds
    status: NotRequired[str]  # the connector's status afterwards (connector commands)
    # Whether a transaction runs on the connector afterwards (connector commands): a
    # pause-ev that succeeds without one paused no session, which a total has to say.
    session: NotRequired[bool]
    wait: NotRequired[WaitOutcome]


class BulkResult(TypedDict):
    type: Literal["bulk.result"]
    request_id: str | None
    shard: int
    command: str | None
    results: list[ChargerResult]
    message: str  # "" unless the whole command was refused (e.g. an unknown command)


def bulk_result(
    request_id: str | None,
    shard: int,
    command: str | None,
    results: Iterable[ChargerResult],
    message: str = "",
) -> BulkResult:
    return {
        "type": EVENT_BULK_RESULT,
        "request_id": request_id,
        "shard": shard,
        "command": command,
        "results": list(results),
        "message": message,
    }


# -- charger events ---------------------------------------------------------------------------


class EvseSnapshot(TypedDict):
    connector_id: int
    status: str  # a ConnectorStatus value
    error_code: str
    # Why, in words, as the last StatusNotification said it (its info): what holds a
    # SuspendedEVSE car back, a fault's text; None when it says nothing.
    info: str | None
    power_w: float
    register_wh: float
    soc: float | None
    voltage_v: list[float]
    current_a: list[float]
    transaction_id: int | None
    id_tag: str | None
    vehicle: str | None  # the plugged-in vehicle model's name
    # The ongoing session, or the last one once it ended; None before the first.
    session: SessionSnapshot | None
    # An idTag accepted with no vehicle plugged in lapses then (ConnectionTimeOut), epoch s.
    authorization_expires_at: float | None


class SessionSnapshot(TypedDict):
    started_at: float  # epoch s
    ended_at: float | None
    # The register when it started (Wh): the session's energy is the register's since.
    start_wh: float
    # [epoch s, power W, SoC % or None, energy Wh since the start], at most a few hundred
    # (simulator.core.session_series): only in the snapshot a page gets when it connects.
    points: NotRequired[list[list[float | None]]]


class ReservationSnapshot(TypedDict):
    reservation_id: int
    connector_id: int  # 0: any connector
    id_tag: str
    parent_id_tag: str | None
    expiry: str  # UTC, ISO 8601


class SecurityEventSnapshot(TypedDict):
    type: str  # the whitepaper's event type (or our vendor type ConnectionLost)
    timestamp: str  # UTC, ISO 8601
    tech_info: str | None
    sent: bool  # pushed to the CSMS (SecurityEventNotification), or only logged


class NetworkSnapshot(TypedDict):
    """The network conditions a charger runs with now: its row's, or those a drive command
    (`set_network`) set since (a cut shows as `offline_until` and the link)."""

    latency_ms: int
    jitter_ms: int
    drop_rate: float  # share of its outgoing frames lost, 0..1


class ChargerSnapshot(TypedDict):
    """The full, idempotent state of one charger as the dashboard shows it."""

    id: int | None  # the charger's primary key
    charge_point_id: str
    location_id: int | None
    link: str
    link_error: str | None
    # False in the last snapshot of a charger taken out of the running fleet (disabled,
    # deleted, moved to another worker): its connectors no longer run.
    in_service: bool
    # When an edit of its set-up last reached the running charger (Unix time; None: none
    # since it was loaded): a page rendered before then shows an older set-up.
    setup_at: float | None
    offline_until: float | None  # a network cut ends then (epoch s)
    network: NetworkSnapshot
    boot: str
    power_type: str
    evses: list[EvseSnapshot]
    # Reservation, Local Auth List Management, Firmware Management (issue 17)
    reservations: list[ReservationSnapshot]
    local_list_version: int  # -1: no local list (profile not supported), 0: empty
    local_list_size: int
    auth_cache_size: int | None  # idTags in the authorization cache; None: it is off
    firmware_version: str
    firmware_status: str  # the last FirmwareStatusNotification's status, or "Idle"
    # What an update waits for now, in words (None: it does not wait), and until when
    # (epoch s; None: until something happens, e.g. a transaction ends).
    firmware_waiting: str | None
    firmware_waiting_until: float | None
    diagnostics_status: str  # the same for DiagnosticsStatusNotification
    log_status: str  # the last LogStatusNotification's status (GetLog), or "Idle"
    log_request_id: int | None  # the GetLog it is about
    security_events: list[SecurityEventSnapshot]  # the newest few, newest first
    at: float  # Unix time


class ChargerState(TypedDict):
    type: Literal["charger.state"]
    charger: ChargerSnapshot


def charger_state(snapshot: ChargerSnapshot) -> ChargerState:
    return {"type": EVENT_CHARGER_STATE, "charger": snapshot}


# One logged OCPP frame: [Unix time, "in" or "out", the frame's text (redacted)], or a
# connection event: [Unix time, "event", {"event": name, ...details} as JSON text].
LogFrame = list[float | str]
LOG_EVENT: Final = "event"


class ChargerLog(TypedDict):
    type: Literal["charger.log"]
    charger_id: int
    frames: list[LogFrame]
    full: bool  # the whole log (a page connected), not only frames since the last one


def charger_log(
    charger_id: int, frames: Iterable[tuple[float, str, str]], *, full: bool = False
) -> ChargerLog:
    return {
        "type": EVENT_CHARGER_LOG,
        "charger_id": charger_id,
        "frames": [list(frame) for frame in frames],
        "full": full,
    }


# -- summaries --------------------------------------------------------------------------------


class FleetCounts(TypedDict):
    chargers: int
    statuses: dict[str, int]  # EVSEs by connector status
    links: dict[str, int]  # chargers by link state
    power_w: float


class FleetSummary(FleetCounts):
    type: Literal["fleet.summary"]
    shard: int
    shards: int
    at: float
    # When the worker that sends it started (Unix time): a page that sees it change (the
    # worker restarted) asks that worker again for the chargers it shows, which the new
    # process knew nothing of (`chargers.dashboard.consumers`).
    started: NotRequired[float]


def fleet_summary(
    shard: int, shards: int, counts: FleetCounts, at: float, started: float | None = None
) -> FleetSummary:
    message: FleetSummary = {
        "type": EVENT_FLEET_SUMMARY,
        "shard": shard,
        "shards": shards,
        **counts,
        "at": at,
    }
    if started is not None:
        message["started"] = started
    return message


class SiteCounts(TypedDict):
    power_w: float
    chargers: int
    charging: int  # EVSEs drawing power
    statuses: dict[str, int]
    links: dict[str, int]
    held_back: int  # EVSEs the site's load management holds below what they would draw
    # The location's settings as the worker applies them (not counts: every worker reports
    # the same, so they are not added up over the shards).
    grid_limit_w: float | None
    load_management: bool


class LocationSummary(SiteCounts):
    type: Literal["location.summary"]
    shard: int
    shards: int
    location_id: int
    at: float
    started: NotRequired[float]  # as FleetSummary's


def location_summary(
    shard: int,
    shards: int,
    location_id: int,
    counts: SiteCounts,
    at: float,
    started: float | None = None,
) -> LocationSummary:
    message: LocationSummary = {
        "type": EVENT_LOCATION_SUMMARY,
        "shard": shard,
        "shards": shards,
        "location_id": location_id,
        **counts,
        "at": at,
    }
    if started is not None:
        message["started"] = started
    return message


class LocationCounts(SiteCounts):
    location_id: int


class ShardSummary(FleetCounts):
    """A shard's counts now, asked for (`summary_request`) rather than published."""

    type: Literal["shard.summary"]
    request_id: str | None
    shard: int
    shards: int
    locations: list[LocationCounts]
    at: float
    started: NotRequired[float]  # as FleetSummary's
    # The site asked for (`summary_request(history=)`): the shard's part of its power over
    # the last hour, [end of a step (epoch s, a multiple of the step), mean power W, grid
    # limit W or None], oldest first (`simulator.runtime.site_history`).
    history: NotRequired[list[list[float | None]]]


def shard_summary(
    request_id: str | None,
    shard: int,
    shards: int,
    counts: FleetCounts,
    locations: Mapping[int, SiteCounts],
    at: float,
    started: float | None = None,
    history: list[list[float | None]] | None = None,
) -> ShardSummary:
    message: ShardSummary = {
        "type": EVENT_SHARD_SUMMARY,
        "request_id": request_id,
        "shard": shard,
        "shards": shards,
        **counts,
        "locations": [
            LocationCounts(location_id=pk, **site) for pk, site in sorted(locations.items())
        ],
        "at": at,
    }
    if started is not None:
        message["started"] = started
    if history is not None:
        message["history"] = history
    return message


def published_summaries(
    answer: ShardSummary,
) -> tuple[FleetSummary, dict[int, LocationSummary]]:
    """A shard's asked-for summary as the summaries it publishes: a page that asked every
    worker when it opened adds them up with those published later."""
    counts: FleetCounts = {
        "chargers": answer["chargers"],
        "statuses": answer["statuses"],
        "links": answer["links"],
        "power_w": answer["power_w"],
    }
    shard, shards, at = answer["shard"], answer["shards"], answer["at"]
    started = answer.get("started")
    sites: dict[int, LocationSummary] = {}
    for site in answer["locations"]:
        pk = site["location_id"]
        own: SiteCounts = {key: value for key, value in site.items() if key != "location_id"}  # type: ignore[assignment]
        sites[pk] = location_summary(shard, shards, pk, own, at, started)
    return fleet_summary(shard, shards, counts, at, started), sites


# -- fleet changes (issue 14: what you edit is what runs) -----------------------------------

FLEET_CHANGED: Final = "fleet.changed"  # web -> the workers of the shards concerned
EVENT_FLEET_APPLIED: Final = "fleet.applied"  # a worker -> the reply channel, if one was given
# ... and at once, before applying: a worker runs that shard (its apply may take a while)
EVENT_FLEET_RECEIVED: Final = "fleet.received"


class FleetChanged(TypedDict):
    """Rows of the fleet changed (committed): the worker re-reads them from the database
    and applies them as a real charger would. Sent after commit to every shard that owns
    one of the chargers, before or after the change (a new charge point id may move a
    charger to another shard), and to every shard for vehicle-model and location changes."""

    type: Literal["fleet.changed"]
    chargers: list[int]  # Charger pks added, changed or deleted
    vehicles: list[int]  # VehicleModel pks changed (used from the next session)
    locations: list[int]  # Location pks changed
    reply_channel: NotRequired[str]  # where to send `fleet_applied` (admin saves wait for it)
    request_id: NotRequired[str]


def fleet_changed(
    chargers: Iterable[int] = (),
    *,
    vehicles: Iterable[int] = (),
    locations: Iterable[int] = (),
    reply_channel: str | None = None,
    request_id: str | None = None,
) -> FleetChanged:
    message: FleetChanged = {
        "type": FLEET_CHANGED,
        "chargers": sorted(set(chargers)),
        "vehicles": sorted(set(vehicles)),
        "locations": sorted(set(locations)),
    }
    if reply_channel is not None:
        message["reply_channel"] = reply_channel
    if request_id is not None:
        message["request_id"] = request_id
    return message


class FleetReceived(TypedDict):
    """A worker got a fleet.changed with a reply channel and applies it now: the sender
    knows a worker runs the shard even when the apply outlasts its first wait."""

    type: Literal["fleet.received"]
    request_id: str | None
    shard: int
    shards: int  # the worker's N (--shard K/N): a sender of another N sent to wrong shards


def fleet_received(request_id: str | None, shard: int, shards: int) -> FleetReceived:
    return {
        "type": EVENT_FLEET_RECEIVED,
        "request_id": request_id,
        "shard": shard,
        "shards": shards,
    }


class ChargerOutcome(TypedDict):
    """What a worker did with one changed charger, in words for the person who saved it."""

    charger_id: int
    charge_point_id: str
    outcome: str  # e.g. "reconnects now", "applied live", "... when its session ends ..."


class FleetApplied(TypedDict):
    type: Literal["fleet.applied"]
    request_id: str | None
    shard: int
    shards: int
    outcomes: list[ChargerOutcome]


def fleet_applied(
    request_id: str | None, shard: int, shards: int, outcomes: Iterable[ChargerOutcome]
) -> FleetApplied:
    return {
        "type": EVENT_FLEET_APPLIED,
        "request_id": request_id,
        "shard": shard,
        "shards": shards,
        "outcomes": list(outcomes),
    }


# -- the event stream (issue 15: the API's Server-Sent Events) -------------------------------

# Web -> every shard's group: publish the events that match to this group while the lease
# lasts (renewed every WATCH_RENEW_SECONDS); unsubscribe when the stream ends.
EVENTS_SUBSCRIBE: Final = "events.subscribe"
EVENTS_UNSUBSCRIBE: Final = "events.unsubscribe"
# A worker -> the subscription's group: the matching events since its last batch.
EVENT_EVENTS_BATCH: Final = "events.batch"

# What a stream can carry: a connector's status changed; a transaction started, got its id
# from the CSMS, or stopped; an OCPP frame went out or came in (redacted); the link to the
# CSMS opened, closed or is retried.
STREAM_KINDS: Final = ("status", "transaction", "frame", "connection")


class EventsSubscribe(TypedDict):
    type: Literal["events.subscribe"]
    subscription: str  # the group to publish to (groups.stream_group)
    chargers: list[int] | None  # charger pks; None: every charger
    locations: list[int] | None  # location pks; None: every location
    kinds: list[str]  # some of STREAM_KINDS
    lease: float  # seconds from now


def events_subscribe(
    subscription: str,
    *,
    chargers: Iterable[int] | None,
    locations: Iterable[int] | None,
    kinds: Iterable[str],
    lease: float,
) -> EventsSubscribe:
    return {
        "type": EVENTS_SUBSCRIBE,
        "subscription": subscription,
        "chargers": None if chargers is None else sorted(set(chargers)),
        "locations": None if locations is None else sorted(set(locations)),
        "kinds": sorted(set(kinds)),
        "lease": lease,
    }


class EventsUnsubscribe(TypedDict):
    type: Literal["events.unsubscribe"]
    subscription: str


def events_unsubscribe(subscription: str) -> EventsUnsubscribe:
    return {"type": EVENTS_UNSUBSCRIBE, "subscription": subscription}


class StatusData(TypedDict):
    connector_id: int
    status: str  # a ConnectorStatus value
    previous: str | None  # None: the first status this stream knows of the connector
    error_code: str


class TransactionData(TypedDict):
    event: Literal["started", "confirmed", "stopped"]  # confirmed: the CSMS gave its id
    connector_id: int
    local_id: str  # the charger's own id of the session
    transaction_id: int | None  # the CSMS's
    id_tag: str
    meter_start: int  # Wh
    meter_stop: int | None
    started_at: str
    stopped_at: str | None
    stop_reason: str | None


class FrameData(TypedDict):
    direction: str  # "in" or "out"
    message_id: str
    action: str
    payload: str  # the frame's text, redacted, cut to `size` at most the log's limit
    size: int  # the frame's length; more than len(payload) when it was cut
    # An answer to the charger's own CALL that the charger refused (its call failed as a
    # FormationViolation): why, e.g. "breaks the OCPP 1.6 schema: currentTime: 123 is not
    # of type 'string'". Absent when it took the answer, and on every other frame.
    refused: NotRequired[str]
    # A frame from the CSMS that is no OCPP-J message (the charger ignored it, or answered
    # it with a CALLERROR): why, without quoting it, e.g. "is not JSON (unexpected end of
    # data at character 22)", "has the unknown message type 5". Absent on every other frame.
    malformed: NotRequired[str]


class ConnectionData(TypedDict):
    event: str  # connected, connect_failed, closed, reconnecting, network_cut
    detail: dict[str, Any]


# Who ended a connection: the `by` of a `closed` event's detail (with the close `code` and
# `reason` as received, and a `summary` in words). The charger itself (a disconnect, a
# reboot, a close step, a reconnect for a new security profile); the CSMS (its close
# frame came first); nobody said (no close frame: the CSMS went away, or the network
# failed); the charger's own simulated network cut; the charger, for want of a pong to its
# keepalive ping; an internal error.
CLOSED_BY_CHARGER: Final = "charger"
CLOSED_BY_CSMS: Final = "csms"
CLOSED_LOST: Final = "lost"
CLOSED_BY_NETWORK_CUT: Final = "network_cut"
CLOSED_BY_KEEPALIVE: Final = "keepalive"
CLOSED_BY_ERROR: Final = "error"
# The charger failed the connection for a frame of the CSMS's, as RFC 6455 requires (1009
# a frame over the size limit, 1007 text that is not UTF-8, 1002 a protocol error): the
# `sent_code` and `sent_reason` of the detail say which.
CLOSED_FAILED: Final = "failed"


class StreamEvent(TypedDict):
    kind: str  # one of STREAM_KINDS
    at: float  # Unix time
    charger_id: int
    charge_point_id: str
    location_id: int | None
    data: StatusData | TransactionData | FrameData | ConnectionData


def stream_event(
    kind: str,
    at: float,
    charger_id: int,
    charge_point_id: str,
    location_id: int | None,
    data: StatusData | TransactionData | FrameData | ConnectionData,
) -> StreamEvent:
    return {
        "kind": kind,
        "at": at,
        "charger_id": charger_id,
        "charge_point_id": charge_point_id,
        "location_id": location_id,
        "data": data,
    }


class EventsBatch(TypedDict):
    type: Literal["events.batch"]
    shard: int
    events: list[StreamEvent]
    dropped: int  # events left out since the last batch (the stream fell behind)
    # The subscription's events from this worker so far, this batch's and any dropped
    # included: a batch the channel layer dropped on the way (its channel full because the
    # reader stopped reading) shows on the web side as a gap in this count.
    through: int
    # The worker is stopping: this is its last batch (the stream says so: `stopped`).
    stopping: NotRequired[bool]
    # The subscription had lapsed at this worker (not renewed in time) and a renewal started
    # it again: since this Unix time none of its events were collected (`through` starts
    # again from this batch; the events it held when it lapsed are in `dropped`).
    lapsed: NotRequired[float]


def events_batch(
    shard: int,
    events: list[StreamEvent],
    dropped: int,
    through: int,
    *,
    stopping: bool = False,
    lapsed: float | None = None,
) -> EventsBatch:
    batch: EventsBatch = {
        "type": EVENT_EVENTS_BATCH,
        "shard": shard,
        "events": events,
        "dropped": dropped,
        "through": through,
    }
    if stopping:
        batch["stopping"] = True
    if lapsed is not None:
        batch["lapsed"] = lapsed
    return batch
