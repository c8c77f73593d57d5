"""A channel-layer outage as a worker's loops log it: one warning when it starts, one when
it ends; waits that grow instead of a retry every 100 ms."""

from __future__ import annotations

import logging

from simulator.runtime.layer_outage import FIRST_RETRY_S, MAX_RETRY_S, Outage


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    outage = Outage("receiving commands")
    assert not outage.recovered()  # nothing to end
    with caplog.at_level(logging.DEBUG, logger="simulator.runtime.layer_outage"):
        waits = [outage.failed(ConnectionError("Error 111 connecting")) for _ in range(10)]
        assert outage.ongoing
        assert outage.recovered()
        assert not outage.recovered()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings[0].getMessage() == (
        "receiving commands failed (ConnectionError: Error 111 connecting); "
        "retrying, quietly until it works again"
    )
    assert warnings[0].exc_info is not None
    assert warnings[1].getMessage().startswith("receiving commands works again after ")
    assert warnings[1].getMessage().endswith(" s (10 failed attempts)")
    assert len(warnings) == 2
    assert waits[0] == FIRST_RETRY_S
    assert waits == sorted(waits) and waits[-1] == MAX_RETRY_S
    assert outage.failed(ConnectionError("again")) == FIRST_RETRY_S  # a new outage
