"""What a driver command (dashboard, API, MCP, scenario) refuses before the charger acts."""

from __future__ import annotations

import pytest

from simulator.runtime.commands import CommandError, InvalidArgument
from tests.engine import runtime_charger
from tests.test_answer_overrides import PK, command_server


@pytest.mark.parametrize(
    ("id_tag", "message"),
    [
        ("", "1 to 20 characters"),
        ("X" * 21, "1 to 20 characters"),
        ("T\x001", "printable ASCII"),
        ("T\n1", "printable ASCII"),
        ("T\x7f", "printable ASCII"),
        ("Zoë-1", "printable ASCII"),
    ],
    ids=["empty", "too long", "NUL", "newline", "DEL", "beyond ASCII"],
)
async def test_an_id_tag_that_no_ocpp_message_can_carry_is_refused(id_tag, message):
    charger = runtime_charger("ARG-TAG", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(
            PK, "present_id_tag", {"connector_id": 1, "id_tag": id_tag}
        )
    assert message in str(refused.value)
    assert not charger.pending_authorizations and not charger.transactions


async def test_a_printable_ascii_id_tag_is_presented():
    """OCPP 1.6's idTag is a CiString20Type: "only printable ASCII allowed"."""
    charger = runtime_charger("ARG-TAG2", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    # Offline and unknown: decided locally (Invalid), but it got past the arguments.
    with pytest.raises(CommandError) as outcome:
        await command_server(charger).execute(
            PK, "present_id_tag", {"connector_id": 1, "id_tag": "Zoe 1~"}
        )
    assert not isinstance(outcome.value, InvalidArgument)
    assert "idTag Zoe 1~ was not accepted" in str(outcome.value)


async def test_an_id_tag_that_is_a_number_is_refused_as_not_text():
    charger = runtime_charger("ARG-NUM", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(
            PK, "present_id_tag", {"connector_id": 1, "id_tag": 12}
        )
    assert refused.value.field == "id_tag"
    assert str(refused.value) == "an idTag is text, and 12 is not"


async def test_an_id_tag_refused_while_offline_says_the_charger_decided_alone():
    """QA: the dashboard said "idTag TAG-1 was not accepted (Invalid)" of a charger that
    was not connected, as if the CSMS had refused the tag."""
    charger = runtime_charger("ARG-OFFLINE", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(CommandError) as outcome:
        await command_server(charger).execute(
            PK, "present_id_tag", {"connector_id": 1, "id_tag": "TAG-1"}
        )
    message = str(outcome.value)
    # The status in brackets first, as scenarios read it (scenarios.steps._NOT_ACCEPTED).
    assert message.startswith("idTag TAG-1 was not accepted (Invalid): ")
    assert "not connected to its CSMS" in message
    assert "AllowOfflineTxForUnknownId" in message


async def test_a_target_soc_below_the_soc_is_refused():
    charger = runtime_charger("ARG-SOC", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(
            PK, "plug_in", {"connector_id": 1, "soc": 80, "target_soc": 50}
        )
    assert refused.value.field == "target_soc"
    assert "below" in str(refused.value)


@pytest.mark.parametrize("info", ["a\x00b", "line\nbreak"], ids=["NUL", "newline"])
async def test_a_fault_info_with_a_control_character_is_refused(info):
    charger = runtime_charger("ARG-FAULT", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(
            PK, "inject_fault", {"connector_id": 1, "error_code": "GroundFailure", "info": info}
        )
    assert "info is printable text" in str(refused.value)
    assert charger.evse(1).status.value == "Available"


async def test_a_printable_fault_info_is_kept():
    charger = runtime_charger("ARG-FAULT2", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    await command_server(charger).execute(
        PK, "inject_fault", {"connector_id": 1, "error_code": "GroundFailure", "info": "Zoë ok"}
    )
    assert charger.evse(1).status.value == "Faulted"
