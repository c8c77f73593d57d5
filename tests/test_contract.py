"""The web side and the engine agree on what crosses between them."""

from simulator import contract
from simulator.core.evse import ERROR_CODES, ConnectorStatus


def test_the_dashboard_knows_every_connector_status_the_engine_has():
    assert set(contract.CONNECTOR_STATUSES) == {status.value for status in ConnectorStatus}


def test_every_fault_the_dashboard_offers_is_an_ocpp_error_code():
    assert set(contract.FAULT_CODES) == ERROR_CODES - {"NoError"}
    assert len(ERROR_CODES) == 16  # the ChargePointErrorCode enumeration of OCPP 1.6


def test_an_action_may_wait_for_any_connector_status_or_the_boot_being_accepted():
    assert set(contract.WAIT_CONDITIONS) == {*contract.CONNECTOR_STATUSES, "Accepted"}
    assert contract.CONNECTOR_COMMANDS < contract.DRIVE_COMMANDS


def test_a_bulk_command_carries_its_filters_and_a_shard_summary_its_sites_in_order():
    bulk = contract.bulk_command(
        "plug_in",
        {"soc": 20},
        {"location_id": 3, "status": "Available"},
        "reply",
        "r1",
        wait_for={"condition": "Preparing", "timeout": 5},
    )
    assert bulk["type"] == contract.BULK_COMMAND
    assert bulk["wait_for"] == {"condition": "Preparing", "timeout": 5}
    site = contract.SiteCounts(
        power_w=1.0,
        chargers=1,
        charging=1,
        statuses={},
        links={},
        held_back=0,
        grid_limit_w=None,
        load_management=False,
    )
    counts = contract.FleetCounts(chargers=2, statuses={}, links={}, power_w=1.0)
    summary = contract.shard_summary("r2", 0, 1, counts, {9: site, 4: site}, 0.0)
    assert [s["location_id"] for s in summary["locations"]] == [4, 9]
