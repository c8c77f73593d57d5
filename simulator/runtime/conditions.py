"""Actions that wait for a condition (`wait_for`): answered when it holds, or at a timeout.

No polling: a waiting action registers here under its charger's primary key (a reboot
replaces the `Charger` object; the key stays), and every change the core reports to its
listener (`Listener.on_change`: each status change, link change and boot answer goes
through it) checks the waits of that charger only. With nothing waiting, a change costs a
test of an empty dict. A status the connector passes through within one step (Charging,
then at once SuspendedEV for a full battery) is seen too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from simulator import contract
from simulator.core.charge_point import BootState, Charger, Listener
from simulator.runtime.store import Store

NOT_RUNNING = "not running"
RESTARTING = "restarting"


@dataclass(slots=True, eq=False)
class _Wait:
    condition: str
    connector_id: int
    future: asyncio.Future[str]


def holds(charger: Charger, condition: str, connector_id: int) -> tuple[bool, str]:
    """Whether the condition holds now, and the status it was judged by: the connector's
    status, or for "Accepted" the boot state when online (else the link state). A charger
    going down for a Reset is not up yet: waited for, it is the boot after it that counts
    (a scenario's wait right after a trigger that made the CSMS reset it)."""
    if condition == contract.ACCEPTED:
        if not charger.online:
            return False, charger.link.value
        if charger.restarting:
            return False, RESTARTING
        return charger.boot is BootState.ACCEPTED, charger.boot.value
    if not 1 <= connector_id <= len(charger.evses):
        return False, f"no connector {connector_id}"
    status = str(charger.evses[connector_id - 1].status)
    return status == condition, status


class Conditions(Listener):
    def __init__(self, store: Store) -> None:
        self.store = store
        self._waits: dict[int, list[_Wait]] = {}

    def __len__(self) -> int:
        return sum(len(waits) for waits in self._waits.values())

    async def wait(
        self, pk: int, condition: str, connector_id: int, timeout: float
    ) -> contract.WaitOutcome:
        """Until the condition holds for the charger that runs as `pk`, or `timeout` s.
        The arguments are the caller's to check (`condition` in WAIT_CONDITIONS)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        met, status = self._now(pk, condition, connector_id)
        if not met and timeout > 0:
            entry = _Wait(condition, connector_id, loop.create_future())
            self._waits.setdefault(pk, []).append(entry)
            try:
                status = await asyncio.wait_for(entry.future, timeout)
                met = True
            except TimeoutError:
                met, status = self._now(pk, condition, connector_id)
            finally:
                self._forget(pk, entry)
        return contract.WaitOutcome(
            condition=condition,
            met=met,
            status=status,
            waited=round(loop.time() - started, 3),
        )

    def _now(self, pk: int, condition: str, connector_id: int) -> tuple[bool, str]:
        charger = self.store.by_pk(pk)
        if charger is None:
            return False, NOT_RUNNING
        return holds(charger, condition, connector_id)

    def _forget(self, pk: int, entry: _Wait) -> None:
        waits = self._waits.get(pk)
        if waits is None:
            return
        if entry in waits:
            waits.remove(entry)
        if not waits:
            del self._waits[pk]

    # -- listener ------------------------------------------------------------------------------

    def on_change(self, charger: Charger) -> None:
        if not self._waits:
            return
        pk = charger.spec.db_id
        if pk is None:
            return
        waits = self._waits.get(pk)
        # Only the charger that runs as `pk` now: one a reboot replaced still reports its
        # going offline, which says nothing about its successor.
        if not waits or self.store.by_pk(pk) is not charger:
            return
        for entry in waits:
            if entry.future.done():
                continue
            met, status = holds(charger, entry.condition, entry.connector_id)
            if met:
                entry.future.set_result(status)
