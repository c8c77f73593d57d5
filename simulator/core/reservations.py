"""Reservations: a connector (or, with connector 0, any connector) held for one idTag.

Plain Python. `ReservationBook` keeps a charger's reservations and answers the questions of
OCPP 1.6 section 5.13 (ReserveNow) and 3.13 (reservations): may this idTag start on this
connector now, which reservation does a start use. The charger (`Charger.reserve_now` and
friends) changes connector statuses and timers around it, since only it may.

Rules kept here, as the spec and its errata say:

- one reservation per connector; a ReserveNow with the id of an existing reservation
  replaces it (possibly on another connector);
- a reservation on connector 0 (only when ReserveConnectorZeroSupported) holds no connector
  in particular, but one connector must stay free for it: another idTag may not take the
  last free connector while it lasts. Connector 0 has no Reserved status, so no connector
  changes status for it;
- the reserved idTag, or an idTag with the same parentIdTag as the reservation's, may start
  on it (idTags compared without regard to case, as 1.6 makes them CiString20); the reservation ends when such a transaction starts (its id goes in the start
  message), at its expiryDate, when cancelled, or when its connector (or the whole charger)
  becomes Faulted or Unavailable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from simulator.core.protocol import same_id_tag


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: int
    connector_id: int  # 0: any connector of the charger
    id_tag: str
    expiry: str  # expiryDate as the central system sent it (UTC ISO 8601)
    expires_at: float  # the same instant as epoch seconds, on the charger's own clock
    parent_id_tag: str | None = None

    def admits(self, id_tag: str, parent_id_tag: str | None) -> bool:
        """Whether this idTag (whose group is `parent_id_tag`, if known) may use it."""
        return same_id_tag(id_tag, self.id_tag) or same_id_tag(parent_id_tag, self.parent_id_tag)

    def as_record(self) -> dict[str, object]:
        """What persistence stores (and `ReservationBook.restore` reads back)."""
        return {
            "reservation_id": self.reservation_id,
            "connector_id": self.connector_id,
            "id_tag": self.id_tag,
            "parent_id_tag": self.parent_id_tag,
            "expiry": self.expiry,
        }


class ReservationBook:
    """One charger's reservations, by reservation id."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, Reservation] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Reservation]:
        return iter(sorted(self._by_id.values(), key=lambda r: (r.connector_id, r.expires_at)))

    def __contains__(self, reservation_id: object) -> bool:
        return reservation_id in self._by_id

    def get(self, reservation_id: int) -> Reservation | None:
        return self._by_id.get(reservation_id)

    def add(self, reservation: Reservation) -> Reservation | None:
        """Keep a reservation; returns the one it replaces (same id), if any."""
        replaced = self._by_id.get(reservation.reservation_id)
        self._by_id[reservation.reservation_id] = reservation
        return replaced

    def remove(self, reservation_id: int) -> Reservation | None:
        return self._by_id.pop(reservation_id, None)

    def on_connector(self, connector_id: int) -> Reservation | None:
        """The reservation that holds this connector (connector > 0), if any."""
        if not self._by_id:
            return None
        for reservation in self._by_id.values():
            if reservation.connector_id == connector_id:
                return reservation
        return None

    def anywhere(self) -> list[Reservation]:
        """The reservations of connector 0 (any connector)."""
        return [r for r in self._by_id.values() if r.connector_id == 0]

    def usable(
        self, connector_id: int, id_tag: str, parent_id_tag: str | None, others_free: int
    ) -> tuple[bool, Reservation | None]:
        """May this idTag start on this connector, and with which reservation?

        `others_free` counts the charger's other connectors that are free now (Available,
        not reserved, no cable, no session). Returns (allowed, reservation used): the
        connector's own reservation if it admits the idTag; else one of connector 0 that
        admits it; else none, and then the start is allowed only if it leaves a free
        connector for each reservation of connector 0.
        """
        own = self.on_connector(connector_id)
        if own is not None:
            return (True, own) if own.admits(id_tag, parent_id_tag) else (False, None)
        if not self._by_id:
            return True, None
        anywhere = self.anywhere()
        for reservation in anywhere:
            if reservation.admits(id_tag, parent_id_tag):
                return True, reservation
        return others_free >= len(anywhere), None

    def records(self) -> list[dict[str, object]]:
        return [r.as_record() for r in self]
