"""A number that moves whenever something the fleet's counts read may have changed.

The worker counts its fleet for the fleet and location pages and for the terminal's status
line (`runtime.tally`); an idle fleet changes nothing those counts read, so the count is
kept until this number moves. Bumped by the owner of each piece of state, on its write
path: a connector's status and power (`Evse`), a charger's link, link error, boot and
location (`Charger`), and the runtime's own (chargers loaded, connection tasks, the sites
held back).

One counter for the process, not one per fleet: a charger or connector needs no wiring to
bump it, so none can be left unwired (a stale page); a bump from a charger that no count
reads only costs one recount.
"""

from __future__ import annotations


class Revision:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


FLEET = Revision()
