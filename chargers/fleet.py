"""Writing many chargers at once, with their EVSEs and OCPP configuration.

`Charger.save()` gives a new charger its configuration defaults one charger at a time;
these functions do the same for thousands in a handful of bulk queries, so that an
imported or generated charger is indistinguishable from one made in the admin
(NumberOfConnectors equal to its EVSE count included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from chargers.bulk import execute_rows
from chargers.deadlocks import retrying_races
from chargers.evse_layout import EvseSpec
from chargers.models import Charger, ConfigurationKey, Evse
from chargers.sealed import SealedTextField
from fleet_io.fleet_changes import notify_fleet_change
from simulator.contract import config_keys

BATCH = 2000


@dataclass
class ChargerPlan:
    """A charger to write, with what comes with it. `evses` None keeps the stored EVSEs."""

    charger: Charger
    evses: Sequence[EvseSpec] | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)


def default_evses(charger: Charger) -> list[EvseSpec]:
    connector = (
        Evse.ConnectorType.CCS2
        if charger.power_type == Charger.PowerType.DC
        else Evse.ConnectorType.TYPE2
    )
    return [EvseSpec(connector, charger.max_power_kw)]


def _config_values(
    charger_id: int, count: int | None, overrides: Mapping[str, str], *, defaults: bool = True
) -> Iterable[dict[str, Any]]:
    """Configuration rows: the defaults for `count` EVSEs (new chargers) or only
    NumberOfConnectors when the EVSEs change (updates), then the overrides."""
    values = config_keys.defaults(count or 1) if defaults else {}
    if count is not None:
        values["NumberOfConnectors"] = str(count)
    values |= dict(overrides)
    for key, value in values.items():
        spec = config_keys.KEYS.get(key)
        yield {
            "charger_id": charger_id,
            "key": key,
            "value": value,
            "readonly": bool(spec and spec.readonly),
        }


def _evse_values(charger_id: int, specs: Sequence[EvseSpec]) -> Iterable[dict[str, Any]]:
    for n, spec in enumerate(specs, start=1):
        yield {
            "charger_id": charger_id,
            "connector_id": n,
            "connector_type": spec.connector_type,
            "max_power_kw": spec.max_power_kw,
        }


def insert_rows(
    model: type[models.Model],
    rows: Iterable[dict[str, Any]],
    *,
    conflict: Sequence[str] = (),
    update: Sequence[str] = (),
) -> None:
    """INSERT many rows without model instances: ~30 configuration keys per charger make
    bulk_create's per-object instances the slowest part of a large import (see
    bench/RESULTS.md). Columns not given take the model field's default; values other
    than plain str/int/float/bool/None go through the field's get_db_prep_save."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    tail = ""
    if conflict:
        tail = f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET " + ", ".join(
            f"{quote(c)} = excluded.{quote(c)}" for c in update
        )
    defaults = {f.attname: f.get_default() for f in fields}
    execute_rows(
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(f.column) for f in fields)}) SELECT * FROM {{rows}} WHERE true{tail}",
        [tuple(_prep(f, row.get(f.attname, defaults[f.attname])) for f in fields) for row in rows],
        [str(f.db_type(connection)) for f in fields],
    )


PLAIN = (str, int, float, bool, type(None))


def _prep(field: models.Field, value: Any) -> Any:
    # Plain values go to the driver as they are: preparing 300,000 of them costs seconds.
    # Not a sealed one: its text must never reach the database as it is.
    if type(value) in PLAIN and not isinstance(field, SealedTextField):
        return value
    return field.get_db_prep_save(value, connection)


def update_rows(model: type[models.Model], objs: Sequence[models.Model], attnames: Sequence[str]):
    """UPDATE many rows by primary key with one executemany (bulk_update's CASE WHEN
    statements take seconds for thousands of rows with twenty columns)."""
    fields = [_concrete_field(model, name) for name in attnames]
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET "
        + ", ".join(f"{quote(f.column)} = %s" for f in fields)
        + f" WHERE {quote(model._meta.pk.column)} = %s"
    )
    params = [(*(_prep(f, getattr(obj, f.attname)) for f in fields), obj.pk) for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):  # a reverse relation has no column to update
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return field


@transaction.atomic
def create_chargers(plans: Sequence[ChargerPlan]) -> list[Charger]:
    """Insert new chargers with their EVSEs, configuration defaults and overrides."""
    chargers = Charger.objects.bulk_create([plan.charger for plan in plans], batch_size=BATCH)
    evses: list[dict[str, Any]] = []
    config: list[dict[str, Any]] = []
    for plan, charger in zip(plans, chargers, strict=True):
        specs = plan.evses or default_evses(charger)
        evses += _evse_values(charger.pk, specs)
        config += _config_values(charger.pk, len(specs), plan.overrides)
    insert_rows(Evse, evses)
    insert_rows(ConfigurationKey, config)
    notify_fleet_change((charger.pk, charger.charge_point_id) for charger in chargers)
    return chargers


@transaction.atomic
def update_chargers(plans: Sequence[ChargerPlan], fields: Sequence[str]) -> None:
    """Update existing chargers; reshape their EVSEs (keeping meter registers of the
    connectors that stay) and set the given configuration keys."""
    now = timezone.now()
    for plan in plans:
        plan.charger.updated = now
    fields = [name for name in fields if name not in ("id", "created")]
    update_rows(Charger, [plan.charger for plan in plans], [*fields, "updated"])

    reshaped = [plan for plan in plans if plan.evses is not None]
    stored: dict[int, dict[int, Evse]] = {}
    for start in range(0, len(reshaped), BATCH):
        ids = [plan.charger.pk for plan in reshaped[start : start + BATCH]]
        for evse in Evse.objects.filter(charger_id__in=ids):
            stored.setdefault(evse.charger_id, {})[evse.connector_id] = evse
    new: list[Evse] = []
    changed: list[Evse] = []
    gone: list[int] = []
    for plan in reshaped:
        current = stored.get(plan.charger.pk, {})
        for n, spec in enumerate(plan.evses or (), start=1):
            kept = current.pop(n, None)
            if kept is None:
                new.append(
                    Evse(
                        charger=plan.charger,
                        connector_id=n,
                        connector_type=spec.connector_type,
                        max_power_kw=spec.max_power_kw,
                    )
                )
            elif (kept.connector_type, kept.max_power_kw) != (
                spec.connector_type,
                spec.max_power_kw,
            ):
                kept.connector_type = spec.connector_type
                kept.max_power_kw = spec.max_power_kw
                changed.append(kept)
        gone += [evse.pk for evse in current.values()]

    def delete_gone() -> None:
        for start in range(0, len(gone), BATCH):
            Evse.objects.filter(pk__in=gone[start : start + BATCH]).delete()

    if gone:
        # The running worker may store a car plugged into one of them meanwhile: the
        # delete's foreign-key check, deferred to COMMIT on PostgreSQL, would then fail
        # the whole update (the API's 409, an import's error). Run again alone, in its
        # savepoint, the delete collects that row too, inside an import's transaction too.
        retrying_races(delete_gone)
    Evse.objects.bulk_update(changed, ["connector_type", "max_power_kw"], batch_size=500)
    Evse.objects.bulk_create(new, batch_size=BATCH)

    config: list[dict[str, Any]] = []
    for plan in plans:
        count = None if plan.evses is None else len(plan.evses)
        config += _config_values(plan.charger.pk, count, plan.overrides, defaults=False)
    insert_rows(
        ConfigurationKey,
        config,
        conflict=["charger_id", "key"],
        update=["value", "readonly"],
    )
    notify_fleet_change((plan.charger.pk, plan.charger.charge_point_id) for plan in plans)


def copy_charger(
    template: Charger, charge_point_ids: Sequence[str], location_id: int
) -> list[Charger]:
    """Create chargers like `template` (hardware, CSMS settings, EVSEs, configuration)."""
    specs = [
        EvseSpec(e.connector_type, e.max_power_kw) for e in template.evses.order_by("connector_id")
    ] or default_evses(template)
    overrides = {
        key: value
        for key, value in template.configuration.values_list("key", "value")
        if key != "NumberOfConnectors"
    }
    skip = {"id", "charge_point_id", "serial_number", "location", "created", "updated"}
    values = {
        f.attname: getattr(template, f.attname)
        for f in Charger._meta.concrete_fields
        if f.name not in skip
    }
    plans = [
        ChargerPlan(
            Charger(charge_point_id=cp_id, location_id=location_id, **values), specs, overrides
        )
        for cp_id in charge_point_ids
    ]
    return create_chargers(plans)
