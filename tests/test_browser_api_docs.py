"""The API's interactive documentation in headless Chromium: Swagger UI renders every
operation from the project's own OpenAPI document, with no error of its parser."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    NEEDS_CHROMIUM,
]


def test_the_docs_page_renders_every_operation(live_server, django_user_model):
    from playwright.sync_api import expect

    # The ORM is used before Playwright's event loop runs, never inside it.
    django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-docs-1")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        failures: list[str] = []
        page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: failures.append(str(e)))
        page.goto(f"{live_server.url}/admin/login/?next=/api/v1/docs")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "pw-docs-1")
        page.click("input[type=submit]")
        # The page fetches the schema (half a second of CPU to make) and renders every
        # operation: on a busy machine that outlasted Playwright's default 5 s once.
        title = page.locator(".swagger-ui .info .title")
        expect(title).to_contain_text("ChargeSim API", timeout=30_000)
        operations = page.locator(".swagger-ui .opblock")
        expect(operations.first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "api-docs-1280.png")
        assert page.locator(".swagger-ui .errors-wrapper").count() == 0
        count = operations.count()
        paths = page.evaluate(
            """async () => {
                const spec = await (await fetch("/api/v1/openapi.json")).json();
                return Object.values(spec.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
            }"""
        )
        assert count == paths, (count, paths)
        assert failures == []
