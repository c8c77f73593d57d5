"""A charging session's transaction as the charge point keeps it.

The charge point starts and stops its transactions itself (`Charger.start_transaction`,
`stop_transaction`) and alone writes these records; the CSMS's id arrives with the answer
to the start. Everything else reads them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from simulator.core.protocol import MeterSample


@dataclass(slots=True, eq=False)
class LocalTransaction:
    connector_id: int
    id_tag: str
    meter_start: int
    started_at: str
    local_id: str = field(default_factory=lambda: f"{time.time_ns():x}{random.getrandbits(16):04x}")
    transaction_id: int | None = None  # the CSMS's id, once the start is confirmed
    meter_stop: int | None = None
    stopped_at: str | None = None
    stop_reason: str | None = None
    # The idTag's group (parentIdTag) as the CSMS gave it in StartTransaction.conf: an
    # idTag of the same group may stop the transaction.
    parent_id_tag: str | None = None
    # Meter readings kept for the stop message: the begin of the transaction, then the
    # clock-aligned (StopTxnAlignedData) and periodic (StopTxnSampledData) ones in time
    # order.
    begin_values: list[MeterSample] = field(default_factory=list)
    aligned_values: list[MeterSample] = field(default_factory=list)
    # The meter engine's time (monotonic s) the transaction began at, once the engine runs
    # the charger: what flowed before it is not the transaction's, nor under its limits.
    metered_from: float | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None
