"""Shared helpers of the API tests: a user with a token, and requests that carry it."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from api.models import ApiToken
from tests.cast import make_user


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_with_token(username: str, *codenames: str, **fields: Any) -> tuple[Any, str]:
    """A user with the named permissions (codenames) and a fresh API token of theirs."""
    user = make_user(username, *codenames, **fields)
    _, token = ApiToken.objects.issue(user, f"{username}'s test token")
    return user, token


class TokenClient:
    """Django's test client, every request authenticated with one token and JSON bodies."""

    def __init__(self, token: str) -> None:
        self.client = Client()
        self.headers = bearer(token)

    def get(self, path: str, **query: Any) -> Any:
        return self.client.get(path, query, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)

    def post(self, path: str, data: Any = None) -> Any:
        return self._send("post", path, data)

    def put(self, path: str, data: Any = None) -> Any:
        return self._send("put", path, data)

    def patch(self, path: str, data: Any = None) -> Any:
        return self._send("patch", path, data)

    def upload(self, path: str, **data: Any) -> Any:
        return self.client.post(path, data, headers=self.headers)

    def _send(self, method: str, path: str, data: Any) -> Any:
        send = getattr(self.client, method)
        return send(path, json.dumps(data), content_type="application/json", headers=self.headers)
