"""The AuthorizationKey at rest: sealed under SECRET_KEY in every way a key is written, the
text in Python code, nothing readable in the database, a dump or a fixture."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from chargers.fleet import update_rows
from chargers.models import Charger
from chargers.resources import ChargerResource
from chargers.sealed import SEALED_PREFIX
from fleet_io.file_formats import read_dataset
from tests.cast import make_charger

KEY = "0123456789abcdef0123456789abcdef"


def stored(pk: int) -> str:
    """The column as the database holds it, read around the model."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT authorization_key FROM chargers_charger WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def assert_sealed(pk: int) -> None:
    raw = stored(pk)
    assert raw.startswith(SEALED_PREFIX)
    assert KEY not in raw
    assert Charger.objects.get(pk=pk).authorization_key == KEY


@pytest.mark.django_db
def test_a_saved_key_is_sealed_and_reads_back_as_the_key():
    charger = make_charger("SEAL-1", security_profile=1, authorization_key=KEY)
    assert_sealed(charger.pk)
    assert Charger.objects.filter(pk=charger.pk).values_list("authorization_key", flat=True)[0] == (
        KEY
    )
    # Each sealing differs (a fresh nonce): the token says nothing about equal keys.
    other = make_charger("SEAL-2", security_profile=1, authorization_key=KEY)
    assert stored(other.pk) != stored(charger.pk)


@pytest.mark.django_db
def test_an_empty_key_stays_empty_and_can_be_looked_up():
    charger = make_charger("SEAL-E")
    assert stored(charger.pk) == ""
    assert Charger.objects.filter(authorization_key="").count() == 1


@pytest.mark.django_db
def test_the_key_a_csms_sets_is_sealed():
    charger = make_charger("SEAL-CSMS")
    Charger.objects.set_key_column(charger.pk, "AuthorizationKey", KEY)
    assert_sealed(charger.pk)


@pytest.mark.django_db
def test_the_bulk_update_of_an_import_seals_the_key():
    """The import's own UPDATE passes plain values to the driver as they are: not this one."""
    charger = make_charger("SEAL-BULK")
    charger.authorization_key = KEY
    update_rows(Charger, [charger], ["authorization_key"])
    assert_sealed(charger.pk)


@pytest.mark.django_db
def test_an_imported_key_is_sealed_on_create_and_on_update():
    header = (
        "charge_point_id,location,power_type,max_power_kw,evses,csms_url,security_profile,"
        "authorization_key"
    )
    make_charger("SEAL-IMP-OLD", security_profile=1, authorization_key="f" * 32)
    location = Charger.objects.get().location.name
    rows = [
        f"SEAL-IMP-NEW,{location},AC,22,Type2:22,ws://h/ocpp,1,{KEY}",
        f"SEAL-IMP-OLD,{location},AC,22,Type2:22,ws://h/ocpp,1,{KEY}",
    ]
    data = ("\n".join([header, *rows]) + "\n").encode()
    result = ChargerResource().import_data(read_dataset(data, "csv"))
    assert not result.has_errors(), result
    for charger in Charger.objects.all():
        assert_sealed(charger.pk)


@pytest.mark.django_db
def test_a_dump_holds_the_token_and_loads_back_to_the_key(tmp_path):
    charger = make_charger("SEAL-DUMP", security_profile=1, authorization_key=KEY)
    out = io.StringIO()
    call_command("dumpdata", "chargers.charger", stdout=out)
    assert KEY not in out.getvalue()
    dumped = json.loads(out.getvalue())
    assert dumped[0]["fields"]["authorization_key"].startswith(SEALED_PREFIX)
    Charger.objects.filter(pk=charger.pk).update(authorization_key="")
    fixture = tmp_path / "chargers.json"
    fixture.write_text(out.getvalue())
    call_command("loaddata", str(fixture), verbosity=0)
    assert_sealed(charger.pk)


@pytest.mark.django_db
def test_a_key_sealed_under_another_secret_key_reads_as_empty_with_a_warning(caplog):
    charger = make_charger("SEAL-OTHER", security_profile=1, authorization_key=KEY)
    with (
        override_settings(SECRET_KEY="another-secret-key-" + "x" * 40),
        caplog.at_level(logging.WARNING, logger="chargers.sealed"),
    ):
        assert Charger.objects.get(pk=charger.pk).authorization_key == ""
    assert "could not be opened" in caplog.text and "SECRET_KEY" in caplog.text
    assert KEY not in caplog.text
    assert Charger.objects.get(pk=charger.pk).authorization_key == KEY


@pytest.mark.django_db
def test_a_key_stored_before_sealing_still_reads_as_itself():
    """A row the migration has not reached yet (or restored from an older dump)."""
    charger = make_charger("SEAL-LEGACY")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE chargers_charger SET authorization_key = %s WHERE id = %s", [KEY, charger.pk]
        )
    assert Charger.objects.get(pk=charger.pk).authorization_key == KEY


@pytest.mark.django_db
def test_the_text_keeps_its_length_limit():
    charger = make_charger("SEAL-LONG", security_profile=1, authorization_key=KEY)
    charger.authorization_key = "a" * 101
    with pytest.raises(Exception, match="at most 100 characters"):
        charger.full_clean()


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_existing_keys_and_going_back_opens_them():
    charger = make_charger("SEAL-MIG", security_profile=1, authorization_key=KEY)
    assert stored(charger.pk).startswith(SEALED_PREFIX)
    try:
        MigrationExecutor(connection).migrate([("chargers", "0018_security_log_entry")])
        assert stored(charger.pk) == KEY  # back: opened
        MigrationExecutor(connection).migrate([("chargers", "0019_seal_authorization_key")])
        assert_sealed(charger.pk)  # forward: a key stored as it was sent is sealed
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
