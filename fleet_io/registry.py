"""The resources that can be imported and exported, registered by the apps that own them.

An app registers its resource from its AppConfig.ready, so that this app never imports
locations, vehicles or chargers: an import job names its resource by `Importable.name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from fleet_io.resource import FleetResource


@dataclass(frozen=True, slots=True)
class Importable:
    name: str  # the key of ImportJob.resource and of an admin's import_job_resource
    resource: type[FleetResource]
    # What starting or confirming an import needs: the permissions of every model it writes
    # (the charger import also reshapes EVSEs and sets configuration keys).
    permissions: tuple[str, ...]
    changelist: str  # the admin URL name of the model's list, e.g. "admin:app_model_changelist"


_registry: dict[str, Importable] = {}


def register(importable: Importable) -> None:
    _registry[importable.name] = importable


def get(name: str) -> Importable:
    try:
        return _registry[name]
    except KeyError:
        raise ImproperlyConfigured(f"No fleet resource is registered as {name!r}.") from None


def is_registered(name: str) -> bool:
    return name in _registry


def may_import(user: Any, name: str) -> bool:
    """Whether `user` may start or confirm an import of the resource registered as `name`.

    (`Any`: request.user is typed as AbstractBaseUser, which has no has_perms.)"""
    return bool(user.has_perms(get(name).permissions))
