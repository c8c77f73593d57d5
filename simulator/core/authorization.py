"""The authorization cache and the offline authorization rules.

Online, the CSMS decides (Authorize, or StartTransaction's idTagInfo) and the answer is
remembered when AuthorizationCacheEnabled; offline, the cache and LocalAuthorizeOffline /
AllowOfflineTxForUnknownId decide.
"""

from __future__ import annotations

from simulator.core.configuration import ConfigValues


class AuthorizationCache(dict[str, str]):
    """idTag -> the last status the CSMS gave it."""

    __slots__ = ("config",)

    def __init__(self, config: ConfigValues) -> None:
        super().__init__()
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config.as_bool("AuthorizationCacheEnabled")

    def remember(self, id_tag: str, status: str) -> None:
        if self.enabled:
            self[id_tag] = status

    def pre_authorized(self, id_tag: str) -> bool:
        """LocalPreAuthorize: start at once from the cache, without waiting for Authorize."""
        return (
            self.config.as_bool("LocalPreAuthorize")
            and self.enabled
            and self.get(id_tag) == "Accepted"
        )

    def offline_status(self, id_tag: str) -> str:
        """The answer without the CSMS (offline, or Authorize failed)."""
        cached = self.get(id_tag) if self.enabled else None
        if cached == "Accepted" and self.config.as_bool("LocalAuthorizeOffline"):
            return "Accepted"
        if cached is None and self.config.as_bool("AllowOfflineTxForUnknownId"):
            return "Accepted"
        return cached if cached is not None and cached != "Accepted" else "Invalid"
