"""The authorization cache, the local list's place beside it, and the offline rules.

Online, the CSMS decides (Authorize, or StartTransaction's idTagInfo) and the answer is
remembered when AuthorizationCacheEnabled; offline, the local authorization list (when
LocalAuthListEnabled) and then the cache, with LocalAuthorizeOffline and
AllowOfflineTxForUnknownId, decide. An idTag on the local list is decided by the list, not
the cache (1.6 section 3.5: the list takes priority), and the cache does not keep it.
Both compare idTags without regard to case (1.6 section 7.28: an IdToken is a CiString20).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable

from simulator.core.clock import parse_iso
from simulator.core.configuration import ConfigValues
from simulator.core.local_list import LocalAuthList
from simulator.core.protocol import AuthStatus, IdTagAnswer, id_tag_key

_STATUSES = {str(s): s for s in AuthStatus}

# How many idTags a charger's cache holds. 1.6 sets no size; a real charger's memory is
# finite, and a fleet driven by scripts that make up a new idTag for every session would
# otherwise grow each charger's cache (and its stored rows) without end. When full, the
# idTag remembered longest ago goes (2.0.1 C10's least recently used rule).
CACHE_SIZE = 1000


class AuthorizationCache(dict[str, str]):
    """idTag -> the last status the CSMS gave it (and, in `parents`, its parentIdTag; in
    `expiries`, its expiryDate).

    1.6 section 3.5.2: the cache SHOULD survive reboots and power outages. What changed
    since it was last stored is kept in `changed` (and `wiped`, when it was emptied) for
    the owner to store (`take_changes`); `on_change` is called at each change."""

    __slots__ = (
        "_keys",
        "changed",
        "config",
        "expiries",
        "limit",
        "local_list",
        "now",
        "on_change",
        "parents",
        "wiped",
    )

    def __init__(
        self,
        config: ConfigValues,
        local_list: LocalAuthList | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self.local_list = local_list if local_list is not None else LocalAuthList()
        self.now = now  # the charger's wall clock (list entries expire)
        self.parents: dict[str, str] = {}
        self.expiries: dict[str, tuple[str, float]] = {}  # idTag -> (expiryDate, epoch s)
        self._keys: dict[str, str] = {}  # id_tag_key(idTag) -> the idTag as first cached
        self.limit = CACHE_SIZE
        # idTags whose entry changed or went, not yet stored, in the order they last did
        # (so that stored rows keep the order the cache lets them go in)
        self.changed: dict[str, None] = {}
        self.wiped = False  # emptied since last stored: its stored entries go too
        # Called at each change; weak, so that the charger it tells holds no cycle through
        # its own cache (chargers are freed without the collector: `live_fleet`).
        self.on_change: weakref.WeakMethod[Callable[[], None]] | None = None

    @property
    def enabled(self) -> bool:
        return self.config.as_bool("AuthorizationCacheEnabled")

    @property
    def list_enabled(self) -> bool:
        return self.config.as_bool("LocalAuthListEnabled")

    def clear(self) -> None:
        had = bool(self)
        self._empty()
        if had:
            self.changed.clear()
            self.wiped = True
            self._changed()

    def _empty(self) -> None:
        super().clear()
        self.parents.clear()
        self.expiries.clear()
        self._keys.clear()

    def carry_over(self, before: AuthorizationCache) -> None:
        """Take the entries of the same charger's cache before a power cycle (its memory,
        which the new charger's stored rows may not hold yet), in place of its own."""
        self._empty()
        self.update(before)
        self.parents.update(before.parents)
        self.expiries.update(before.expiries)
        self._keys.update(before._keys)
        self.changed, self.wiped = dict(before.changed), before.wiped

    def restore(self, entries: dict[str, IdTagAnswer]) -> None:
        """The entries stored before a restart of the simulator (`take_changes`), in the
        order they were remembered."""
        for id_tag, answer in entries.items():
            self._put(id_tag, str(answer.status), answer.parent_id_tag, answer.expiry)
        self.changed.clear()

    def take_changes(self) -> tuple[bool, dict[str, IdTagAnswer | None]]:
        """(whether the stored cache is to be emptied first, idTag -> its entry now or None
        when it went) since the last call; the owner stores them."""
        wiped, changed = self.wiped, self.changed
        self.wiped, self.changed = False, {}
        return wiped, {id_tag: self._entry(id_tag) for id_tag in changed}

    def _entry(self, id_tag: str) -> IdTagAnswer | None:
        status = self.get(id_tag)
        if status is None:
            return None
        expiry = self.expiries.get(id_tag)
        return IdTagAnswer(
            _STATUSES.get(status, AuthStatus.INVALID),
            expiry[0] if expiry is not None else None,
            self.parents.get(id_tag),
        )

    def _changed(self) -> None:
        tell = self.on_change() if self.on_change is not None else None
        if tell is not None:
            tell()

    def _key(self, id_tag: str) -> str:
        """The idTag as the cache holds it (in whatever case it was first cached)."""
        return id_tag if id_tag in self else self._keys.get(id_tag_key(id_tag), id_tag)

    def forget(self, id_tag: str) -> None:
        """Drop one idTag's entry (the local list decides it now)."""
        id_tag = self._key(id_tag)
        if self._drop(id_tag):
            self._changed()

    def _drop(self, id_tag: str) -> bool:
        self._keys.pop(id_tag_key(id_tag), None)
        self.parents.pop(id_tag, None)
        self.expiries.pop(id_tag, None)
        if self.pop(id_tag, None) is None:
            return False
        self._mark(id_tag)
        return True

    def _mark(self, id_tag: str) -> None:
        self.changed.pop(id_tag, None)
        self.changed[id_tag] = None

    def remember(
        self,
        id_tag: str,
        status: str,
        parent_id_tag: str | None = None,
        expiry: str | None = None,
    ) -> None:
        if not self.enabled or (self.list_enabled and id_tag in self.local_list):
            return
        id_tag = self._key(id_tag)
        self.pop(id_tag, None)  # remembered now: the last to go when the cache is full
        self._put(id_tag, str(status), parent_id_tag, expiry)
        self._mark(id_tag)
        while len(self) > max(self.limit, 1):
            self._drop(next(iter(self)))
        self._changed()

    def _put(self, id_tag: str, status: str, parent_id_tag: str | None, expiry: str | None) -> None:
        self._keys[id_tag_key(id_tag)] = id_tag
        self[id_tag] = status
        if parent_id_tag:
            self.parents[id_tag] = parent_id_tag
        else:
            self.parents.pop(id_tag, None)
        # 1.6 section 3.5.2: an entry whose validity has expired is Expired in the cache.
        moment = None
        if expiry:
            with contextlib.suppress(ValueError):  # unreadable: as if it had none
                moment = parse_iso(expiry).timestamp()
        if moment is None:
            self.expiries.pop(id_tag, None)
        else:
            self.expiries[id_tag] = (expiry or "", moment)

    def local_entry(self, id_tag: str) -> IdTagAnswer | None:
        """What the charger knows of an idTag without asking: the local list first."""
        if self.list_enabled:
            entry = self.local_list.lookup(id_tag, self.now())
            if entry is not None:
                return entry
        if not self.enabled:
            return None
        id_tag = self._key(id_tag)
        cached = self.get(id_tag)
        if cached is None:
            return None
        status = _STATUSES.get(cached, AuthStatus.INVALID)
        expiry = self.expiries.get(id_tag)
        if expiry is None:
            return IdTagAnswer(status, None, self.parents.get(id_tag))
        if status is AuthStatus.ACCEPTED and expiry[1] <= self.now():
            status = AuthStatus.EXPIRED
        return IdTagAnswer(status, expiry[0], self.parents.get(id_tag))

    def parent_of(self, id_tag: str) -> str | None:
        entry = self.local_entry(id_tag)
        return entry.parent_id_tag if entry is not None else None

    def pre_authorized(self, id_tag: str) -> bool:
        """LocalPreAuthorize: start at once from the list or cache, without waiting for
        Authorize."""
        if not self.config.as_bool("LocalPreAuthorize"):
            return False
        entry = self.local_entry(id_tag)
        return entry is not None and entry.status == "Accepted"

    def offline_status(self, id_tag: str) -> AuthStatus:
        """The answer without the CSMS (offline, or Authorize failed).

        An idTag the list or cache accepts, with LocalAuthorizeOffline off, is one they
        may not authorize: as unknown as one they do not hold (1.6's Unknown Offline
        Authorization: unknown are the idTags that cannot be explicitly authorized by the
        list or cache), so that AllowOfflineTxForUnknownId decides; one they refuse stays
        refused."""
        entry = self.local_entry(id_tag)
        if entry is not None and entry.status is not AuthStatus.ACCEPTED:
            return entry.status
        if entry is not None and self.config.as_bool("LocalAuthorizeOffline"):
            return AuthStatus.ACCEPTED
        allowed = self.config.as_bool("AllowOfflineTxForUnknownId")
        return AuthStatus.ACCEPTED if allowed else AuthStatus.INVALID
