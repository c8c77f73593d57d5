"""Upgrading keeps no secret in the stored message log: rows an older engine stored with
what today's redacts (an AuthorizationKey named in another case, a signed URL's
parameters) are redacted by simulator 0001, and served so by the API."""

import gzip
import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.api_client import TokenClient, user_with_token
from tests.cast import make_charger

BEFORE = ("simulator", None)
REDACT = ("simulator", "0001_redact_stored_message_log")
KEY = "00112233445566778899aabbccddeeff"
SIGNATURE = "deadbeef5ec4e7"
CHANGE = f'[2,"m-1","ChangeConfiguration",{{"key":"authorizationkey","value":"{KEY}"}}]'
FIRMWARE = (
    '[2,"m-2","UpdateFirmware",{"location":"https://files.example/fw.bin?X-Amz-Signature='
    f'{SIGNATURE}&X-Amz-Credential=AKIA1","retrieveDate":"2026-12-07T00:00:00Z"}}]'
)
LOGIN = '[2,"m-3","GetDiagnostics",{"location":"ftp://diag:hunter2secret@files.example/"}]'
METER = '[2,"m-4","MeterValues",{"connectorId":1,"meterValue":[]}]'


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_redacts_what_an_older_engine_stored_in_clear():
    charger = make_charger("LOG-OLD")
    # The log's table as the migrations before the redaction knew it.
    models = MigrationExecutor(connection).loader.project_state(REDACT).apps
    entry = models.get_model("chargers", "FrameLogEntry")
    scenario_run = models.get_model("scenarios", "ScenarioRun")
    try:
        MigrationExecutor(connection).migrate([BEFORE])

        def stored(text: str, answer: str = "", cut: int = 0) -> int:
            row = entry.objects.create(
                charger_id=charger.pk,
                at=1796681353.0,
                kind="frame",
                direction="in",
                message_id="m",
                action="A",
                size=len(text) + cut,
                payload=text,
                answer_at=1796681353.1 if answer else None,
                answer_size=len(answer) if answer else None,
                answer_payload=answer,
            )
            return int(row.pk)

        change = stored(CHANGE, answer='[3,"m-1",{"status":"NotSupported"}]')
        firmware = stored(FIRMWARE, cut=40)  # its stored text was cut: the frame was longer
        login = stored(LOGIN)
        meter = stored(METER)
        # A scenario run's frames, kept as the runner keeps them (gzip, a JSON event a line).
        events = [
            {"at": 1.0, "kind": "frame", "data": {"direction": "in", "payload": CHANGE}},
            {"at": 2.0, "kind": "connection", "data": {"event": "connected", "detail": {}}},
            {"at": 3.0, "kind": "frame", "data": {"payload": METER, "size": len(METER)}},
        ]
        lines = b"".join(json.dumps(event).encode() + b"\n" for event in events)
        run = scenario_run.objects.create(
            name="old", source="name: old", seed=1, status="passed", frames=gzip.compress(lines)
        )
        MigrationExecutor(connection).migrate([REDACT])

        rows = {
            pk: (payload, size)
            for pk, payload, size in entry.objects.values_list("pk", "payload", "size")
        }
        assert rows[change] == (
            '[2,"m-1","ChangeConfiguration",{"key":"authorizationkey","value":"********"}]',
            len(rows[change][0]),
        )
        assert entry.objects.get(pk=change).answer_payload == (
            '[3,"m-1",{"status":"NotSupported"}]'
        )
        assert SIGNATURE not in rows[firmware][0] and "AKIA1" not in rows[firmware][0]
        assert "X-Amz-Signature=********" in rows[firmware][0]
        assert rows[firmware][1] == len(rows[firmware][0]) + 40  # still says it was cut
        assert "hunter2secret" not in rows[login][0] and "diag:********@" in rows[login][0]
        assert rows[meter] == (METER, len(METER))  # nothing to redact: not written

        kept = [
            json.loads(line)
            for line in gzip.decompress(bytes(scenario_run.objects.get(pk=run.pk).frames))
            .decode()
            .splitlines()
        ]
        assert [event["kind"] for event in kept] == ["frame", "connection", "frame"]
        assert KEY not in kept[0]["data"]["payload"]
        assert '"value":"********"' in kept[0]["data"]["payload"]
        assert kept[1:] == events[1:]

        # What the API serves (it reads the log as stored).
        _, token = user_with_token("reader", "view_charger")
        answer = TokenClient(token).get("/api/v1/chargers/LOG-OLD/log")
        assert answer.status_code == 200
        served = answer.content.decode()
        assert "authorizationkey" in served and "m-4" in served
        for secret in (KEY, SIGNATURE, "hunter2secret"):
            assert secret not in served
    finally:
        entry.objects.all().delete()
        scenario_run.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
