"""The web side and the engine agree on what crosses between them."""

from simulator import contract
from simulator.core.evse import ERROR_CODES, ConnectorStatus


def test_the_dashboard_knows_every_connector_status_the_engine_has():
    assert set(contract.CONNECTOR_STATUSES) == {status.value for status in ConnectorStatus}


def test_every_fault_the_dashboard_offers_is_an_ocpp_error_code():
    assert set(contract.FAULT_CODES) == ERROR_CODES - {"NoError"}
    assert len(ERROR_CODES) == 16  # the ChargePointErrorCode enumeration of OCPP 1.6
