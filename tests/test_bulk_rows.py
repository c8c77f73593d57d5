"""Statements over many rows (`chargers.bulk`): every value comes back as it was given.

On PostgreSQL the rows travel as one binary array per column; on SQLite as multi-row
VALUES. Text is what they must not bend: the message log stores frames full of double
quotes, backslashes, braces and commas, which a text array literal would have to escape.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargers.models import Charger, FrameLogEntry
from tests.cast import make_charger

pytestmark = pytest.mark.django_db

# Any text either database can hold: PostgreSQL's text holds no NUL, and UTF-8 no lone
# surrogate. The sampled ones are a text array literal's special cases.
_texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))
_awkward = st.sampled_from(["", "NULL", "null", '"', "\\", "{}", "{a,b}", " x ", "a,b", "\\N"])
_text = _awkward | _texts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(_text, min_size=1, max_size=5),
    answer=st.none() | _text,
    at=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_the_message_logs_texts_and_numbers_come_back_as_written(payloads, answer, at):
    charger = Charger.objects.first() or make_charger("CP-BULK", evses=1)
    FrameLogEntry.objects.all().delete()
    rows = [
        (
            charger.pk,
            at + n,
            "frame",
            "out",
            payload[:36],
            payload[:40],
            len(payload),
            payload,
            None if answer is None else at + n + 0.5,
            None if answer is None else len(answer),
            answer or "",
        )
        for n, payload in enumerate(payloads)
    ]
    FrameLogEntry.objects.add(rows)
    stored = list(
        FrameLogEntry.objects.order_by("at").values_list(
            "charger_id",
            "at",
            "kind",
            "direction",
            "message_id",
            "action",
            "size",
            "payload",
            "answer_at",
            "answer_size",
            "answer_payload",
        )
    )
    assert stored == rows
