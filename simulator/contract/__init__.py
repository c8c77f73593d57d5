"""Everything that crosses between the web side and the engine, defined once.

The web side (chargers views, consumers, admin) and the engine (simulator) never import
each other's runtime code: they talk over the channel layer (and the database), and both
import this module for group names, command types and event types.
"""

from __future__ import annotations

from typing import Final

# Groups (names match ^[a-zA-Z0-9._-]+$ and stay short: built from primary keys).
ENGINE_GROUP_PREFIX: Final = "engine.shard"


def charger_group(charger_pk: int) -> str:
    return f"charger.{charger_pk}"


def location_group(location_pk: int) -> str:
    return f"location.{location_pk}"


def engine_group(shard: int) -> str:
    """The group a simulator worker of that shard listens on for commands."""
    return f"{ENGINE_GROUP_PREFIX}.{shard}"


def shard_of(charge_point_id: str, shards: int) -> int:
    """Stable (process-independent) hash of the charge point id: which worker owns it."""
    import zlib

    return zlib.crc32(charge_point_id.encode()) % shards if shards > 1 else 0


# Event types published by the engine (the consumer method is the type with . -> _).
EVENT_CHARGER_STATE: Final = "charger.state"  # full idempotent snapshot of one charger
EVENT_CHARGER_LOG: Final = "charger.log"  # OCPP frames, newest last
EVENT_COMMAND_RESULT: Final = "command.result"  # answer to a command

# Command types sent to the engine (channel-layer message type).
COMMAND: Final = "engine.command"

# The engine publishes snapshots only for chargers a page watches: a page asks for a
# snapshot when it connects and renews the watch; a watch not renewed in time lapses.
WATCH_LEASE_SECONDS: Final = 90.0
WATCH_RENEW_SECONDS: Final = 30.0

COMMANDS: Final = frozenset(
    {
        "connect",
        "disconnect",
        "plug_in",  # connector_id, vehicle_id, soc, target_soc
        "present_id_tag",  # connector_id, id_tag
        "stop",  # connector_id
        "unplug",  # connector_id
        "inject_fault",  # connector_id, error_code, info
        "clear_fault",  # connector_id
        "cut_network",  # seconds
        "reload",  # re-read the charger from the database
        "snapshot",  # publish a full snapshot now (and start watching those chargers)
        "watch",  # a page still shows these chargers: keep publishing their snapshots
    }
)

# -- dashboard additions ------------------------------------------------------------------

# Per-shard aggregates for the fleet page's counts (the `fleet` group carries every
# charger's snapshot, far too much for a page that shows 50 of 5,000 chargers).
FLEET_SUMMARY_GROUP: Final = "fleet.summary"
EVENT_FLEET_SUMMARY: Final = "fleet.summary"  # shard, shards, counts by status and link, at
EVENT_LOCATION_SUMMARY: Final = "location.summary"  # shard, location_id, power_w, at
EVENT_COMMAND_ACK: Final = "command.ack"  # the owning worker received the command

# Fields of a COMMAND message: {"type": COMMAND, "command": one of COMMANDS,
# "charger_id": pk, "args": {...}, "reply_channel": channel name, "request_id": str}.
# The worker answers on reply_channel with EVENT_COMMAND_ACK at once, then with
# EVENT_COMMAND_RESULT: {"request_id", "ok": bool, "message": str for the user}.
# "snapshot" takes args {"chargers": [pk, ...], "log": bool} and answers with one
# EVENT_CHARGER_STATE (and EVENT_CHARGER_LOG if asked) per charger it owns, no result.

# OCPP 1.6 ChargePointStatus values of a connector (for filters and counts).
CONNECTOR_STATUSES: Final = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)

# OCPP 1.6 ChargePointErrorCode values a person may inject (NoError clears instead).
FAULT_CODES: Final = (
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "OtherError",
    "OverCurrentFailure",
    "OverVoltage",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "WeakSignal",
)
