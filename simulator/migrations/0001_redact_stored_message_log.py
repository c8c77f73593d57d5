"""The stored message log redacted as today's engine redacts what it stores.

The engine redacts a frame before it keeps it, but what it redacts grew after the log was
first stored (chargers 0009): an AuthorizationKey named in another case
("authorizationkey", since 6 December) and a signed URL's access parameters
(X-Amz-Signature=..., since 5 December) were stored in clear before. An upgrade kept those
rows, and the API, the dashboard and the downloads served them as stored (they read the
log as redacted already). Each row is redacted here once, by the engine's own rule; so are
the frames a scenario run keeps (its frames.jsonl), which the engine redacted alike.

In the simulator app because the rule is the engine's (`simulator.ocpp16.redaction`),
which the chargers app may not import. Going back keeps the rows redacted: what was
removed is not known any more."""

import gzip
import json
from typing import Any

from django.db import migrations
from django.db.models import Q

from simulator.ocpp16.redaction import may_hold_secret, redact_frame

BATCH = 2_000


def _redacted(text: str, size: int | None) -> tuple[str, int | None] | None:
    """The text and its frame's length after redaction; None when nothing changes. A row's
    size is the whole frame's (the text may be cut): it changes by what the text did."""
    if not text or not may_hold_secret(text):
        return None
    new = redact_frame(text)
    if new == text:
        return None
    return new, None if size is None else max(len(new), size - len(text) + len(new))


def redact_stored_frames(apps: Any, schema_editor: Any) -> None:
    entry = apps.get_model("chargers", "FrameLogEntry")
    # The database picks the few rows `may_hold_secret` can hold ("k" in any case: the
    # name's rarest letter), in one scan; redact_frame decides on each of them.
    maybe = Q()
    for marker in ("@", "?", "k", "K", "\\"):
        maybe |= Q(payload__contains=marker) | Q(answer_payload__contains=marker)
    rows = (
        entry.objects.filter(maybe)
        .order_by("pk")
        .values_list("pk", "payload", "size", "answer_payload", "answer_size")
    )
    changed = []
    for pk, payload, size, answer, answer_size in rows.iterator(chunk_size=BATCH):
        fields = {}
        if (new := _redacted(payload, size)) is not None:
            fields["payload"], fields["size"] = new
        if (new := _redacted(answer, answer_size)) is not None:
            fields["answer_payload"], fields["answer_size"] = new
        if fields:
            changed.append((pk, fields))
    for pk, fields in changed:
        entry.objects.filter(pk=pk).update(**fields)


def _redacted_line(line: bytes) -> bytes | None:
    """A scenario run's stored event (a JSON line) with its frame redacted; None when
    nothing changes (an event that is no frame, or holds nothing to redact)."""
    try:
        event = json.loads(line)
        data = event["data"]
        new = _redacted(data["payload"], data.get("size"))
    except (ValueError, KeyError, TypeError):
        return None  # not a frame event as the runner stores one: nothing of a frame
    if event.get("kind") != "frame" or new is None:
        return None
    data["payload"], size = new
    if size is not None:
        data["size"] = size
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def redact_stored_scenario_frames(apps: Any, schema_editor: Any) -> None:
    run = apps.get_model("scenarios", "ScenarioRun")
    # One run read at a time (a run keeps up to 100,000 frames), each written before the
    # next is read: no write while a read of the table is open.
    for pk in list(run.objects.exclude(frames=b"").order_by("pk").values_list("pk", flat=True)):
        frames = run.objects.filter(pk=pk).values_list("frames", flat=True).first()
        if not frames:
            continue
        lines = gzip.decompress(bytes(frames)).split(b"\n")
        changed = False
        for n, line in enumerate(lines):
            if line and (new := _redacted_line(line)) is not None:
                lines[n], changed = new, True
        if changed:
            run.objects.filter(pk=pk).update(frames=gzip.compress(b"\n".join(lines)))


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0023_runtime_clock_offset"),
        ("scenarios", "0002_api_runs"),
    ]

    operations = [
        migrations.RunPython(redact_stored_frames, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(
            redact_stored_scenario_frames, migrations.RunPython.noop, elidable=True
        ),
    ]
