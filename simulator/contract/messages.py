"""The messages that cross the channel layer between the web side and the engine.

Each message has a TypedDict here and one function that builds it; producers call the
function, receivers annotate what they read with the TypedDict. The channel-layer `type`
of an event is also the name of the consumer method that receives it, with `.` -> `_`.

Web -> engine: `engine_command` (a person drives a charger) and `watch_request` (a page
asks for snapshots and keeps them coming), both sent to the worker's group
(`groups.engine_group`). Engine -> web: the owning worker answers a command on its
`reply_channel` with `command_ack` at once (so the page tells "no worker" from "slow
CSMS"), then with `command_result`; it publishes `charger_state` and `charger_log` to the
charger's group, `fleet_summary` and `location_summary` once a second per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict

# -- channel-layer types ----------------------------------------------------------------------

COMMAND: Final = "engine.command"
EVENT_CHARGER_STATE: Final = "charger.state"  # full idempotent snapshot of one charger
EVENT_CHARGER_LOG: Final = "charger.log"  # OCPP frames, newest last
EVENT_COMMAND_ACK: Final = "command.ack"  # the owning worker received the command
EVENT_COMMAND_RESULT: Final = "command.result"  # answer to a command
EVENT_FLEET_SUMMARY: Final = "fleet.summary"  # one shard's counts by status and link
EVENT_LOCATION_SUMMARY: Final = "location.summary"  # one shard's power and counts of a site

# -- commands -------------------------------------------------------------------------------

# What a person may ask of a charger from a page (their arguments: the *Args below).
# `reload` (re-read a charger from the database) is not here: no worker implements it yet.
DRIVE_COMMANDS: Final = frozenset(
    {
        "connect",
        "disconnect",
        "plug_in",
        "present_id_tag",
        "stop",
        "unplug",
        "inject_fault",
        "clear_fault",
        "cut_network",
    }
)
# What a page's socket asks on its own: a full snapshot now (and start watching those
# chargers), or keep publishing snapshots of chargers it still shows.
SNAPSHOT: Final = "snapshot"
WATCH: Final = "watch"
WATCH_COMMANDS: Final = frozenset({SNAPSHOT, WATCH})
COMMANDS: Final = DRIVE_COMMANDS | WATCH_COMMANDS


# Arguments of the drive commands. They come from a browser, so the engine checks every
# value (simulator.runtime.commands) and answers a bad one with a message, never a crash.
class ConnectorArgs(TypedDict, total=False):
    """stop, unplug, clear_fault (connector 1 when missing)."""

    connector_id: int


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


class WatchArgs(TypedDict):
    chargers: list[int]
    log: bool  # send the chargers' OCPP frame logs too


class EngineCommand(TypedDict):
    """A page's request to the worker of a charger's shard."""

    type: Literal["engine.command"]
    command: str  # one of COMMANDS
    args: dict[str, Any]  # the command's *Args, or WatchArgs
    reply_channel: str
    charger_id: NotRequired[int | None]  # drive commands only
    request_id: NotRequired[str]  # drive commands only: the ack and result repeat it


def engine_command(
    command: str,
    charger_id: int | None,
    args: Mapping[str, Any],
    reply_channel: str,
    request_id: str,
) -> EngineCommand:
    return {
        "type": COMMAND,
        "command": command,
        "charger_id": charger_id,
        "args": dict(args),
        "reply_channel": reply_channel,
        "request_id": request_id,
    }


def watch_request(
    command: Literal["snapshot", "watch"], chargers: list[int], *, log: bool, reply_channel: str
) -> EngineCommand:
    """`snapshot` is answered with one `charger_state` (and `charger_log` if asked) per
    charger the worker runs, and no result; `watch` only renews the chargers' leases."""
    args: WatchArgs = {"chargers": chargers, "log": log}
    return {"type": COMMAND, "command": command, "args": dict(args), "reply_channel": reply_channel}


class CommandAck(TypedDict):
    type: Literal["command.ack"]
    request_id: str | None


def command_ack(request_id: str | None) -> CommandAck:
    return {"type": EVENT_COMMAND_ACK, "request_id": request_id}


class CommandResult(TypedDict):
    type: Literal["command.result"]
    request_id: str | None
    charger_id: int | None
    command: str | None
    ok: bool
    message: str  # for the person who clicked


def command_result(
    request_id: str | None, charger_id: int | None, command: str | None, ok: bool, message: str
) -> CommandResult:
    return {
        "type": EVENT_COMMAND_RESULT,
        "request_id": request_id,
        "charger_id": charger_id,
        "command": command,
        "ok": ok,
        "message": message,
    }


# -- charger events ---------------------------------------------------------------------------


class EvseSnapshot(TypedDict):
    connector_id: int
    status: str  # a ConnectorStatus value
    error_code: str
    power_w: float
    register_wh: float
    soc: float | None
    voltage_v: list[float]
    current_a: list[float]
    transaction_id: int | None
    id_tag: str | None
    vehicle: str | None  # the plugged-in vehicle model's name


class ReservationSnapshot(TypedDict):
    reservation_id: int
    connector_id: int  # 0: any connector
    id_tag: str
    parent_id_tag: str | None
    expiry: str  # UTC, ISO 8601


class ChargerSnapshot(TypedDict):
    """The full, idempotent state of one charger as the dashboard shows it."""

    id: int | None  # the charger's primary key
    charge_point_id: str
    location_id: int | None
    link: str
    link_error: str | None
    boot: str
    power_type: str
    evses: list[EvseSnapshot]
    # Reservation, Local Auth List Management, Firmware Management (issue 17)
    reservations: list[ReservationSnapshot]
    local_list_version: int  # -1: no local list (profile not supported), 0: empty
    local_list_size: int
    firmware_version: str
    firmware_status: str  # the last FirmwareStatusNotification's status, or "Idle"
    diagnostics_status: str  # the same for DiagnosticsStatusNotification
    at: float  # Unix time


class ChargerState(TypedDict):
    type: Literal["charger.state"]
    charger: ChargerSnapshot


def charger_state(snapshot: ChargerSnapshot) -> ChargerState:
    return {"type": EVENT_CHARGER_STATE, "charger": snapshot}


# One logged OCPP frame: [Unix time, "in" or "out", the frame's text (redacted)].
LogFrame = list[float | str]


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


def fleet_summary(shard: int, shards: int, counts: FleetCounts, at: float) -> FleetSummary:
    return {"type": EVENT_FLEET_SUMMARY, "shard": shard, "shards": shards, **counts, "at": at}


class SiteCounts(TypedDict):
    power_w: float
    chargers: int
    charging: int  # EVSEs drawing power
    statuses: dict[str, int]
    links: dict[str, int]


class LocationSummary(SiteCounts):
    type: Literal["location.summary"]
    shard: int
    shards: int
    location_id: int
    at: float


def location_summary(
    shard: int, shards: int, location_id: int, counts: SiteCounts, at: float
) -> LocationSummary:
    return {
        "type": EVENT_LOCATION_SUMMARY,
        "shard": shard,
        "shards": shards,
        "location_id": location_id,
        **counts,
        "at": at,
    }


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


def fleet_received(request_id: str | None, shard: int) -> FleetReceived:
    return {"type": EVENT_FLEET_RECEIVED, "request_id": request_id, "shard": shard}


class ChargerOutcome(TypedDict):
    """What a worker did with one changed charger, in words for the person who saved it."""

    charger_id: int
    charge_point_id: str
    outcome: str  # e.g. "reconnects now", "applied live", "takes effect when its session ends"


class FleetApplied(TypedDict):
    type: Literal["fleet.applied"]
    request_id: str | None
    shard: int
    outcomes: list[ChargerOutcome]


def fleet_applied(
    request_id: str | None, shard: int, outcomes: Iterable[ChargerOutcome]
) -> FleetApplied:
    return {
        "type": EVENT_FLEET_APPLIED,
        "request_id": request_id,
        "shard": shard,
        "outcomes": list(outcomes),
    }
