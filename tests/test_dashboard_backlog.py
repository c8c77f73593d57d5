"""What a dashboard page's socket keeps for a page that does not read (backlog.py): in
order, snapshots coalesced, log frames bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from chargers.dashboard import backlog as backlog_module
from chargers.dashboard.backlog import LOG_FRAMES_WAITING, MAX_BEHIND, Backlog, Close

# -- the backlog alone --------------------------------------------------------------------


def state(pk: int, power: float) -> dict[str, Any]:
    return {"type": "charger.state", "charger": {"id": pk, "power_w": power}}


def log(pk: int, *texts: str, full: bool = False) -> dict[str, Any]:
    frames = [[float(i), "out", text] for i, text in enumerate(texts)]
    return {"type": "charger.log", "charger": pk, "frames": frames, "full": full}


async def taken(backlog: Backlog) -> list[Any]:
    """Everything waiting, in the order the socket would send it."""
    out = []
    while backlog._waiting:
        out.append(await backlog.take())
    return out


async def test_a_newer_snapshot_takes_the_place_of_the_waiting_one_of_the_same_thing():
    backlog = Backlog()
    counts = {"type": "fleet.counts", "chargers": 1}
    backlog.put(state(1, 10.0))
    backlog.put(state(2, 20.0))
    backlog.put(counts)
    backlog.put(state(1, 11.0))
    backlog.put({**counts, "chargers": 2})
    backlog.put({"type": "location.power", "location_id": 5, "power_w": 1.0})
    backlog.put({"type": "location.power", "location_id": 6, "power_w": 2.0})
    backlog.put({"type": "location.power", "location_id": 5, "power_w": 3.0})

    # The order of first arrival; of each thing the newest value.
    assert await taken(backlog) == [
        state(1, 11.0),
        state(2, 20.0),
        {**counts, "chargers": 2},
        {"type": "location.power", "location_id": 5, "power_w": 3.0},
        {"type": "location.power", "location_id": 6, "power_w": 2.0},
    ]


async def test_messages_that_are_not_snapshots_all_wait_in_their_order():
    backlog = Backlog()
    results = [{"type": "command.result", "request_id": f"r{i}", "ok": True} for i in range(3)]
    backlog.put(results[0])
    backlog.put(state(1, 1.0))
    backlog.put(results[1])
    backlog.put(results[1])  # the same again is a message again
    backlog.put(results[2])
    assert await taken(backlog) == [results[0], state(1, 1.0), results[1], results[1], results[2]]


async def test_a_page_is_too_far_behind_after_max_behind_updates_and_no_longer_once_it_takes():
    backlog = Backlog(max_behind=3)
    for power in range(3):
        backlog.put(state(1, float(power)))  # coalesced: each one counts all the same
    assert not backlog.too_far_behind
    backlog.put(state(1, 3.0))
    assert backlog.too_far_behind
    assert await backlog.take() == state(1, 3.0)
    assert not backlog.too_far_behind
    assert Backlog().max_behind == MAX_BEHIND


async def test_take_waits_for_a_message():
    backlog = Backlog()
    taking = asyncio.create_task(backlog.take())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not taking.done()
    backlog.put(state(1, 1.0))
    assert await taking == state(1, 1.0)


async def test_a_close_is_not_a_dict_a_message_could_equal():
    backlog = Backlog()
    backlog.put({"close": 1000})
    backlog.close(4401)
    first, second = await taken(backlog)
    assert first == {"close": 1000}
    assert second == Close(4401)


async def test_a_chargers_log_frames_wait_together_and_only_the_newest_the_page_shows():
    backlog = Backlog()
    backlog.put(log(1, "a", "b"))
    backlog.put(state(1, 1.0))
    backlog.put(log(2, "other"))
    for i in range(LOG_FRAMES_WAITING):
        backlog.put(log(1, f"f{i}"))

    first, snapshot, other = await taken(backlog)
    assert snapshot == state(1, 1.0)
    assert other == log(2, "other")
    assert first["charger"] == 1
    assert [frame[2] for frame in first["frames"]] == [f"f{i}" for i in range(LOG_FRAMES_WAITING)]
    assert first["skipped"] == 2  # "a" and "b": the page says that some were left out
    assert first["full"] is False


async def test_a_chargers_waiting_log_frames_are_bounded_in_text_too(monkeypatch):
    monkeypatch.setattr(backlog_module, "LOG_BYTES_WAITING", 10)
    backlog = Backlog()
    backlog.put(log(1, "12345"))
    backlog.put(log(1, "6789"))
    backlog.put(log(1, "a" * 20))  # larger than the bound alone: the newest stays
    (merged,) = await taken(backlog)
    assert [frame[2] for frame in merged["frames"]] == ["a" * 20]
    assert merged["skipped"] == 2


async def test_a_whole_log_takes_the_place_of_the_frames_waiting_before_it():
    backlog = Backlog()
    backlog.put(log(1, "old"))
    backlog.put(log(1, "whole", full=True))
    backlog.put(log(1, "new"))
    (merged,) = await taken(backlog)
    assert [frame[2] for frame in merged["frames"]] == ["whole", "new"]
    assert merged["full"] is True
    assert "skipped" not in merged  # the page clears its table for a whole log anyway
