"""Fanout: every listener method reaches every listener that implements it."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.core.charge_point import _LISTENER_METHODS, Fanout, Listener


class Recorder(Listener):
    """Implements every listener method: records (its name, the method's name)."""

    def __init__(self, name: str, heard: list[tuple[str, str]]) -> None:
        self.name, self.heard = name, heard


def _recording(method: str) -> Any:
    def record(self: Recorder, *args: Any, **kwargs: Any) -> None:
        self.heard.append((self.name, method))

    return record


for _method in _LISTENER_METHODS:
    setattr(Recorder, _method, _recording(_method))


class OnlyFirmware(Listener):
    def __init__(self, heard: list[tuple[str, str]]) -> None:
        self.heard = heard

    def on_firmware(self, charger: Any) -> None:
        self.heard.append(("only", "on_firmware"))


@pytest.mark.parametrize("method", _LISTENER_METHODS)
def test_a_method_two_listeners_implement_reaches_both_in_order(method):
    # Before, only the methods Fanout spelled out fanned out: on_reservations,
    # on_local_list and on_firmware reached neither of two listeners.
    heard: list[tuple[str, str]] = []
    fanout = Fanout(Recorder("a", heard), Listener(), Recorder("b", heard))
    arguments = {"on_config": 3, "on_frame": 3, "on_connection": 3, "on_transaction": 2}
    getattr(fanout, method)(None, *[None] * (arguments.get(method, 1) - 1))
    assert heard == [("a", method), ("b", method)]


def test_a_method_one_listener_implements_is_that_listeners_own():
    heard: list[tuple[str, str]] = []
    only = OnlyFirmware(heard)
    fanout = Fanout(Listener(), only)
    assert fanout.on_firmware == only.on_firmware  # no loop on a hot path
    charger: Any = None  # the listeners here never look at it
    fanout.on_firmware(charger)
    fanout.on_change(charger)  # nobody implements it: nothing happens
    assert heard == [("only", "on_firmware")]
