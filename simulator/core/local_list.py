"""The Local Authorization List: idTags the central system sends the charger to keep.

Plain Python. OCPP 1.6 section 3.5.3 and 5.15 (SendLocalList), 5.9 (GetLocalListVersion):

- a Full update replaces the list (every entry must carry its idTagInfo); a Differential
  one adds or updates the entries that carry one and removes those that do not, and only
  applies to a list older than it: a listVersion not above the current one (the one
  GetLocalListVersion answers: 0 for an empty list) answers VersionMismatch (the central
  system then sends the full list);
- an update with more entries than SendLocalListMaxLength, or one that would leave more than
  LocalAuthListMaxLength entries, or that names an idTag twice, or a Full update entry
  without idTagInfo, fails (Failed) and changes nothing;
- GetLocalListVersion answers the version of the list, 0 when the list is empty (and -1
  when the charger has no list: section 5.10, "A version number of 0 (zero) SHALL be used
  to indicate that the local authorization list is empty, and a version number of -1
  SHALL be used to indicate that the Charge Point does not support Local Authorization
  Lists"). The listVersion of a SendLocalList is the version the charger "MUST associate
  with the local authorization list after it has been updated" (5.15): a list with entries
  under version 0 or -1 could only be reported as empty or as no list at all, so such an
  update fails (Failed), as does any negative version; an update that leaves the list
  empty may carry 0 (a Full update with no entries clears the list).

IdTags are compared without regard to case (1.6 section 7.28: an IdToken is a
CiString20): a lookup finds `04A1B2C3` for `04a1b2c3`, one update may not name both, and a
Differential entry for either updates or removes the entry, which keeps the spelling it
was first listed with.

What an entry means for authorization (it takes priority over the authorization cache,
online with LocalPreAuthorize and offline with LocalAuthorizeOffline) is decided in
`authorization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from simulator.core.clock import parse_iso
from simulator.core.protocol import AuthStatus, IdTagAnswer, id_tag_key


class UpdateType(StrEnum):
    FULL = "Full"
    DIFFERENTIAL = "Differential"


class UpdateStatus(StrEnum):
    """SendLocalList's answers (1.6 words: the core answers CSMS operations in them)."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


# An entry of an update: the idTag and what the list says of it (None: remove it).
Entry = tuple[str, IdTagAnswer | None]


@dataclass(frozen=True, slots=True)
class ListChange:
    """What one accepted update changed, for persistence: every entry of a Full update
    (`full`), or the added/updated (answer) and removed (None) idTags of a Differential."""

    version: int
    full: bool
    entries: dict[str, IdTagAnswer | None]


class LocalAuthList:
    """One charger's list: its version and its entries by idTag."""

    __slots__ = ("_expiry_cache", "_keys", "entries", "version")

    def __init__(self, version: int = 0, entries: dict[str, IdTagAnswer] | None = None) -> None:
        self.version = version
        self.entries: dict[str, IdTagAnswer] = {}
        self._keys: dict[str, str] = {}  # id_tag_key(idTag) -> the idTag as listed
        self._expiry_cache: dict[str, float | None] = {}
        self.restore(version, entries or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, id_tag: object) -> bool:
        return isinstance(id_tag, str) and id_tag_key(id_tag) in self._keys

    def restore(self, version: int, entries: dict[str, IdTagAnswer]) -> None:
        """The list as stored (after a restart)."""
        self.version = version
        self.entries = entries
        self._keys = {id_tag_key(tag): tag for tag in entries}
        self._expiry_cache.clear()

    @property
    def reported_version(self) -> int:
        """GetLocalListVersion: 0 stands for an empty list (1.6 section 5.9)."""
        return self.version if self.entries else 0

    def update(
        self,
        version: int,
        kind: UpdateType,
        items: list[Entry],
        *,
        max_length: int,
        max_items: int,
    ) -> tuple[UpdateStatus, ListChange | None]:
        """Apply a SendLocalList; the answer, and what changed when it is Accepted."""
        # Newer than the version GetLocalListVersion reports: 0 once the list is empty,
        # whatever version emptied it (a CSMS that asked, then sent version 1, was told
        # VersionMismatch).
        if kind is UpdateType.DIFFERENTIAL and version <= self.reported_version:
            return UpdateStatus.VERSION_MISMATCH, None
        if len(items) > max_items:
            return UpdateStatus.FAILED, None
        changes: dict[str, IdTagAnswer | None] = {}
        named: set[str] = set()
        for id_tag, answer in items:
            key = id_tag_key(id_tag)
            if key in named:
                return UpdateStatus.FAILED, None  # the same idTag twice: which one wins?
            if answer is None and kind is UpdateType.FULL:
                return UpdateStatus.FAILED, None
            named.add(key)
            # A Differential entry changes the listed entry, as it was spelt.
            listed = self._keys.get(key) if kind is UpdateType.DIFFERENTIAL else None
            changes[listed or id_tag] = answer
        if kind is UpdateType.FULL:
            entries = {tag: answer for tag, answer in changes.items() if answer is not None}
        else:
            entries = dict(self.entries)
            for tag, answer in changes.items():
                if answer is None:
                    entries.pop(tag, None)
                else:
                    entries[tag] = answer
        if len(entries) > max_length:
            return UpdateStatus.FAILED, None
        if version < 0 or (version == 0 and entries):
            return UpdateStatus.FAILED, None  # a version GetLocalListVersion cannot report
        self.restore(version, entries)
        return UpdateStatus.ACCEPTED, ListChange(version, kind is UpdateType.FULL, changes)

    def lookup(self, id_tag: str, now: float) -> IdTagAnswer | None:
        """The list's entry for an idTag, Expired once its expiryDate has passed."""
        id_tag = self._keys.get(id_tag_key(id_tag), id_tag)
        entry = self.entries.get(id_tag)
        if entry is None or entry.status is not AuthStatus.ACCEPTED or entry.expiry is None:
            return entry
        if id_tag not in self._expiry_cache:
            try:
                self._expiry_cache[id_tag] = parse_iso(entry.expiry).timestamp()
            except ValueError:
                self._expiry_cache[id_tag] = None  # unreadable: as if it had none
        expires = self._expiry_cache[id_tag]
        if expires is not None and expires <= now:
            return IdTagAnswer(AuthStatus.EXPIRED, entry.expiry, entry.parent_id_tag)
        return entry
