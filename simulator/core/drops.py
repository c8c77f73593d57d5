"""What the engine drops, counted: plain integers that the runtime exports as a metric.

Every layer that throws something away on purpose (a frame off a charger's bounded message
log, a message the outbox gives up on, a channel-layer message a full channel refuses)
adds to `DROPPED` under a reason of `REASONS`. The core stays plain Python: it only counts;
`simulator.runtime.metrics` reads the counts when Prometheus scrapes. A dict increment is
all it costs, which matters for the message log: in a steady fleet nearly every frame pushes
an old one out.
"""

from __future__ import annotations

from typing import Final

# reason -> what it counts (the metric's help text lists them).
REASONS: Final[dict[str, str]] = {
    "message_log": "an OCPP frame pushed off a charger's bounded message log",
    "message_log_unsaved": "a message-log entry not stored: refused, or piled up while the "
    "database was down",
    "event_stream": "an event a stream's subscriber fell too far behind to receive",
    "outbox_offline": "a message that is not a transaction message, not sent: charger offline",
    "outbox_attempts": "a transaction message given up after TransactionMessageAttempts",
    "outbox_thinned": "a periodic sample dropped from a charger's long backlog (every second "
    "one, CHARGESIM_OFFLINE_QUEUE_LIMIT)",
    "outbox_unsendable": "a message the adapter could not build or check; never sent",
    "outbox_unsaved": "a transaction message whose row the database refused; never sent",
    "outbox_not_taken": "a durable message outside transactions the CSMS does not implement",
    "frame_ignored": "a frame from the CSMS that was neither a CALL nor an awaited answer",
    "channel_layer_full": "a channel-layer message refused because its channel was full",
    "reply_undelivered": "an answer to a page or API caller that could not be sent",
    "command_expired": "a command read after its sender had answered that no worker runs it",
    "network_drop": "an outgoing OCPP frame lost on purpose (the charger's drop_rate)",
}

# A plain dict (a Counter's increments are slower), every reason present from the start.
DROPPED: Final[dict[str, int]] = dict.fromkeys(REASONS, 0)


def dropped(reason: str, count: int = 1) -> None:
    """Count `count` things dropped for `reason` (one of `REASONS`: another is a KeyError)."""
    DROPPED[reason] += count
