"""A template's charger ids against the chargers already stored: charge point ids are
unique regardless of letter case (chargers migration 0021), and a template's id carries a
random token. One that equals a stored id but for case draws another token rather than
ending the run on the database's unique index; a run that cannot find a free id says
which charger is in its way.

The engine runs in this process (runscenario's `InProcessEngine`) on the in-memory channel
layer; its chargers talk to the built-in CSMS over real sockets."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import pytest
from channels.db import database_sync_to_async

from chargers.engine_client import EngineClient
from chargers.models import Charger
from scenarios.format import parse
from scenarios.models import ScenarioRun
from scenarios.runner import Options, Runner
from simulator.csms import CentralSystem
from simulator.management.commands.runscenario import InProcessEngine
from tests.cast import make_charger

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("flushed_layer"),
]

BOOT = textwrap.dedent(
    """\
    name: ids
    description: One template charger that boots.
    chargers: {template: {count: 1}}
    steps:
      - expect: {status: Accepted}
    """
)


async def _runner(csms: CentralSystem) -> Runner:
    """A runner of BOOT whose first token is "abcd"."""
    scenario = parse(BOOT, file="ids.yaml")
    run = await database_sync_to_async(ScenarioRun.objects.create)(
        name=scenario.name, file=scenario.file, source=scenario.source, seed=1
    )
    runner = Runner(
        scenario,
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, settle_seconds=0.3),
        run=run,
    )
    runner.token = "abcd"
    return runner


async def _runner_with_twin(csms: CentralSystem) -> tuple[Runner, str]:
    """A runner whose first token is "abcd", and a stored charger whose id is the one it
    would make but for letter case."""
    runner = await _runner(csms)
    assert runner.run is not None
    twin = f"SCN-R{runner.run.pk}.ABCD-1"
    await database_sync_to_async(make_charger)(twin)
    return runner, twin


async def test_an_id_that_clashes_only_by_case_takes_another_token(
    csms: CentralSystem,
) -> None:
    runner, twin = await _runner_with_twin(csms)
    run = await runner.execute()
    assert run.status == "passed", run.message
    (charger,) = run.result["chargers"]
    made = charger["charge_point_id"]
    assert made.lower() != twin.lower()
    assert made.startswith(f"SCN-R{run.pk}.") and made.endswith("-1")
    # The stored charger is untouched, the temporary one gone.
    left = await database_sync_to_async(
        lambda: list(Charger.objects.values_list("charge_point_id", flat=True))
    )()
    assert left == [twin]


async def test_an_id_stored_between_the_look_up_and_the_insert_takes_another_token(
    csms: CentralSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer (the API, an import) stores a charger of the id the run is about to
    insert after the run found it free and before its insert: the run draws another token,
    as for a clash the look-up saw (it ended as "the runner failed: IntegrityError")."""
    from scenarios import charger_ids

    look_up = charger_ids.first_clash
    meanwhile: list[str] = []

    def then_another_writer(ids: Sequence[str]) -> str | None:
        found = look_up(ids)
        if found is None and not meanwhile:
            # Committed at once (autocommit), as another connection's insert would be.
            meanwhile.append(ids[0].upper())
            make_charger(meanwhile[0])
        return found

    monkeypatch.setattr(charger_ids, "first_clash", then_another_writer)
    runner = await _runner(csms)
    run = await runner.execute()
    assert run.status == "passed", run.message
    assert meanwhile == [f"SCN-R{run.pk}.ABCD-1"]
    (charger,) = run.result["chargers"]
    assert charger["charge_point_id"].lower() != meanwhile[0].lower()
    left = await database_sync_to_async(
        lambda: list(Charger.objects.values_list("charge_point_id", flat=True))
    )()
    assert left == meanwhile  # the other writer's charger kept, the run's own deleted


async def test_a_run_that_finds_no_free_id_names_the_charger_in_its_way(
    csms: CentralSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scenarios import charger_ids

    # Every token drawn is the same: the clash cannot be avoided, and is said.
    monkeypatch.setattr(charger_ids, "draw_token", lambda: "abcd")
    runner, twin = await _runner_with_twin(csms)
    run = await runner.execute()
    assert run.status == "error"
    assert run.message == (
        f"no free id for the template's chargers in 5 tokens drawn: {twin} exists, whose id "
        f"differs from SCN-R{run.pk}.abcd-1 only in letter case (charge point ids are unique "
        "regardless of case)"
    )
    assert "IntegrityError" not in run.message


async def test_an_id_written_in_another_case_is_named_with_the_stored_one(
    csms: CentralSystem,
) -> None:
    """Ids are unique regardless of case, so the charger meant is known: said, not only
    "no enabled charger with the id cp-case"."""
    await database_sync_to_async(make_charger)("CP-CASE")
    await database_sync_to_async(make_charger)("CP-OFF", enabled=False)
    runner = Runner(
        parse(
            textwrap.dedent(
                """\
                name: by-id
                description: An existing charger named in other letter case.
                chargers: {ids: [cp-case, CP-NONE, CP-OFF]}
                steps:
                  - expect: {status: Accepted}
                """
            ),
            file="by-id.yaml",
        ),
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, settle_seconds=0.3),
    )
    run = await runner.execute()
    assert run.status == "error"
    assert run.message == (
        "no enabled charger with the id cp-case, CP-NONE, CP-OFF (charge point ids are "
        "written as stored: CP-CASE, not cp-case)"
    )
