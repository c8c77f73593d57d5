"""Everything that crosses between the web side and the engine, defined once.

The web side (chargers views, consumers, admin) and the engine (simulator) never import
each other's runtime code: they talk over the channel layer (and the database), and both
import this module for group names, command types and event types.
"""

from __future__ import annotations

from typing import Final

# Groups (names match ^[a-zA-Z0-9._-]+$ and stay short: built from primary keys).
FLEET_GROUP: Final = "fleet"
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
        "snapshot",  # publish a full snapshot now
    }
)
