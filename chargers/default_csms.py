"""The CSMS URL of a charger created without one (API, MCP, an import file without the
`csms_url` column, the admin's add form)."""

from __future__ import annotations

from django.conf import settings

from simulator.contract import builtin_csms


def choose_default_csms_url(
    setting: str, *, given: bool, builtin: builtin_csms.BuiltinCsms | None
) -> str:
    """The setting CHARGESIM_DEFAULT_CSMS_URL when the environment names it or no built-in
    CSMS runs in this process; else the built-in CSMS's URL. The setting's own default is
    the built-in CSMS on its default port: `runsimulator --demo --csms-port P` moved the
    CSMS, and new chargers went on knocking at port 9000."""
    if builtin is not None and not given:
        return builtin.url
    return setting


def default_csms_url() -> str:
    """Read at each use, not at import: the built-in CSMS starts after Django is set up."""
    return choose_default_csms_url(
        settings.CHARGESIM_DEFAULT_CSMS_URL,
        given=settings.CHARGESIM_DEFAULT_CSMS_URL_GIVEN,
        builtin=builtin_csms.running(),
    )
