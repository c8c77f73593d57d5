"""Channel-layer groups: who hears what (names match ^[a-zA-Z0-9._-]+$, built from keys)."""

from __future__ import annotations

import zlib
from typing import Final

ENGINE_GROUP_PREFIX: Final = "engine.shard"

# Per-shard aggregates for the fleet page's counts (the chargers' own groups carry every
# snapshot, far too much for a page that shows 50 of 5,000 chargers).
FLEET_SUMMARY_GROUP: Final = "fleet.summary"
# A worker publishes its fleet and site summaries when they changed, looked at every
# SUMMARY_CHECK_SECONDS, and unchanged ones again at least every SUMMARY_KEEPALIVE_SECONDS:
# a page just opened hears from every running worker within about their sum.
SUMMARY_CHECK_SECONDS: Final = 1.0
SUMMARY_KEEPALIVE_SECONDS: Final = 5.0

# The engine publishes snapshots only for chargers a page watches: a page asks for a
# snapshot when it connects and renews the watch; a watch not renewed in time lapses.
WATCH_LEASE_SECONDS: Final = 90.0
WATCH_RENEW_SECONDS: Final = 30.0


def charger_group(charger_pk: int) -> str:
    return f"charger.{charger_pk}"


def location_group(location_pk: int) -> str:
    return f"location.{location_pk}"


def engine_group(shard: int) -> str:
    """The group a simulator worker of that shard listens on for commands."""
    return f"{ENGINE_GROUP_PREFIX}.{shard}"


def shard_of(charge_point_id: str, shards: int) -> int:
    """Stable (process-independent) hash of the charge point id: which worker owns it."""
    return zlib.crc32(charge_point_id.encode()) % shards if shards > 1 else 0


def stream_group(token: str) -> str:
    """The group one API event stream listens on (token: letters and digits)."""
    return f"events.{token}"
