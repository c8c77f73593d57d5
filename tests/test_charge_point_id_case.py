"""Charge point ids that differ only in letter case (CP-001, cp-001) are refused: a CSMS
that matches the identity regardless of case, or a proxy that folds the URL's case, would
take the two for one charger. The model says so on the field naming the other charger, the
database's index refuses what a race lets past, and the migration that adds the index
stops on a database that holds such a pair, naming it."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from chargers.fleet_generator import FleetGeneratorForm
from chargers.models import Charger
from simulator.runtime.demo import ensure_demo_fleet
from tests.cast import make_charger, make_location

pytestmark = pytest.mark.django_db

BEFORE = ("chargers", "0020_charger_claims")
INDEX = ("chargers", "0021_charge_point_id_case_insensitive")


def test_full_clean_refuses_an_id_differing_only_in_case_naming_the_other():
    make_charger("CP-001")
    charger = Charger(charge_point_id="cp-001", location=make_location("Elsewhere"))
    with pytest.raises(ValidationError) as info:
        charger.full_clean()
    assert info.value.message_dict["charge_point_id"] == [
        "Charger CP-001 exists, whose id differs from cp-001 only in letter case: a CSMS may "
        "match charge point ids regardless of case and take the two for one charger. Choose "
        "an id that differs in more than case."
    ]


def test_a_charger_may_change_the_case_of_its_own_id():
    charger = make_charger("CP-001")
    charger.charge_point_id = "cp-001"
    charger.full_clean()
    charger.save()
    assert Charger.objects.get().charge_point_id == "cp-001"


def test_the_same_id_is_still_said_by_the_fields_own_check():
    make_charger("CP-001")
    with pytest.raises(ValidationError) as info:
        Charger(charge_point_id="CP-001", location=Charger.objects.get().location).full_clean()
    assert info.value.message_dict["charge_point_id"] == [
        "Charger with this Charge point id already exists."
    ]


def test_the_database_refuses_a_pair_the_checks_did_not_see():
    """Two writers that both checked before either wrote: the index decides."""
    make_charger("CP-001")
    with pytest.raises(IntegrityError), transaction.atomic():
        Charger.objects.create(charge_point_id="cp-001", location=Charger.objects.get().location)
    assert list(Charger.objects.values_list("charge_point_id", flat=True)) == ["CP-001"]


def test_the_fleet_generator_refuses_ids_an_existing_charger_has_in_other_case():
    location = make_charger("cp-0002").location
    form = FleetGeneratorForm(data={"first_id": "CP-0001", "count": 3, "location": location.pk})
    assert form.errors == {"first_id": ["CP-0001..CP-0003 overlaps existing chargers: cp-0002."]}


def test_the_demo_fleet_leaves_out_an_id_a_users_charger_has_in_other_case(caplog):
    make_charger("demo-0002")
    with caplog.at_level(logging.WARNING, logger="simulator.runtime.demo"):
        assert ensure_demo_fleet(3, "ws://127.0.0.1:9/ocpp") == 2
    assert sorted(Charger.objects.values_list("charge_point_id", flat=True)) == [
        "DEMO-0001",
        "DEMO-0003",
        "demo-0002",
    ]
    assert "DEMO-0002 is not created: charger demo-0002 exists" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_migration_stops_on_a_pair_naming_it_and_runs_once_it_is_renamed():
    # The models as the migrations before and at the index knew them: today's would name
    # tables and columns that later migrations add (and going back removed).
    models = MigrationExecutor(connection).loader.project_state(INDEX).apps
    old_charger = models.get_model("chargers", "Charger")
    location = make_location().pk  # no migration of the chargers' changes its table
    try:
        MigrationExecutor(connection).migrate([BEFORE])
        for cp_id in ("CP-001", "cp-001", "Cp-001", "DEPOT-7", "depot-7", "CP-002"):
            old_charger.objects.create(charge_point_id=cp_id, location_id=location)
        # Through the command, as an upgrade runs it: a CommandError, which `manage.py
        # migrate` and `runsimulator` print as its message alone, with no traceback.
        with pytest.raises(CommandError) as info:
            call_command("migrate", *INDEX, verbosity=0)
        message = str(info.value)
        assert message.startswith(
            "2 group(s) of chargers have charge point ids that differ only in letter case:\n"
            "  CP-001, Cp-001, cp-001\n"
            "  DEPOT-7, depot-7\n"
        )
        assert "Rename all but one charger of each group" in message
        assert "CP-002" not in message
        assert old_charger.objects.count() == 6  # nothing renamed or lost
        # Not applied: a pair is still let in.
        assert BEFORE in MigrationExecutor(connection).loader.applied_migrations
        assert INDEX not in MigrationExecutor(connection).loader.applied_migrations

        old_charger.objects.filter(charge_point_id="cp-001").update(charge_point_id="CP-001-B")
        old_charger.objects.filter(charge_point_id="Cp-001").update(charge_point_id="CP-001-C")
        old_charger.objects.filter(charge_point_id="depot-7").update(charge_point_id="DEPOT-8")
        MigrationExecutor(connection).migrate([INDEX])
        with pytest.raises(IntegrityError), transaction.atomic():
            old_charger.objects.create(charge_point_id="depot-8", location_id=location)
    finally:
        old_charger.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
