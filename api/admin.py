from __future__ import annotations

import weakref
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from api.models import ApiToken

# The token save_model issued, until response_add shows it in the same request's answer.
_issued: weakref.WeakKeyDictionary[HttpRequest, str] = weakref.WeakKeyDictionary()


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created", "last_used", "expires", "revoked"]
    list_filter = [("revoked", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "name", "expires")
        return ("user", "name", "prefix", "created", "last_used", "expires", "revoked")

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return []
        # A token belongs to one user for its whole life: issue a new one instead.
        return ["user", "prefix", "created", "last_used", "revoked"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        row, token = ApiToken.objects.issue(obj.user, obj.name, expires=obj.expires)
        obj.pk, obj.prefix, obj.digest, obj.created = row.pk, row.prefix, row.digest, row.created
        obj._state.adding = False
        # Shown once, by response_add, and kept nowhere: not in the session, not in a
        # message (the messages cookie is signed, not encrypted).
        _issued[request] = token

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        token = _issued.pop(request, None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "token": token,
            "row": obj,
        }
        # The admin's views already answer with Cache-Control: no-store.
        return TemplateResponse(request, "admin/api/apitoken/created.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        live = list(queryset.filter(revoked__isnull=True))
        for row in live:
            row.revoke()
        self.message_user(
            request, f"Revoked {len(live)} token{'s' if len(live) != 1 else ''}.", messages.SUCCESS
        )
