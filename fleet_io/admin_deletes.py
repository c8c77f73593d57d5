"""The admin's "are you sure?" page for deleting many rows: counted, not listed one by one.

Django's confirmation lists every row the deletion reaches, each with a link, nested under
what it belongs to. For a charger that is some 60 rows (EVSEs, configuration keys, logs):
deleting 10,000 chargers built a 61 MB page in 85 s of CPU and 2 GB of memory (measured,
bench/RESULTS.md, session 38), in the process that also runs the fleet, and did it again
when the deletion was confirmed. Past `SHOWN` selected rows the page lists the first
`SHOWN` as Django does and counts the whole selection, model by model, without building a
Python object for each row that is deleted without one.

One object's delete page can be as large: a location that 10,000 chargers stand at lists
each of them as a protected row (nothing is deleted), a charger after a long run its
thousands of transactions. Past `LISTED` rows, or `SHOWN` protected ones, that page names
the object and counts the rest too. What protects a deletion is always listed up to
`SHOWN` and counted past it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import get_deleted_objects
from django.db import router
from django.db.models import Model, ProtectedError, QuerySet, RestrictedError
from django.db.models.deletion import Collector
from django.http import HttpRequest
from django.utils.text import capfirst

#: Past this many selected rows, the confirmation lists this many and counts the rest.
SHOWN = 100
#: Past this many rows in all, one object's delete page counts them instead of listing them.
LISTED = 1_000


class CountedDeletes(admin.ModelAdmin):  # a mixin, for any model
    """A ModelAdmin whose delete confirmation (the action, or the delete page) stays small
    and quick however many rows are selected; what would be deleted is said the same way."""

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        if not isinstance(objs, QuerySet):  # one object, from its delete page
            return self._one_object(list(objs), request)
        selected = objs.count()
        if selected <= SHOWN:
            return super().get_deleted_objects(objs, request)
        # The first rows as Django shows them, then a line for the others.
        listed, _, perms_needed, _ = get_deleted_objects(
            list(objs[:SHOWN]), request, self.admin_site
        )
        opts = objs.model._meta
        listed.append(f"… and {selected - SHOWN:,} more {opts.verbose_name_plural}, counted above")
        return self._summed(objs, request, listed, perms_needed)

    def _one_object(
        self, objs: list[Model], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """Django's full page while it stays small; past that, the object and the counts."""
        model = type(objs[0])
        rows = model._default_manager.filter(pk__in=[obj.pk for obj in objs])
        counts, protected = self._counted(rows)
        if sum(counts.values()) <= LISTED and len(protected) <= SHOWN:
            return super().get_deleted_objects(objs, request)
        listed: list[Any] = [f"{capfirst(model._meta.verbose_name)}: {obj}" for obj in objs]
        return self._summed(rows, request, listed, set(), (counts, protected))

    def _summed(
        self,
        objs: QuerySet[Any],
        request: HttpRequest,
        listed: list[Any],
        perms_needed: set[str],
        counted: tuple[Counter[type[Model]], list[str]] | None = None,
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        counts, protected = counted or self._counted(objs)
        for model in counts:
            model_admin = self.admin_site._registry.get(model)
            if model_admin is not None and not model_admin.has_delete_permission(request):
                perms_needed.add(str(model._meta.verbose_name))
        model_count = {str(model._meta.verbose_name_plural): n for model, n in counts.items() if n}
        return listed, model_count, perms_needed, protected

    @staticmethod
    def _counted(objs: QuerySet[Any]) -> tuple[Counter[type[Model]], list[str]]:
        """Rows per model that deleting `objs` deletes, as `QuerySet.delete` collects them
        (rows without signals or dependants are counted in the database, not loaded),
        and what protects any of them (then nothing is deleted): the first `SHOWN`, and
        a line counting the others."""
        collector = Collector(using=router.db_for_write(objs.model), origin=objs)
        counts: Counter[type[Model]] = Counter()
        try:
            # A queryset, as QuerySet.delete passes it (the stubs say a sequence): rows
            # that need no Python object are then counted, not loaded.
            collector.collect(objs)  # type: ignore[arg-type]
        except (ProtectedError, RestrictedError) as exc:
            blocking = list(
                exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
            )
            shown = [f"{capfirst(obj._meta.verbose_name)}: {obj}" for obj in blocking[:SHOWN]]
            if len(blocking) > SHOWN:
                shown.append(f"… and {len(blocking) - SHOWN:,} more")
            return counts, shown
        for model, instances in collector.data.items():
            counts[model] += len(instances)
        for rows in collector.fast_deletes:
            counts[rows.model] += rows.count()
        return counts, []
