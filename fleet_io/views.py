"""Pages of an import job: progress and result, a JSON status to poll, and confirmation.

A job is its owner's (or a superuser's): anyone else gets 404, as if it did not exist.
Confirming writes the file, so it needs the permissions of every model the import writes.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from fleet_io import formats_doc, jobs, registry
from fleet_io.models import ImportJob, NotConfirmable
from fleet_io.registry import may_import


def _status(job: ImportJob) -> dict[str, object]:
    done, total = job.progress()
    return {
        "status": job.status,
        "finished": job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED),
        "done": done,
        "total": total,
        "created": job.created_count,
        "updated": job.updated_count,
        "unchanged": job.unchanged_count,
        "failed": job.failed_count,
        "problems": job.problem_count,
        "note": job.waiting_note(),
    }


def _own_job(request: HttpRequest, pk: int, **lookups: object) -> ImportJob:
    # The file's bytes are loaded only where they are used (a deferred field loads on access).
    visible = ImportJob.objects.visible_to(request.user).defer("data")
    return get_object_or_404(visible, pk=pk, **lookups)


@staff_member_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _own_job(request, pk)
    changelist = registry.get(job.resource).changelist
    context = {
        **admin.site.each_context(request),
        "title": f"{'Check' if job.dry_run else 'Import'} of {job.file_name}",
        "job": job,
        "state": _status(job),
        "can_confirm": may_import(request.user, job.resource),
        "changelist_url": reverse(changelist),
        "import_url": reverse(changelist.replace("_changelist", "_import")),
    }
    return TemplateResponse(request, "fleet_io/job.html", context)


@staff_member_required
def job_status(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(_status(_own_job(request, pk)))


@require_POST
@staff_member_required
def job_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    """Import a file whose background check found no problems."""
    checked = _own_job(request, pk, dry_run=True)
    if not may_import(request.user, checked.resource):
        raise PermissionDenied("Importing this file needs the add and change permissions.")
    try:
        job = jobs.confirm(checked, request.user.pk)
    except NotConfirmable as exc:
        messages.warning(request, str(exc))
        return redirect(checked)
    return redirect(job)


@login_required
def import_formats(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Import and export formats",
        "document": formats_doc.import_formats_html(),
    }
    return TemplateResponse(request, "fleet_io/import_formats.html", context)


@login_required
def import_sample(request: HttpRequest, name: str) -> FileResponse:
    path = formats_doc.sample_file(name)
    if path is None:
        raise Http404("No such sample file.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
