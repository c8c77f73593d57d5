"""The CALL's id and frame as the hot path makes them (`wire.new_message_id`,
`wire.frame_call`): the same text as the general way, whatever the payload holds."""

from __future__ import annotations

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from simulator.ocpp16 import wire

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    # Braces and format fields in the text: `frame_call` must not read them as a template.
    | st.text(alphabet=st.sampled_from('{}0[]"\\:,x é\n')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), _JSON, max_size=6))
def test_frame_call_is_encode_call_of_the_encoded_payload(payload: dict) -> None:
    unique_id = wire.new_message_id()
    text = orjson.dumps(payload).decode()
    for action in ("MeterValues", "StartTransaction", "DataTransfer"):
        assert wire.frame_call(unique_id, action, text) == wire.encode_call(
            unique_id, action, payload
        )


def test_message_ids_are_the_prefix_and_a_counter() -> None:
    ids = [wire.new_message_id() for _ in range(1000)]
    prefix = wire._PROCESS_PREFIX
    assert re.fullmatch(r"[0-9a-f]{12}", prefix)
    first = int(ids[0].rsplit("-", 1)[1])
    assert ids == [f"{prefix}-{first + n}" for n in range(1000)]
    assert all(len(unique_id) <= 36 and type(unique_id) is str for unique_id in ids)
