"""The admin side of fleet import and export, shared by locations, vehicles and chargers.

django-import-export's ImportExportModelAdmin with three changes:
* CSV, JSON (and XLSX with openpyxl) only, read through `fleet_io.file_formats` so that a
  wrong encoding or delimiter gets a message rather than an exception name;
* a confirmed import runs as an `ImportJob` (Celery, or a thread in embedded mode) with a
  progress bar and a result page, instead of inside the request;
* a file larger than CHARGESIM_IMPORT_PREVIEW_ROWS (default 2,000) is not previewed row by
  row in the request: a background dry run checks it and reports counts and problems.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from import_export.admin import ImportExportModelAdmin
from import_export.tmp_storages import CacheStorage

from fleet_io import jobs, registry
from fleet_io.file_formats import CSV, FileProblem, fleet_formats, typed_cells
from fleet_io.fleet_changes import Applied, notes, notify_fleet_change
from fleet_io.models import ImportJob


class PreviewStorage(CacheStorage):
    """Where a previewed file waits for its confirmation: the cache (in memory embedded,
    Redis scaled out), for an hour, under a random name.

    django-import-export's default writes it to the server's temp folder, where a preview
    never confirmed stayed for good, AuthorizationKeys and all, and the confirmation's
    hidden file name could name any file there (read into the import's errors, then
    deleted). A cache entry expires, and its name reaches nothing but other previews, by a
    random 128-bit key."""

    CACHE_LIFETIME = 3600
    CACHE_PREFIX = "chargesim:import-preview:"


def preview_rows() -> int:
    return int(settings.CHARGESIM_IMPORT_PREVIEW_ROWS)


class FleetImportExportAdmin(ImportExportModelAdmin):
    formats = fleet_formats()
    import_template_name = "admin/fleet_io/fleet_import.html"
    tmp_storage_class = PreviewStorage
    #: The name this admin's resource is registered under (fleet_io.registry).
    import_job_resource: str = ""

    def has_import_permission(self, request: HttpRequest) -> bool:
        # django-import-export lets any staff user import unless a permission code is set;
        # an import writes rows of several models, so it needs the permissions of each.
        self._check_import_job_resource()
        return registry.may_import(request.user, self.import_job_resource)

    def _check_import_job_resource(self) -> None:
        if not registry.is_registered(self.import_job_resource):
            raise ImproperlyConfigured(
                f"{type(self).__name__}.import_job_resource names no registered fleet resource."
            )

    def add_data_read_fail_error_to_form(self, form: Any, e: Exception) -> None:
        if isinstance(e, FileProblem):
            form.add_error("import_file", str(e))
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def get_export_data(
        self, file_format: Any, request: HttpRequest, queryset: Any, **kwargs: Any
    ) -> Any:
        # The library's own, but typed cells decided by our formats (`typed_cells`): it
        # looks for its own classes, so JSON and XLSX exports held every number as text.
        if not self.has_export_permission(request):
            raise PermissionDenied
        data = self.get_data_for_export(
            request, queryset, force_native_type=typed_cells(file_format), **kwargs
        )
        exported = file_format.export_data(data)  # our formats are all binary: no encoding
        if isinstance(file_format, CSV):
            # A download from the admin is opened in a spreadsheet: Excel reads a CSV
            # without a byte order mark in the machine's code page ("ZÃ¼rich"). The
            # `export` command writes none, for scripts; every import takes either.
            return "\ufeff" + exported
        return exported

    def export_action(self, request: HttpRequest) -> HttpResponse:
        # The export applies the change list's filters from the query string; one that is
        # not a filter (`?format=json`, a stale bookmark) made django-import-export's view
        # raise, a 500. The change list itself does not fail on it either.
        try:
            return super().export_action(request)
        except IncorrectLookupParameters:
            shown = ", ".join(sorted(request.GET)) or "?"
            messages.error(
                request,
                f"The export was not made: its address has parameters that are not filters "
                f"of this list ({shown}). Choose the filters on the list, then Export.",
            )
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            )

    def import_action(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method == "POST" and self.has_import_permission(request):
            form = self.create_import_form(request)
            if form.is_valid():
                format_class = self.get_import_formats()[int(form.cleaned_data["format"])]
                upload = form.cleaned_data["import_file"]
                data = b"".join(upload.chunks())
                try:
                    rows = len(format_class().create_dataset(data))
                except Exception:
                    rows = 0  # the library's own path reports the reading problem
                if rows > preview_rows():
                    job = self._queue_job(request, data, upload.name, format_class, dry_run=True)
                    return HttpResponseRedirect(job.get_absolute_url())
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None)
        if context is not None and "confirm_form" not in context:
            self._forget_preview(context.get("form"))
        if context is not None and not context.get("fields_list"):
            # The library lists the columns only of a form it read rows with: a file it
            # could not read (its encoding, a header alone) got "This importer will import
            # the following fields:" and nothing, above the message saying what to correct.
            context["fields_list"] = [
                (
                    resource.get_display_name(),
                    [field.column_name for field in resource.get_user_visible_fields()],
                )
                for resource in (
                    resource_class(**self.get_import_resource_kwargs(request=request, **kwargs))
                    for resource_class in self.get_import_resource_classes(request)
                )
            ]
        return response

    def _forget_preview(self, form: Any) -> None:
        """The library keeps every upload for its confirmation, also one it then refuses
        (bad rows, unreadable): that file, AuthorizationKeys and all, waited out the cache's
        hour though nothing could ever confirm it."""
        # The upload itself: a form error about it takes it out of `cleaned_data`.
        files = getattr(form, "files", None) or {}
        name = getattr(files.get("import_file"), "tmp_storage_name", None)
        if name:
            self.get_tmp_storage_class()(
                name=name, encoding=None, read_mode="rb", **self.get_tmp_storage_class_kwargs()
            ).remove()

    @method_decorator(require_POST)
    def process_import(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if not self.has_import_permission(request):
            return super().process_import(request, **kwargs)  # raises PermissionDenied
        confirm_form = self.create_confirm_form(request)
        if not confirm_form.is_valid():
            return super().process_import(request, **kwargs)
        format_class = self.get_import_formats()[int(confirm_form.cleaned_data["format"])]
        storage = self.get_tmp_storage_class()(
            name=confirm_form.cleaned_data["import_file_name"],
            encoding=None,
            read_mode="rb",
            **self.get_tmp_storage_class_kwargs(),
        )
        data = storage.read()
        storage.remove()
        if data is None:  # expired (an hour), or confirmed already
            messages.error(
                request,
                "This preview is no longer kept (an hour after it was made, or it was "
                "confirmed already): choose the file again.",
            )
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_import")
            )
        job = self._queue_job(
            request,
            data,
            confirm_form.cleaned_data["original_file_name"],
            format_class,
            dry_run=False,
        )
        messages.info(request, "The import runs in the background; this page follows it.")
        return HttpResponseRedirect(job.get_absolute_url())

    def say_what_running_chargers_do(
        self,
        request: HttpRequest,
        what: str,
        *,
        locations: tuple[int, ...] = (),
        vehicles: tuple[int, ...] = (),
    ) -> None:
        """After the save commits: `what` the running chargers do with a change of rows every
        worker uses (a location's, a vehicle model's), once a worker got it, or that none
        runs. A charger's own save says it per charger; these said only "changed
        successfully". The save's own signal notified the change: this joins its batch."""

        def report(applied: Applied) -> None:
            if (applied.answered or applied.received) and not applied.unsent:
                messages.info(request, what)
            for reached, text in notes(applied):
                messages.add_message(request, messages.INFO if reached else messages.WARNING, text)

        notify_fleet_change(locations=locations, vehicles=vehicles, report=report)

    def _queue_job(
        self, request: HttpRequest, data: bytes, name: str, format_class: type, *, dry_run: bool
    ) -> ImportJob:
        self._check_import_job_resource()
        file_format = format_class().get_extension()
        job = ImportJob.objects.create(
            resource=self.import_job_resource,
            file_name=name[:255],
            file_format=file_format,
            data=data,
            dry_run=dry_run,
            created_by_id=request.user.pk,
        )
        jobs.start(job)
        return job
