"""A scenario's template chargers (`chargers.template`) checked as the charger's own form
checks them: its CSMS URL, its security profile and AuthorizationKey, its configuration
keys and values, and the connectors its steps name. The run stores them as given, so a
value the form would refuse would otherwise go into the run unseen, or fail only once
the chargers are up."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from chargers.validators import validate_authorization_key, validate_csms_url
from scenarios.format_errors import Errors, Path_
from simulator.contract import config_keys


def config_text(value: Any) -> str:
    """A template's configuration value as the charger stores it (YAML's `true` is "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


WRITE_ONLY_KEY = (
    "AuthorizationKey is write-only: give it as the template's authorization_key (kept sealed, "
    "as a charger's own key), not in its configuration."
)


def check_template(chargers: Any, errors: Errors) -> None:
    """A template's CSMS URL, and its configuration keys and values, checked as the charger's own form
    checks them (`ConfigurationKey.clean`): the run stores them as given, so a value the
    charger's form refuses, or a key that differs from an OCPP key only in case (a typing
    slip no CSMS could read), would otherwise go into the run unseen."""
    template = chargers.get("template") if isinstance(chargers, dict) else None
    url = template.get("csms_url") if isinstance(template, dict) else None
    url_path: Path_ = ("chargers", "template", "csms_url")
    if isinstance(url, str) and "${" not in url and not errors.said_at(url_path):
        # The chargers' own rules (no password in it), as the run's setup applies them:
        # said here with its line rather than as a setup in error once the run started.
        try:
            validate_csms_url(url)
        except ValidationError as exc:
            errors.add(url_path, " ".join(exc.messages))
    if isinstance(template, dict):
        _check_template_security(template, errors)
    configuration = template.get("configuration") if isinstance(template, dict) else None
    if not isinstance(configuration, dict):
        return
    for key, value in configuration.items():
        path: Path_ = ("chargers", "template", "configuration", key)
        if not isinstance(key, str) or "${" in key:
            continue
        twin = config_keys.case_twin_problem(key)
        if twin is not None:
            errors.add(path, twin, at_key=True)
            continue
        if key == "AuthorizationKey":
            # The charger's form refuses it too: stored as a configuration row it was kept
            # in clear (not sealed as the charger's own key is) and shown in the admin.
            errors.add(path, WRITE_ONLY_KEY, at_key=True)
            continue
        if key not in config_keys.KEYS or (isinstance(value, str) and "${" in value):
            continue
        try:
            config_keys.normalise(key, config_text(value))
        except config_keys.InvalidValue as exc:
            errors.add(path, str(exc))


def _check_template_security(template: dict[str, Any], errors: Errors) -> None:
    """A template's security profile and its AuthorizationKey, as the charger's own form
    checks them (`Charger.clean`, `validate_authorization_key`): a run against a CSMS that
    asks for HTTP Basic credentials. A key written out is checked without being quoted; one
    from a variable (a secret one, best) when the run gives it."""
    profile = template.get("security_profile", 0)
    key = template.get("authorization_key")
    base: Path_ = ("chargers", "template")
    if profile in (1, 2) and key is None:
        errors.add(
            (*base, "security_profile"),
            f"security profile {profile} needs the template's authorization_key (the HTTP "
            'Basic password; best a secret variable: authorization_key: "${csms_password}")',
        )
    elif key is not None and profile == 0:
        errors.add(
            (*base, "authorization_key"),
            "an authorization_key is sent with security_profile 1 or 2 only: give the profile too",
            at_key=True,
        )
    if isinstance(key, str) and "${" not in key:
        try:
            validate_authorization_key(key)
        except ValidationError as exc:
            errors.add((*base, "authorization_key"), " ".join(exc.messages))
    url = template.get("csms_url")
    if profile == 2 and isinstance(url, str) and "${" not in url and not url.startswith("wss://"):
        errors.add((*base, "security_profile"), "security profile 2 needs a wss:// csms_url (TLS)")


def check_template_connectors(
    steps: list[Any], chargers: Any, errors: Errors, *, skip: set[int]
) -> None:
    """A template's chargers have `connectors` connectors (default 1): a step on one
    beyond them could only error at the engine once the chargers are up ("has no connector
    3"), so it is said here. Existing chargers (ids, pattern, location) have what they
    have: the file cannot tell."""
    template = chargers.get("template") if isinstance(chargers, dict) else None
    if not isinstance(template, dict):
        return
    count = template.get("connectors", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        return  # the schema said so already
    for n, item in enumerate(steps):
        if n in skip or not isinstance(item, dict) or len(item) != 1:
            continue
        kind, args = next(iter(item.items()))
        connector = args.get("connector") if isinstance(args, dict) else None
        if isinstance(connector, int) and not isinstance(connector, bool) and connector > count:
            have = f"{count} connector" + ("" if count == 1 else "s")
            errors.add(
                ("steps", n, kind, "connector"),
                f"the template's chargers have {have}: there is no connector {connector}",
            )


# The steps whose values the engine checks again (`_check_engine_bounds`).
