"""The registry of live chargers in this process."""

from __future__ import annotations

from collections.abc import Iterator

from simulator.core.charge_point import Charger
from simulator.core.revision import FLEET


class Store:
    def __init__(self) -> None:
        self._by_id: dict[str, Charger] = {}
        self._by_pk: dict[int, Charger] = {}

    def add(self, charger: Charger) -> None:
        if charger.id in self._by_id:
            raise ValueError(f"charger {charger.id} is already loaded")
        self._by_id[charger.id] = charger
        if charger.spec.db_id is not None:
            self._by_pk[charger.spec.db_id] = charger
        FLEET.bump()

    def remove(self, charge_point_id: str) -> Charger | None:
        charger = self._by_id.pop(charge_point_id, None)
        if charger is not None:
            if charger.spec.db_id is not None:
                self._by_pk.pop(charger.spec.db_id, None)
            FLEET.bump()
        return charger

    def get(self, charge_point_id: str) -> Charger | None:
        return self._by_id.get(charge_point_id)

    def by_pk(self, pk: int) -> Charger | None:
        return self._by_pk.get(pk)

    def __iter__(self) -> Iterator[Charger]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, charge_point_id: object) -> bool:
        return charge_point_id in self._by_id
