"""Charger import: natural keys, EVSEs and configuration in a row, all-or-nothing, messages."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
import zipfile

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from chargers.configuration_overrides import MAX_CUSTOM_KEYS
from chargers.evse_layout import LayoutError, format_evses, parse_evses, specs_of
from chargers.models import Charger, ConfigurationKey, Evse
from chargers.resources import ChargerResource
from fleet_io.file_formats import FileProblem, read_dataset
from simulator.contract import config_keys
from tests.cast import make_charger, make_location, make_vehicle
from tests.test_export_chargers import admin_export

pytestmark = pytest.mark.django_db

HEADER = "charge_point_id,location,power_type,max_power_kw,evses,csms_url,configuration"
GOOD = [
    "CP-1,Depot,AC,22,2*Type2:11,ws://csms.example:9000/ocpp,HeartbeatInterval=60",
    "CP-2,Depot,DC,150,CCS2:150;CHAdeMO:50,wss://csms.example/ocpp,",
]


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def run_import(data: bytes, file_format: str = "csv", **kwargs):
    return ChargerResource(**kwargs).import_data(read_dataset(data, file_format))


def fleet_snapshot() -> list[tuple]:
    return [
        (
            c.charge_point_id,
            c.location.name,
            c.power_type,
            c.max_power_kw,
            c.csms_url,
            c.security_profile,
            c.auto_connect,
            c.default_vehicle_id,
            tuple((e.connector_id, e.connector_type, e.max_power_kw) for e in c.evses.all()),
            tuple(sorted(c.configuration.values_list("key", "value"))),
        )
        for c in Charger.objects.select_related("location").order_by("charge_point_id")
    ]


def charger_like_the_admin_makes(charge_point_id: str, **fields) -> Charger:
    """tests.cast.make_charger adds EVSEs after Charger.save() seeded NumberOfConnectors=1
    (as the admin's add view does); a consistent charger has it equal to its EVSE count."""
    charger = make_charger(charge_point_id, **fields)
    charger.configuration.filter(key="NumberOfConnectors").update(value=str(charger.evses.count()))
    return charger


def table_sizes() -> tuple[int, int, int]:
    return Charger.objects.count(), Evse.objects.count(), ConfigurationKey.objects.count()


def test_it_creates_chargers_with_their_evses_and_configuration(depot):
    result = run_import(csv_bytes(*GOOD))
    assert not result.has_errors(), result.problems()
    cp1 = Charger.objects.get(charge_point_id="CP-1")
    assert [(e.connector_type, e.max_power_kw) for e in cp1.evses.all()] == [
        ("Type2", 11.0),
        ("Type2", 11.0),
    ]
    config = dict(cp1.configuration.values_list("key", "value"))
    assert config["HeartbeatInterval"] == "60"
    assert config["NumberOfConnectors"] == "2"
    assert config["MeterValueSampleInterval"] == "60"  # the defaults come too
    cp2 = Charger.objects.get(charge_point_id="CP-2")
    assert cp2.configuration.get(key="NumberOfConnectors").value == "2"
    assert cp2.configuration.count() == cp1.configuration.count()


def test_imported_chargers_get_the_same_configuration_as_chargers_saved_one_by_one(depot):
    run_import(csv_bytes("CP-1,Depot,AC,22,Type2:22,,"))
    saved = Charger.objects.create(charge_point_id="CP-9", location=depot)
    imported = Charger.objects.get(charge_point_id="CP-1")
    assert set(imported.configuration.values_list("key", "value", "readonly")) == set(
        saved.configuration.values_list("key", "value", "readonly")
    )


def test_a_new_charger_without_a_csms_url_column_gets_the_default_one(depot, settings):
    """As the API without the field; an empty cell says "none", as an empty field does."""
    settings.CHARGESIM_DEFAULT_CSMS_URL = "ws://csms.example:9000/ocpp"
    columns = "charge_point_id,location,power_type,max_power_kw,evses"

    def url_after_import(cp_id: str, *url_cell: str) -> str:
        header = f"{columns},csms_url" if url_cell else columns
        result = run_import(
            csv_bytes(",".join([cp_id, "Depot,AC,22,2*Type2:11", *url_cell]), header=header)
        )
        assert not result.has_errors(), result.problems()
        return str(Charger.objects.get(charge_point_id=cp_id).csms_url)

    assert url_after_import("NOURL-1") == "ws://csms.example:9000/ocpp"
    assert url_after_import("EMPTY-1", "") == ""
    # An update without the column keeps the charger's own.
    Charger.objects.filter(charge_point_id="EMPTY-1").update(csms_url="ws://mine/ocpp")
    assert url_after_import("EMPTY-1") == "ws://mine/ocpp"


def test_importing_the_same_file_twice_matches_the_stored_chargers_instead_of_duplicating(depot):
    run_import(csv_bytes(*GOOD))
    before = fleet_snapshot()
    result = run_import(csv_bytes(*GOOD))
    # Matched on the charge point id, and nothing to change: unchanged, not "updated".
    assert (result.totals["new"], result.totals["update"], result.totals["skip"]) == (0, 0, 2)
    assert fleet_snapshot() == before
    # 2 chargers, 4 EVSEs, every configuration key of each charger once
    assert table_sizes() == (2, 4, 2 * len(config_keys.defaults(2)))


def test_a_second_import_changes_fields_and_reshapes_evses_keeping_meter_registers(depot):
    run_import(csv_bytes(*GOOD))
    Evse.objects.filter(charger__charge_point_id="CP-1", connector_id=1).update(register_wh=5000)
    changed = "CP-1,Depot,AC,11,3*Type2:11,ws://other.example/ocpp,HeartbeatInterval=120"
    result = run_import(csv_bytes(changed))
    assert not result.has_errors(), result.problems()
    cp1 = Charger.objects.get(charge_point_id="CP-1")
    assert cp1.max_power_kw == 11
    assert cp1.csms_url == "ws://other.example/ocpp"
    assert list(cp1.evses.values_list("connector_id", "register_wh")) == [
        (1, 5000),
        (2, 0),
        (3, 0),
    ]
    assert cp1.configuration.get(key="NumberOfConnectors").value == "3"
    assert cp1.configuration.get(key="HeartbeatInterval").value == "120"


def test_an_import_numbers_the_connectors_1_to_n_itself(depot):
    # The evses cell has no connector ids: a re-import can shrink or grow a charger but
    # never leave a gap in its connectors (OCPP 1.6's 1..N), and closes one an earlier
    # version of the API or admin let in.
    run_import(csv_bytes(GOOD[0]))
    cp1 = Charger.objects.get(charge_point_id="CP-1")
    cp1.evses.filter(connector_id=2).update(connector_id=3, register_wh=700)
    result = run_import(csv_bytes("CP-1,Depot,AC,22,2*Type2:11,ws://csms.example:9000/ocpp,"))
    assert not result.has_errors(), result.problems()
    assert list(cp1.evses.values_list("connector_id", "register_wh")) == [(1, 0), (2, 0)]
    assert cp1.configuration.get(key="NumberOfConnectors").value == "2"


def test_an_export_reimports_to_the_same_fleet(depot):
    vehicle = make_vehicle()
    charger_like_the_admin_makes(
        "AC-1", location=depot, evses=2, default_vehicle=vehicle, auto_connect=False
    )
    dc = charger_like_the_admin_makes(
        "DC-1", location=make_location("Hub"), evses=1, power_type="DC"
    )
    ConfigurationKey.objects.filter(charger=dc, key="MeterValueSampleInterval").update(value="15")
    # Custom values holding the cell's separator and backslashes come back as they were.
    for key, value in [("Tariff", "a;b=c"), ("Path", "C:\\temp\\"), ("Odd", "\\;x;")]:
        ConfigurationKey.objects.create(charger=dc, key=key, value=value)
    before = fleet_snapshot()
    exported = ChargerResource().export().csv.encode()
    Charger.objects.all().delete()
    result = run_import(exported)
    assert not result.has_errors(), result.problems()
    assert fleet_snapshot() == before


def stored_fleet() -> list:
    """Every stored column of the chargers, their EVSEs and configuration keys, `updated`
    included: what an import that writes nothing leaves as it was."""
    return [
        list(Charger.objects.order_by("pk").values()),
        list(Evse.objects.order_by("pk").values()),
        list(ConfigurationKey.objects.order_by("pk").values()),
    ]


@pytest.mark.parametrize("file_format", ["csv", "json", "xlsx"])
def test_a_reimported_admin_export_is_unchanged_and_writes_nothing(
    admin_client_logged_in, file_format
):
    """QA: importing the file the admin had just exported said "updated" of every row,
    rewrote every charger and told (and so rebooted) every running one."""
    depot = make_location("Depot")
    charger_like_the_admin_makes(
        "AC-1", location=depot, evses=2, default_vehicle=make_vehicle(), auto_connect=False
    )
    dc = charger_like_the_admin_makes("DC-1", location=depot, evses=1, power_type="DC")
    ConfigurationKey.objects.filter(charger=dc, key="MeterValueSampleInterval").update(value="15")
    ConfigurationKey.objects.create(charger=dc, key="Tariff", value="a;b=c")
    Charger.objects.filter(pk=dc.pk).update(authorization_key="5ec2e75ec2e75ec2e75ec2e75ec2e700")
    before = stored_fleet()
    exported = admin_export(admin_client_logged_in, "admin:chargers_charger_export", file_format)
    result = run_import(exported, file_format)
    assert not result.has_errors(), result.problems()
    assert (result.totals["new"], result.totals["update"], result.totals["skip"]) == (0, 0, 2)
    assert stored_fleet() == before


def exported_rows(*changes: tuple[int, str, str]) -> bytes:
    """The chargers' export as CSV, with (row index, column, new value) changes."""
    dataset = ChargerResource().export()
    rows = [dict(row) for row in dataset.dict]
    headers = list(dataset.headers)
    for index, column, value in changes:
        if column not in headers:
            headers.append(column)
        rows[index][column] = value
    lines = [",".join(headers)]
    lines += [",".join(str(row.get(h, "")) for h in headers) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("vendor", "Acme"),
        ("location", "Hub"),
        ("evses", "2*Type2:11"),
        ("evses", "3*Type2:22"),
        ("configuration", "MeterValueSampleInterval=30"),
        ("configuration", "Tariff=peak"),
        ("authorization_key", "00112233445566778899aabbccddeeff"),
    ],
)
def test_a_row_that_changes_one_thing_is_an_update_beside_unchanged_rows(depot, column, value):
    make_location("Hub")
    for cp_id in ("CP-1", "CP-2"):
        charger_like_the_admin_makes(cp_id, location=depot, evses=2)
    unchanged_row = Charger.objects.filter(charge_point_id="CP-2").values().get()
    result = run_import(exported_rows((0, column, value)))
    assert not result.has_errors(), result.problems()
    assert (result.totals["update"], result.totals["skip"]) == (1, 1)
    assert Charger.objects.filter(charge_point_id="CP-2").values().get() == unchanged_row
    cp1 = Charger.objects.get(charge_point_id="CP-1")
    key = value.partition("=")[0]
    written = {
        "vendor": lambda: cp1.vendor,
        "location": lambda: cp1.location.name,
        "evses": lambda: format_evses(specs_of(cp1.evses.all())),
        "configuration": lambda: f"{key}={cp1.configuration.get(key=key).value}",
        "authorization_key": lambda: cp1.authorization_key,
    }
    assert written[column]() == value


def test_the_authorization_key_is_imported_but_never_exported(depot):
    row = "CP-1,Depot,AC,22,Type2:22,ws://h/ocpp,1,5ec2e75ec2e75ec2e75ec2e75ec2e700"
    header = HEADER.rsplit(",", 1)[0] + ",security_profile,authorization_key"
    run_import(csv_bytes(row, header=header))
    assert Charger.objects.get().authorization_key == "5ec2e75ec2e75ec2e75ec2e75ec2e700"
    for dataset in (ChargerResource().export(),):
        assert "authorization_key" not in dataset.headers
        assert "5ec2e75ec2e75ec2e75ec2e75ec2e700" not in dataset.csv + dataset.json
    # An empty cell keeps the stored key, so an export re-imports.
    result = run_import(ChargerResource().export().csv.encode())
    assert not result.has_errors(), result.problems()
    assert Charger.objects.get().authorization_key == "5ec2e75ec2e75ec2e75ec2e75ec2e700"


@pytest.mark.parametrize("key", ["s3cr3t-key", "0" * 31, "0" * 42, "xy" * 16])
def test_an_imported_authorization_key_must_be_16_to_20_bytes_in_hex(depot, caplog, key):
    """As the charger checks one its CSMS sets (ChangeConfiguration), named by row and
    column and never quoted."""
    header = HEADER.rsplit(",", 1)[0] + ",security_profile,authorization_key"
    good = "CP-1,Depot,AC,22,Type2:22,ws://h/ocpp,1,00112233445566778899aabbccddeeff"
    result = run_import(
        csv_bytes(good, f"CP-2,Depot,AC,22,Type2:22,ws://h/ocpp,1,{key}", header=header)
    )
    problems = [(p.row, p.column, p.message) for p in result.problems()]
    assert problems == [
        (
            3,
            "authorization_key",
            "AuthorizationKey takes 16 to 20 bytes written as 32 to 40 hexadecimal digits.",
        )
    ]
    assert key not in " ".join(str(p) for p in result.problems())
    assert key not in caplog.text
    assert not Charger.objects.exists()
    # An empty cell is no key (profile 0) or, on re-import, the stored one, unchecked.
    assert not run_import(
        csv_bytes("CP-3,Depot,AC,22,Type2:22,ws://h/ocpp,0,", header=header)
    ).has_errors()
    assert Charger.objects.get().authorization_key == ""


def test_every_problem_of_the_evses_cell_is_reported_each_on_its_own(depot):
    """The cell's first problem was all: "Type9:5000" said only its connector type, and a
    DC connector of too much power on an AC charger only its power; a wrong number in
    another column does not hide them."""
    result = run_import(csv_bytes("CP-1,Depot,AC,lots,Type9:5000;2*CCS2:5000;Type2:22,,"))
    assert [(p.row, p.column, p.message) for p in result.problems()] == [
        (2, "max_power_kw", "'lots' is not a number."),
        (
            2,
            "evses",
            "Unknown connector type 'Type9'; use one of Type2, Type2Cable, Type1, CCS2, CCS1, "
            "CHAdeMO, Schuko.",
        ),
        (2, "evses", "'Type9:5000': Ensure this value is less than or equal to 1000."),
        (2, "evses", "'2*CCS2:5000': Ensure this value is less than or equal to 1000."),
        (2, "evses", f"Connector 2: {DC_ON_AC}"),
        (2, "evses", f"Connector 3: {DC_ON_AC}"),
    ]
    assert not Charger.objects.exists()


DC_ON_AC = (
    "CCS2 is a DC connector; an AC charger takes AC connectors only (Type2, Type2Cable, "
    "Type1, Schuko)."
)


BAD_ROWS = [
    ("CP-3,Atlantis,AC,22,Type2:22,,", "location", "No location named 'Atlantis'."),
    ("CP-1,Depot,AC,22,Type2:22,,", "charge_point_id", "'CP-1' is already on row 2"),
    ("CP-3,Depot,AC,22,Type2:22,http://csms/ocpp,", "csms_url", "must start with ws://"),
    ("CP-3,Depot,AC,22,Type2:22,ws://:99999/x,", "csms_url", "is not a valid URL"),
    ("CP-3,Depot,XC,22,Type2:22,,", "power_type", "'XC' is not one of AC, DC"),
    ("CP-3,Depot,AC,-5,Type2:22,,", "max_power_kw", "greater than or equal to 0.1"),
    ("CP-3,Depot,AC,lots,Type2:22,,", "max_power_kw", "'lots' is not a number"),
    ("CP-3,Depot,AC,22,Type2:-1,,", "evses", "greater than or equal to 0.1"),
    ("CP-3,Depot,AC,22,Type2:many,,", "evses", "is not a number of kW"),
    ("CP-3,Depot,AC,22,Type3:22,,", "evses", "Unknown connector type 'Type3'"),
    ("CP-3,Depot,AC,22,Type2:nan,,", "evses", "'nan' is not a number of kW"),
    ("CP-3,Depot,AC,22,Type2:inf,,", "evses", "'inf' is not a number of kW"),
    ("CP-3,Depot,AC,22,2*Type2:-inf,,", "evses", "'-inf' is not a number of kW"),
    ("CP-3,Depot,AC,nan,Type2:22,,", "max_power_kw", "'nan' is not a number"),
    ("CP-3,Depot,AC,-inf,Type2:22,,", "max_power_kw", "'-inf' is not a number"),
    ("CP-3,Depot,AC,22,100000000000*Type2:22,,", "evses", "at most 99 (MAX_EVSES)"),
    ("CP-3,Depot,AC,22,60*Type2:22;40*CCS2:50,,", "evses", "at most 99 (MAX_EVSES)"),
    ("CP-3,Depot,AC,22,²*Type2:22,,", "evses", "must be a whole number"),
    (
        "CP-3,Depot,AC,150,Type2:22;CCS2:150,,",
        "evses",
        "Connector 2: CCS2 is a DC connector; an AC charger takes AC connectors only "
        "(Type2, Type2Cable, Type1, Schuko).",
    ),
    (
        "CP-3,Depot,DC,150,Type2:22,,",
        "evses",
        "Connector 1: Type2 is an AC connector; a DC charger takes DC connectors only "
        "(CCS2, CCS1, CHAdeMO).",
    ),
    # The power type alone, for a charger whose stored EVSEs (CP-0's Type2) stay.
    ("CP-0,Depot,DC,22,,,", "power_type", "Connector 1: Type2 is an AC connector"),
    ("CP-3,Depot,AC,22,Type2:22,,HeartbeatInterval=²", "configuration", "takes a whole number"),
    ("CP-3,Depot,AC,22,Type2:22,,HeartbeatInterval=soon", "configuration", "whole number"),
    # A whole number far out of range is said to be out of range (it said "takes a whole
    # number"), as 100000 is; a charge point id too long is said once, not twice.
    (
        "CP-3,Depot,AC,22,Type2:22,,HeartbeatInterval=99999999999999999999",
        "configuration",
        "HeartbeatInterval must be at most 86400.",
    ),
    (
        f"CP-{'X' * 57},Depot,AC,22,Type2:22,,",
        "charge_point_id",
        "is 60 characters long; at most 48 are allowed.",
    ),
    ("CP-3,Depot,AC,22,Type2:22,,NumberOfConnectors=4", "configuration", "follows the number"),
    ("CP 3,Depot,AC,22,Type2:22,,", "charge_point_id", "not URL-safe"),
    ("CP-3,,AC,22,Type2:22,,", "location", "A location is required"),
    ("CP-3,Depot,AC,22,Type2:22,ws://cp:pw@h/x,", "csms_url", "must not hold a user name"),
    # Ids differing only in case: one charger to a CSMS matching them regardless of case.
    (
        "cp-1,Depot,AC,22,Type2:22,,",
        "charge_point_id",
        "'cp-1' differs from 'CP-1' of row 2 only in case; each may appear only once",
    ),
    (
        "cp-0,Depot,AC,22,Type2:22,,",
        "charge_point_id",
        "Charger CP-0 exists, whose id differs from cp-0 only in letter case",
    ),
    ("CP-3,depot,AC,22,Type2:22,,", "location", "No location named 'depot'; did you mean 'Depot'?"),
    ("CP-3,Depott,AC,22,Type2:22,,", "location", "named 'Depott'; did you mean 'Depot'?"),
]


@pytest.mark.parametrize(
    ("row", "column", "message"), BAD_ROWS, ids=[f"{c}-{n}" for n, (_, c, _) in enumerate(BAD_ROWS)]
)
def test_a_bad_row_is_reported_by_row_and_column_and_nothing_is_written(
    depot, row, column, message
):
    run_import(csv_bytes("CP-0,Depot,AC,22,Type2:22,,"))
    before = fleet_snapshot()
    result = run_import(csv_bytes(GOOD[0], row))
    assert result.has_errors()
    problems = result.problems()
    # Row 3: as a spreadsheet shows the file (its header is row 1).
    assert [(p.row, p.column) for p in problems] == [(3, column)], problems
    assert message in problems[0].message
    assert fleet_snapshot() == before


def test_a_file_without_a_location_column_updates_chargers_and_says_why_new_ones_fail(depot):
    """The column may be left out of a file that updates chargers (each keeps its site),
    not of one that adds them: each new row said only "A location is required", 3,000
    times for a file that lacked the column (QA), as if each cell were empty."""
    run_import(csv_bytes("CP-0,Depot,AC,22,Type2:22,,"))
    header = "charge_point_id,power_type,max_power_kw,evses"
    updated = run_import(csv_bytes("CP-0,AC,11,Type2:11", header=header))
    assert not updated.has_errors(), updated.problems()
    assert fleet_snapshot()[0][:4] == ("CP-0", "Depot", "AC", 11.0)
    before = fleet_snapshot()
    added = run_import(csv_bytes("CP-0,AC,22,Type2:22", "CP-9,AC,22,Type2:22", header=header))
    problems = added.problems()
    assert [(p.row, p.column) for p in problems] == [(3, "location")], problems
    assert "the file has no location column" in problems[0].message
    assert fleet_snapshot() == before


def test_a_huge_evse_count_is_refused_before_a_list_of_that_size_is_built():
    tracemalloc.start()
    try:
        with pytest.raises(LayoutError, match="at most 99"):
            parse_evses("10000000*Type2:22")  # ten million: 80 MB of list if built
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    with pytest.raises(LayoutError, match="at most 99"):
        parse_evses("100000000000*Type2:22")


def custom_keys_cell(count: int, start: int = 0) -> str:
    return "; ".join(f"Custom{n}=x" for n in range(start, start + count))


def test_custom_configuration_keys_are_capped_per_cell_and_nothing_is_written(depot):
    for cell in (custom_keys_cell(MAX_CUSTOM_KEYS + 1), custom_keys_cell(1_000_000)[:120_000]):
        result = run_import(csv_bytes(f'CP-1,Depot,AC,22,Type2:22,,"{cell}"'))
        [problem] = result.problems()
        assert (problem.row, problem.column) == (2, "configuration")
        assert "MAX_CUSTOM_KEYS)" in problem.message
        assert table_sizes() == (0, 0, 0)


def test_a_key_differing_from_an_ocpp_key_only_in_case_is_refused(depot):
    """ "authorizationkey" was stored as a key of its own and shown in plain text, while the
    AuthorizationKey it was meant to be is write-only."""
    result = run_import(csv_bytes('CP-1,Depot,AC,22,Type2:22,,"authorizationkey=0011"'))
    [problem] = result.problems()
    assert (problem.row, problem.column) == (2, "configuration")
    assert "differs from the OCPP key AuthorizationKey only in case" in problem.message
    assert "0011" not in problem.message
    assert table_sizes() == (0, 0, 0)


def test_a_key_differing_from_another_custom_key_only_in_case_is_refused(depot):
    """Keys are CiString50: a CSMS names VendorX and vendorx the same way and reaches only
    one; the other was stored all the same. Refused in one cell and against the stored
    keys, by row and column, and nothing of the file is written."""
    result = run_import(csv_bytes('CP-1,Depot,AC,22,Type2:22,,"VendorX=1; vendorx=2"'))
    [problem] = result.problems()
    assert (problem.row, problem.column) == (2, "configuration")
    assert "'vendorx' differs from the key VendorX this charger has only in case" in (
        problem.message
    )
    assert table_sizes() == (0, 0, 0)

    run_import(csv_bytes("CP-0,Depot,AC,22,Type2:22,,VendorX=1"))
    before = fleet_snapshot()
    result = run_import(csv_bytes(GOOD[0], "CP-0,Depot,AC,22,Type2:22,,vendorx=2"))
    [problem] = result.problems()
    assert (problem.row, problem.column) == (3, "configuration")
    assert "'vendorx' differs from the key VendorX this charger has only in case" in (
        problem.message
    )
    assert fleet_snapshot() == before
    # The key as it is stored is set like any other.
    assert not run_import(csv_bytes("CP-0,Depot,AC,22,Type2:22,,VendorX=3")).has_errors()
    assert Charger.objects.get(charge_point_id="CP-0").configuration.get(key="VendorX").value == (
        "3"
    )


def test_a_million_configuration_keys_in_a_json_cell_are_refused_by_size(depot):
    cell = custom_keys_cell(1_000_000)
    data = json.dumps([{"charge_point_id": "CP-1", "location": "Depot", "configuration": cell}])
    [problem] = run_import(data.encode(), "json").problems()
    assert (problem.row, problem.column) == (1, "configuration")
    assert "at most 131,072 (MAX_CELL_CHARS)" in problem.message
    assert table_sizes() == (0, 0, 0)


def test_an_update_may_not_take_a_charger_over_the_custom_key_cap(depot):
    run_import(csv_bytes(f'CP-1,Depot,AC,22,Type2:22,,"{custom_keys_cell(MAX_CUSTOM_KEYS)}"'))
    before = fleet_snapshot()
    more = custom_keys_cell(1, start=MAX_CUSTOM_KEYS)
    [problem] = run_import(csv_bytes(f"CP-1,Depot,AC,22,Type2:22,,{more}")).problems()
    assert (problem.row, problem.column) == (2, "configuration")
    assert f"{MAX_CUSTOM_KEYS + 1} custom configuration keys" in problem.message
    assert fleet_snapshot() == before
    # Setting keys it already has is an update like any other.
    again = custom_keys_cell(1, start=MAX_CUSTOM_KEYS - 1).replace("=x", "=y")
    assert not run_import(csv_bytes(f"CP-1,Depot,AC,22,Type2:22,,{again}")).has_errors()


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("vendor", {"name": "Acme"}, "an object"),
        ("configuration", {"HeartbeatInterval": 60}, "an object"),
        ("evses", ["Type2:22"], "a list"),
        ("charge_point_id", {"id": "CP-1"}, "an object"),
        ("default_vehicle_make", {"make": "VW"}, "an object"),
    ],
)
def test_an_object_or_list_in_a_json_cell_is_refused_by_row_and_column(depot, column, value, kind):
    rows = [
        {"charge_point_id": "CP-1", "location": "Depot"},
        {"charge_point_id": "CP-2", "location": "Depot", column: value},
    ]
    result = run_import(json.dumps(rows).encode(), "json")
    problems = [(p.row, p.column) for p in result.problems() if kind in p.message]
    assert problems == [(2, column)], result.problems()
    assert table_sizes() == (0, 0, 0)


def test_a_json_boolean_in_a_number_column_is_said_as_json_writes_it(depot):
    rows = [{"charge_point_id": "CP-1", "location": "Depot", "max_power_kw": True}]
    [problem] = run_import(json.dumps(rows).encode(), "json").problems()
    assert (problem.column, problem.message) == ("max_power_kw", "true is not a number.")


def test_a_cell_over_the_size_limit_is_refused_by_row_and_column(depot):
    rows = [{"charge_point_id": "CP-1", "location": "Depot", "vendor": "x" * 200_000}]
    [problem] = run_import(json.dumps(rows).encode(), "json").problems()
    assert (problem.row, problem.column) == (1, "vendor")
    assert "200,000 characters" in problem.message


@pytest.mark.parametrize("column", ["vendor", "model", "serial_number", "firmware_version"])
def test_a_control_character_in_a_boot_notification_field_is_refused(depot, column):
    """QA: a vendor holding an ESC was stored (and sent in every BootNotification), and
    every XLSX export of the fleet was refused for it from then on."""
    result = run_import(csv_bytes("CP-1,Depot,X\x1bY", header=f"charge_point_id,location,{column}"))
    assert [(p.row, p.column) for p in result.problems()] == [(2, column)]
    assert "one line of text (no line breaks or control characters)" in str(result.problems()[0])
    assert table_sizes() == (0, 0, 0)


@pytest.mark.parametrize(
    ("column", "cell"),
    [
        ("configuration", "MeterValueSampleInterval=60;VendorNote=a\tb"),
        ("configuration", "Vendor\x1bKey=1"),
        ("ca_bundle_path", "/etc/ca\n.pem"),
        ("client_key_path", "/etc/key\x7f.pem"),
    ],
)
def test_a_control_character_in_a_configuration_value_or_a_path_is_refused(depot, column, cell):
    """QA12: a configuration value or a TLS path took a tab, an ESC or a line break, shown
    so on pages, in logs and exports (which a workbook cannot hold)."""
    rows = [{"charge_point_id": "CP-1", "location": "Depot", column: cell}]
    result = run_import(json.dumps(rows).encode(), "json")
    assert [(p.row, p.column) for p in result.problems()] == [(1, column)]
    assert "one line of text (no line breaks or control characters)" in str(result.problems()[0])
    assert table_sizes() == (0, 0, 0)


def test_a_control_character_in_a_stored_configuration_key_is_refused_by_its_form():
    charger = Charger(charge_point_id="CP-CTRL")
    for field, row in (
        ("value", ConfigurationKey(charger=charger, key="VendorNote", value="line\nbreak")),
        ("key", ConfigurationKey(charger=charger, key="Vendor\x1bNote", value="1")),
    ):
        with pytest.raises(ValidationError) as refused:
            row.clean()
        assert field in refused.value.message_dict and "One line of text" in str(refused.value)


def test_the_report_lists_every_bad_row_not_only_the_first(depot):
    rows = [GOOD[0], BAD_ROWS[0][0], GOOD[1], BAD_ROWS[4][0].replace("CP-3", "CP-4")]
    rows.append("CP-5,Depot,AC,x,Type9:1,ftp://x,")
    result = run_import(csv_bytes(*rows))
    assert sorted({(p.row, p.column) for p in result.problems()}) == [
        (3, "location"),
        (5, "power_type"),
        (6, "csms_url"),
        (6, "evses"),
        (6, "max_power_kw"),
    ]
    assert result.failed_rows() == 3
    assert table_sizes() == (0, 0, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (csv_bytes("CP-1,Düsseldorf,AC,22,Type2:22,,").decode().encode("latin-1"), "not UTF-8"),
        (b"charge_point_id,location\nCP-1,Depot,AC\n", "Line 2 has 3 cells"),
        ("charge_point_id\nCP-1\n".encode("utf-16"), "not UTF-8 \\(it is UTF-16\\)"),
        (b"charge_point_id,vendor\nCP-1," + b"x" * 200_000 + b"\n", "longer than 131,072"),
    ],
    ids=["latin-1", "ragged", "utf-16", "huge-field"],
)
def test_a_file_in_the_wrong_encoding_or_shape_is_named_as_such(depot, data, message):
    with pytest.raises(FileProblem, match=message):
        read_dataset(data, "csv")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'[{"charge_point_id": [[["CP-1"]]]}]', "Row 1, column charge_point_id: the value is"),
        (b'[{"charge_point_id": ' + b"9" * 5000 + b"}]", "not valid JSON"),
        (b'{"charge_point_id": "CP-1"}', "must be a list of objects"),
        (b"[{}, {}]", "The rows name no columns"),
        (
            b'[{"charge_point_id": "J-1"}, {"charge_point_id": "J-11", "charge_point_id": "J-12"}]',
            "Row 2: 'charge_point_id' is given twice.",
        ),
    ],
    ids=["deep", "deep-cell", "huge-integer", "not-a-list", "no-keys", "key-twice"],
)
def test_a_json_file_of_the_wrong_shape_is_named_as_such(data, message):
    with pytest.raises(FileProblem, match=re.escape(message)):
        read_dataset(data, "json")


def a_workbook() -> bytes:
    from fleet_io.file_formats import XLSX

    return XLSX().export_data(read_dataset(csv_bytes(*GOOD), "csv"))


@pytest.mark.parametrize(
    ("data", "file_format", "message"),
    [
        (
            bytes(range(256)),
            "json",
            "The file is not UTF-8 text: byte 0x80 on line 2 cannot be read. Is it a JSON "
            "file? Save it as UTF-8, as JSON must be.",
        ),
        (
            '[{"charge_point_id": "CP-1"}]'.encode("utf-16"),
            "json",
            "The file is not UTF-8 (it is UTF-16): save it as UTF-8, as JSON must be.",
        ),
        (
            b"",
            "json",
            'The file is empty: a JSON import is a list of objects, one per row: [{"name": '
            "...}, ...].",
        ),
        (
            a_workbook,
            "json",
            "The file is a zip archive, such as an Excel workbook, not JSON text: import a "
            "workbook as XLSX (a file name ending in .xlsx, or the format xlsx).",
        ),
        (
            a_workbook,
            "csv",
            "The file is a zip archive, such as an Excel workbook, not CSV text: import a "
            "workbook as XLSX (a file name ending in .xlsx, or the format xlsx).",
        ),
        (
            b'[{"charge_point_id": "CP-1", "location": "Depot"}]',
            "csv",
            "The file is JSON, not CSV: import it as JSON (a file name ending in .json, or the "
            "format json).",
        ),
        (
            csv_bytes(*GOOD),
            "xlsx",
            "The file is not an Excel workbook (.xlsx), which is a zip archive: is it a CSV or "
            "JSON file? Import it in that format (a file name ending in .csv or .json).",
        ),
    ],
    ids=["binary", "utf-16", "empty", "workbook", "workbook-as-csv", "json-as-csv", "csv-as-xlsx"],
)
def test_a_file_of_another_kind_is_told_so_for_the_format_it_came_as(data, file_format, message):
    """QA: a binary file named .json was told to save itself as 'CSV UTF-8' from Excel."""
    with pytest.raises(FileProblem) as raised:
        read_dataset(data() if callable(data) else data, file_format)
    assert str(raised.value) == message


def test_a_broken_xlsx_file_is_named_as_such(depot):
    pytest.importorskip("openpyxl")
    from fleet_io.file_formats import XLSX

    charger_like_the_admin_makes("AC-1", location=depot)
    workbook = XLSX().export_data(ChargerResource().export())
    for data in (workbook[: len(workbook) // 2], b"PK\x03\x04" + b"\0" * 100, b"not a zip"):
        with pytest.raises(FileProblem, match="not an Excel workbook"):
            read_dataset(data, "xlsx")


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(monkeypatch):
    from fleet_io import file_formats

    monkeypatch.setattr(file_formats, "MAX_FILE_BYTES", 1000)
    for file_format in ("csv", "json", "xlsx"):
        with pytest.raises(FileProblem, match="at most 1,000 are read"):
            read_dataset(b" " * 1001, file_format)


def test_a_semicolon_separated_file_is_reported_and_nothing_is_written(depot):
    data = csv_bytes("CP-1;Depot;AC;22;Type2:22;;", header=HEADER.replace(",", ";"))
    result = run_import(data)
    assert [str(p) for p in result.problems()] == [
        "File: The header line is separated by semicolons, not commas: save the file as "
        "'CSV (comma delimited)'."
    ]
    assert table_sizes() == (0, 0, 0)


def test_a_semicolon_separated_file_with_decimal_commas_gets_the_same_advice(depot):
    """QA: "22,5" split the line at its comma, and the file was told to quote its commas."""
    data = csv_bytes("CP-1;Depot;AC;22,5;Type2:22,5;;", header=HEADER.replace(",", ";"))
    with pytest.raises(FileProblem, match="The header line is separated by semicolons"):
        read_dataset(data, "csv")


@pytest.mark.parametrize(
    "data",
    [
        "\ufeffcharge_point_id,location,,max_power_kw,,\r\nCP-1,Depot,,22,,\r\n,,,,,\r\n".encode(),
        lambda: workbook(
            ["charge_point_id", "location", None, "max_power_kw", "  "], ["CP-1", "Depot", None, 22]
        ),
    ],
    ids=["csv-trailing-commas", "xlsx-blank-header-cells"],
)
def test_a_column_without_a_name_or_a_value_is_left_out(depot, data):
    """QA: Excel's empty cells right of the data (`CP-1,Depot,22,,`), or a space typed in a
    header cell, were refused as "Unknown column(s) '', ''" and "Column(s)  appear more
    than once"."""
    file_format = "xlsx" if callable(data) else "csv"
    result = run_import(data() if callable(data) else data, file_format)
    assert not result.has_errors(), [str(p) for p in result.problems()]
    assert Charger.objects.get().max_power_kw == 22


def test_a_column_without_a_name_but_with_a_value_is_named_by_its_letter(depot):
    data = csv_bytes("CP-1,Depot,", "CP-2,Depot,a note", header="charge_point_id,location,")
    with pytest.raises(FileProblem) as raised:
        read_dataset(data, "csv")
    assert str(raised.value) == (
        "Column C has no name in the header line, but row 3 has a value in it ('a note'): "
        "type the column's name above it, or delete the column."
    )


def workbook(*rows: list) -> bytes:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("file_format", "make", "message"),
    [
        (
            "json",
            lambda: json.dumps([{"charge_point_id;csms_url": "CP-1;ws://csms.example/ocpp"}]),
            "File: The rows have one key, 'charge_point_id;csms_url', which joins column names "
            "with semicolons: in a JSON import each column is a key of its own, one object per "
            'row ([{"charge_point_id": ..., "csms_url": ...}, ...]). If the file was converted '
            "from a CSV file separated by semicolons, convert it again with that separator, or "
            "import the CSV file itself once saved as 'CSV (comma delimited)'.",
        ),
        (
            "json",
            lambda: json.dumps([{"charge_point_id\tlocation\tevses": "CP-1\tDepot\tType2:22"}]),
            "File: The rows have one key, 'charge_point_id\\tlocation\\tevses', which joins "
            "column names with tabs: in a JSON import each column is a key of its own, one "
            'object per row ([{"charge_point_id": ..., "location": ..., "evses": ...}, ...]). '
            "If the file was converted from a CSV file separated by tabs, convert it again with "
            "that separator, or import the CSV file itself once saved as 'CSV (comma delimited)'.",
        ),
        (
            "xlsx",
            lambda: workbook(["charge_point_id;csms_url"], ["CP-1;ws://csms.example/ocpp"]),
            "File: The sheet's first row has one cell, 'charge_point_id;csms_url', which joins "
            "column names with semicolons: in a workbook each column name has a cell of its "
            "own, and each row its values in the cells below them. Split the column at the "
            "semicolons (in Excel or LibreOffice: Data > Text to Columns) and save the workbook "
            "again.",
        ),
    ],
    ids=["json-semicolons", "json-tabs", "xlsx-semicolons"],
)
def test_column_names_joined_into_one_get_advice_for_the_files_format(
    depot, file_format, make, message
):
    """A semicolon CSV converted to JSON carelessly, or opened in a spreadsheet unsplit and
    saved as a workbook, was told to save itself as 'CSV (comma delimited)'."""
    data = make()
    result = run_import(data.encode() if isinstance(data, str) else data, file_format)
    assert [str(p) for p in result.problems()] == [message]
    assert table_sizes() == (0, 0, 0)


def test_a_security_profile_written_as_a_float_is_read_as_its_number(depot):
    """QA: "0.0" (a CSV written from a float column) was not one of 0, 1, 2, 3."""
    result = run_import(
        csv_bytes("CP-1,Depot,0.0", header="charge_point_id,location,security_profile")
    )
    assert not result.has_errors(), [str(p) for p in result.problems()]
    assert Charger.objects.get().security_profile == 0


@pytest.mark.parametrize("file_format", ["csv", "json"])
def test_a_column_name_typed_in_other_letter_case_or_with_spaces_is_read(depot, file_format):
    """QA: "Charge Point ID" and "Location", as a spreadsheet's headers are typed by hand,
    were unknown columns, and the key column was then missing."""
    row = {"Charge Point ID": "CP-1", " LOCATION ": "Depot", "Max_Power_kW": "11"}
    if file_format == "csv":
        data = csv_bytes(",".join(row.values()), header=",".join(row))
    else:
        data = json.dumps([row]).encode()
    result = run_import(data, file_format)
    assert not result.has_errors(), [str(p) for p in result.problems()]
    assert Charger.objects.values_list("charge_point_id", "max_power_kw").get() == ("CP-1", 11)


def test_an_unknown_column_is_reported_rather_than_ignored(depot):
    result = run_import(csv_bytes("CP-1,Depot,22", header="charge_point_id,location,max_power"))
    assert "Unknown column(s) 'max_power'" in str(result.problems()[0])
    assert table_sizes() == (0, 0, 0)


def test_json_rows_import_like_csv_rows(depot):
    data = (
        b'[{"charge_point_id": "CP-1", "location": "Depot", "evses": "2*Type2:11",'
        b' "auto_connect": false, "configuration": "HeartbeatInterval=30"}]'
    )
    result = run_import(data, "json")
    assert not result.has_errors(), result.problems()
    cp = Charger.objects.get()
    assert (cp.auto_connect, cp.evses.count()) == (False, 2)


def test_xlsx_exports_reimport(depot):
    openpyxl = pytest.importorskip("openpyxl")
    assert openpyxl
    from fleet_io.file_formats import XLSX

    charger_like_the_admin_makes("AC-1", location=depot, evses=2)
    before = fleet_snapshot()
    data = XLSX().export_data(ChargerResource().export())
    Charger.objects.all().delete()
    result = run_import(data, "xlsx")
    assert not result.has_errors(), result.problems()
    assert fleet_snapshot() == before


def test_the_import_command_lists_every_bad_row_and_writes_nothing(depot, tmp_path, capsys):
    path = tmp_path / "chargers.csv"
    path.write_bytes(csv_bytes(GOOD[0], BAD_ROWS[0][0], BAD_ROWS[4][0].replace("CP-3", "CP-4")))
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "import", "chargers.resources.ChargerResource", str(path), "--noinput", stderr=stderr
        )
    assert exit_info.value.code == 1
    assert "Row 3, column location: No location named 'Atlantis'" in stderr.getvalue()
    assert "Row 4, column power_type" in stderr.getvalue()
    assert table_sizes() == (0, 0, 0)


def test_the_import_and_export_commands_round_trip(depot, tmp_path):
    charger_like_the_admin_makes("AC-1", location=depot, evses=2)
    before = fleet_snapshot()
    path = tmp_path / "chargers.csv"
    with path.open("w") as out:
        call_command("export", "CSV", "chargers.resources.ChargerResource", stdout=out)
    Charger.objects.all().delete()
    call_command(
        "import",
        "chargers.resources.ChargerResource",
        str(path),
        "--noinput",
        "--format",
        "fleet_io.file_formats.CSV",
        stderr=io.StringIO(),
    )
    assert fleet_snapshot() == before


@pytest.mark.slow
def test_a_file_with_ten_thousand_chargers_imports(depot):
    rows = [f"CP-{n:05d},Depot,AC,22,2*Type2:11,ws://h/ocpp," for n in range(10_000)]
    result = run_import(csv_bytes(*rows), fast=True)
    assert not result.has_errors(), result.problems()[:3]
    assert result.totals["new"] == 10_000
    assert table_sizes() == (10_000, 20_000, 10_000 * len(config_keys.defaults(2)))
    assert not ConfigurationKey.objects.filter(key="NumberOfConnectors").exclude(value="2").exists()


def test_an_xlsx_sheet_wider_or_longer_than_the_limits_is_refused(monkeypatch):
    openpyxl = pytest.importorskip("openpyxl")
    from fleet_io import file_formats

    def workbook(row: int, column: int) -> bytes:
        book = openpyxl.Workbook()
        book.active["A1"] = "charge_point_id"
        book.active.cell(row=row, column=column, value="x")
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

    with pytest.raises(FileProblem, match="Row 1 of the sheet has more than 64 columns"):
        read_dataset(workbook(1, 65), "xlsx")
    # The 64th column is read: its value, below no name, is refused as such.
    with pytest.raises(FileProblem, match="Column BL has no name in the first row"):
        read_dataset(workbook(2, 64), "xlsx")
    monkeypatch.setattr(file_formats, "MAX_XLSX_ROWS", 10)
    with pytest.raises(FileProblem, match=r"11 rows; at most 10 \(MAX_XLSX_ROWS\)"):
        read_dataset(workbook(11, 1), "xlsx")
    assert len(read_dataset(workbook(10, 1), "xlsx")) == 1  # blank rows are skipped
    # Without a <dimension> to tell the size up front, the rows are counted as they are read.
    with pytest.raises(FileProblem, match=r"more than 10 rows \(MAX_XLSX_ROWS\)"):
        read_dataset(without_dimension(workbook(11, 1)), "xlsx")


def test_a_csv_file_longer_than_the_row_limit_is_refused_as_it_is_read(monkeypatch):
    """QA: a CSV file had no row limit, and its records were all listed before any was
    looked at: 4 MB of two-byte lines took 750 MB, the 50 MiB allowed some 9 GiB."""
    from fleet_io import file_formats

    monkeypatch.setattr(file_formats, "MAX_CSV_ROWS", 10, raising=False)
    assert len(read_dataset(b"charge_point_id\n" + b"x\n" * 9 + b"\n", "csv")) == 9
    with pytest.raises(FileProblem, match=r"more than 10 rows after its header line"):
        read_dataset(b"charge_point_id\n" + b"x\n" * 9 + b"\n\n", "csv")


def test_excels_separator_line_before_the_header_is_skipped(depot):
    """QA: a file written for Excel starts "sep=,"; its header line was taken for a row,
    and the file refused for a column named 'sep=' and one with no name."""
    data = "\ufeffsep=,\r\n".encode() + csv_bytes(GOOD[0])
    result = run_import(data)
    assert not result.has_errors(), [str(p) for p in result.problems()]
    assert Charger.objects.get().charge_point_id == "CP-1"
    with pytest.raises(FileProblem, match="^Line 4 has 1 cells"):
        read_dataset(b"sep=,\ncharge_point_id,location\nCP-1,Depot\nCP-2\n", "csv")


def test_a_json_file_longer_than_the_row_limit_is_refused(monkeypatch):
    """QA: a JSON file had no row limit where a CSV file or a sheet has one: 24 MB of
    {"charge_point_id": "x"} went on to import a million rows in the web process."""
    from fleet_io import file_formats

    monkeypatch.setattr(file_formats, "MAX_JSON_ROWS", 10, raising=False)
    rows = [{"charge_point_id": f"CP-{n}"} for n in range(11)]
    assert len(read_dataset(json.dumps(rows[:10]).encode(), "json")) == 10
    with pytest.raises(FileProblem, match=r"The file has 11 rows; at most 10 \(MAX_JSON_ROWS\)"):
        read_dataset(json.dumps(rows).encode(), "json")


def test_a_ragged_line_after_a_quoted_line_break_is_named_by_its_line():
    data = b'charge_point_id,vendor\r\nCP-1,"Acme\r\nGmbH"\r\nCP-2,Acme,x\r\n'
    with pytest.raises(FileProblem, match="^Line 4 has 3 cells"):
        read_dataset(data, "csv")


def test_an_xlsx_id_shown_with_leading_zeros_is_read_as_shown(depot):
    """QA: ids typed as numbers in a column formatted 0000 show as 0007, but were read
    as 7: the import made a new charger "7" beside the stored "0007"."""
    openpyxl = pytest.importorskip("openpyxl")
    charger_like_the_admin_makes("0007", location=depot)
    book = openpyxl.Workbook()
    book.active.append(["charge_point_id", "location", "max_power_kw"])
    book.active.append([7, "Depot", 11])
    book.active.append([8, "Depot", 11])
    book.active["A2"].number_format = "0000"
    out = io.BytesIO()
    book.save(out)
    result = run_import(out.getvalue(), "xlsx")
    assert not result.has_errors(), [str(p) for p in result.problems()]
    assert dict(Charger.objects.values_list("charge_point_id", "max_power_kw")) == {
        "0007": 11,
        "8": 11,
    }


def without_dimension(workbook: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<dimension [^>]*/>", b"", data)
            target.writestr(item, data)
    return out.getvalue()


def test_the_firmware_and_diagnostics_options_import_and_export(depot):
    header = f"{HEADER},firmware_failure,diagnostics_upload_method"
    rows = [
        "CP-1,Depot,AC,22,Type2:22,,,InstallationFailed,post",
        "CP-2,Depot,AC,22,Type2:22,,SupportedFeatureProfiles=Core;ReserveConnectorZeroSupported=true,,",
    ]
    result = run_import(csv_bytes(*rows, header=header))
    assert not result.has_errors(), result.problems()
    first, second = Charger.objects.order_by("charge_point_id")
    assert (first.firmware_failure, first.diagnostics_upload_method) == (
        "InstallationFailed",
        "POST",
    )
    assert (second.firmware_failure, second.diagnostics_upload_method) == ("", "PUT")
    keys = dict(second.configuration.values_list("key", "value"))
    assert keys["SupportedFeatureProfiles"] == "Core"
    assert keys["ReserveConnectorZeroSupported"] == "true"
    exported = ChargerResource().export().csv
    assert "InstallationFailed,POST" in exported
    assert "SupportedFeatureProfiles=Core" in exported


@pytest.mark.parametrize(
    ("column", "cell", "message"),
    [
        ("firmware_failure", "Sometimes", "'Sometimes' is not one of"),
        ("diagnostics_upload_method", "PATCH", "'PATCH' is not one of"),
        ("configuration", '"SupportedFeatureProfiles=Core,Teleport"', "unknown feature profile"),
        ("configuration", "SupportedFeatureProfiles=Reservation", "must include Core"),
    ],
)
def test_a_bad_option_is_reported_by_row_and_column(depot, column, cell, message):
    header = f"charge_point_id,location,{column}"
    result = run_import(csv_bytes(f"CP-1,Depot,{cell}", header=header))
    assert result.has_errors()
    assert any(message in str(problem) for problem in result.problems()), result.problems()
    assert not Charger.objects.exists()


def test_the_power_sharing_policy_imports_and_exports(depot):
    header = f"{HEADER},power_sharing"
    rows = ["CP-1,Depot,DC,150,2*CCS2:150,,,first", "CP-2,Depot,AC,22,Type2:22,,,"]
    result = run_import(csv_bytes(*rows, header=header))
    assert not result.has_errors(), result.problems()
    first, second = Charger.objects.order_by("charge_point_id")
    assert (first.power_sharing, second.power_sharing) == ("first", "equal")
    assert ",first," in ChargerResource().export().csv
    bad = run_import(csv_bytes("CP-3,Depot,fair", header="charge_point_id,location,power_sharing"))
    assert any("'fair' is not one of" in str(p) for p in bad.problems()), bad.problems()


def formula_workbook(*, computed: bool) -> bytes:
    """A charger row whose max_power_kw and vendor are formulae, as a script writes them
    (no value stored), or with the values a spreadsheet stores when it saves the file."""
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["charge_point_id", "location", "max_power_kw", "vendor"])
    book.active.append(["CP-1", "Depot", "=50*2", '=CONCAT("Ac","me")'])
    out = io.BytesIO()
    book.save(out)
    if not computed:
        return out.getvalue()
    stored = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(out.getvalue())) as source,
        zipfile.ZipFile(stored, "w") as target,
    ):
        for item in source.infolist():
            part = source.read(item)
            if item.filename.startswith("xl/worksheets/"):
                # As a spreadsheet saves them: <v>100</v>, and text typed t="str".
                part = re.sub(rb'(<c r="C2"><f>[^<]*</f>)<v ?/>', rb"\1<v>100</v>", part)
                part = re.sub(
                    rb'<c r="D2">(<f>[^<]*</f>)<v ?/>', rb'<c r="D2" t="str">\1<v>Acme</v>', part
                )
            target.writestr(item, part)
    return stored.getvalue()


def test_an_xlsx_formula_without_a_computed_value_is_refused_by_its_cell(depot):
    # Read as an empty cell, it silently became the default (22 kW, vendor ChargeSim).
    with pytest.raises(FileProblem) as problem:
        read_dataset(formula_workbook(computed=False), "xlsx")
    assert "C2 (column max_power_kw) holds =50*2" in str(problem.value)
    assert "D2 (column vendor) holds =CONCAT(" in str(problem.value)
    assert table_sizes() == (0, 0, 0)


def test_an_xlsx_formula_imports_the_value_the_spreadsheet_computed(depot):
    result = run_import(formula_workbook(computed=True), "xlsx")
    assert not result.has_errors(), result.problems()
    assert Charger.objects.values_list("max_power_kw", "vendor").get() == (100.0, "Acme")


def test_an_update_row_with_fewer_evses_keeps_a_connector_in_session(depot):
    """The EVSE endpoint and the admin refuse to remove a connector with a session in
    progress; an import row that lists fewer EVSEs removed it all the same."""
    from tests.cast import make_open_transaction

    charger = make_charger("CP-1", location=depot, evses=2)
    make_open_transaction(charger, connector_id=2, transaction_id=99)
    result = run_import(csv_bytes("CP-1,Depot,AC,22,Type2:22,,"))
    assert result.has_errors()
    [problem] = result.problems()
    assert (problem.row, problem.column) == (2, "evses")
    assert "Connector 2 of CP-1 has transaction 99 in progress" in problem.message
    assert list(charger.evses.values_list("connector_id", flat=True)) == [1, 2]


def dated_workbook(*rows: tuple[object, str | None]) -> bytes:
    """A sheet of chargers whose serial_number cells are given as (value, number format)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["charge_point_id", "location", "evses", "serial_number"])
    for n, (value, number_format) in enumerate(rows, start=1):
        sheet.append([f"CP-{n}", "Depot", "Type2:22", value])
        if number_format is not None:
            sheet.cell(row=n + 1, column=4).number_format = number_format
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_xlsx_date_where_text_is_expected_is_refused_by_row_and_column(depot):
    """QA: Excel turned a serial number typed as 2026-01-01 (or a firmware version as 12:30)
    into a date cell, stored as the text "2026-01-01 00:00:00". What the sheet showed
    depends on the cell's format and the machine's locale (1/1/2026): the cell is refused,
    saying how to keep it text in Excel."""
    import datetime as dt

    data = dated_workbook(
        (dt.datetime(2026, 1, 1), "mm-dd-yy"),  # Excel's short date, shown as the locale says
        (dt.time(12, 30), "h:mm"),
        (dt.datetime(2026, 1, 1, 7, 5), "m/d/yy h:mm"),
        ("SN-1", None),
    )
    result = run_import(data, "xlsx")
    assert [str(p) for p in result.problems()] == [
        f"Row {row}, column serial_number: The cell is {kind} ({shown}) in the workbook, where "
        "text is expected: Excel turns a value such as 2026-01-01 or 12:30 typed into a "
        "General cell into a date. Format the column as Text (Home > Number Format > Text) and "
        f"type the value again, or type it after an apostrophe ('{shown})."
        for row, kind, shown in [
            (2, "a date", "2026-01-01"),
            (3, "a time", "12:30"),
            (4, "a date and time", "2026-01-01 07:05"),
        ]
    ]
    assert table_sizes() == (0, 0, 0)


def test_an_xlsx_date_in_a_format_every_spreadsheet_shows_alike_is_read_as_that_text(depot):
    """An ISO format (as LibreOffice keeps a date typed so) shows the same text anywhere."""
    import datetime as dt

    data = dated_workbook(
        (dt.datetime(2026, 1, 1), "YYYY-MM-DD"),
        (dt.time(9, 5), "hh:mm"),
        (dt.datetime(2026, 1, 1, 7, 5, 9), "yyyy-mm-dd hh:mm:ss"),
    )
    result = run_import(data, "xlsx")
    assert not result.has_errors(), result.problems()
    assert list(Charger.objects.order_by("charge_point_id").values_list("serial_number")) == [
        ("2026-01-01",),
        ("09:05",),
        ("2026-01-01 07:05:09",),
    ]


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_a_problem_names_the_row_a_spreadsheet_shows(depot, file_format):
    """QA: rows were counted from 1 after the header with blank rows left out: a problem
    on the sheet's row 6 was "Row 2", and the reader looked at the wrong row."""
    header: list[str | None] = ["charge_point_id", "location", "max_power_kw", "vendor"]
    rows: list[list[str | None]] = [
        ["QA-1", "Depot", "22", "Acme"],
        [None, None, None, None],  # a blank row, as a spreadsheet export leaves them
        [None, None, None, None],
        # One row, though two lines of a CSV file (and refused: a vendor is one line).
        ["QA-2", "Depot", "22", "two\nlines"],
        ["QA-3", "Depot", "abc", "Acme"],
    ]
    if file_format == "csv":
        lines = [",".join("" if v is None else f'"{v}"' for v in row) for row in [header, *rows]]
        data = "\n".join(lines).encode()
    else:
        data = workbook(header, *rows)
    problems = run_import(data, file_format).problems()
    assert [(p.row, p.column) for p in problems] == [(5, "vendor"), (6, "max_power_kw")]
    assert table_sizes() == (0, 0, 0)


def test_a_long_number_in_a_text_column_of_a_workbook_is_refused_not_rounded(depot):
    """QA: a serial number typed as 1234567890123456789 into a General cell was stored as
    1234567890123456768: the workbook holds a float, which keeps 15 or so digits."""
    header = ["charge_point_id", "location", "serial_number"]
    data = workbook(header, ["CP-1", "Depot", 1234567890123456789.0], ["CP-2", "Depot", 123456])
    problems = run_import(data, "xlsx").problems()
    assert [(p.row, p.column) for p in problems] == [(2, "serial_number")], problems
    assert "longer than a spreadsheet keeps exactly" in problems[0].message
    assert table_sizes() == (0, 0, 0)
