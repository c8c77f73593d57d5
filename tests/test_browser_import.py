"""A charger import through the admin in headless Chromium: upload, preview, confirm,
progress bar, result counts. Screenshots of each page go to test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chargers.models import Charger
from tests.browser import ARTIFACTS, LAYOUT_PROBLEMS, NEEDS_CHROMIUM, chromium
from tests.cast import make_location

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    NEEDS_CHROMIUM,
]


def fleet_csv(path: Path, count: int) -> Path:
    rows = [f"WEB-{n:03d},Depot,AC,22,2*Type2:11,ws://127.0.0.1:9000/ocpp" for n in range(count)]
    path.write_text(
        "charge_point_id,location,power_type,max_power_kw,evses,csms_url\n" + "\n".join(rows)
    )
    return path


def test_an_admin_imports_chargers_with_a_preview_and_a_progress_bar(
    live_server, django_user_model, tmp_path
):
    from playwright.sync_api import expect

    # The ORM is used before and after Playwright's event loop runs, never inside it.
    django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    make_location("Depot")
    csv_file = fleet_csv(tmp_path / "fleet.csv", 40)

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "pw-admin-1")
        page.click("input[type=submit]")
        page.goto(f"{live_server.url}/admin/chargers/charger/import/")
        page.screenshot(path=ARTIFACTS / "import-1-upload.png", full_page=True)

        page.set_input_files("#id_import_file", str(csv_file))
        page.select_option("#id_format", label="csv")
        page.click("input[type=submit][value=Submit]")
        expect(page.locator("table.import-preview")).to_contain_text("WEB-039")
        # A column per field: the table scrolls in its own box, the page does not (it was
        # 3,686 px wide at 1,366).
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= page.viewport_size["width"], page_width
        page.screenshot(path=ARTIFACTS / "import-2-preview.png", full_page=True)

        page.click("input[name=confirm]")
        expect(page).to_have_url(re.compile(r"/imports/jobs/\d+/$"))
        expect(page.locator("#import-progress")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "import-3-progress.png", full_page=True)
        expect(page.locator("#import-result")).to_have_text("Import finished.", timeout=20_000)
        expect(page.locator("#count-created")).to_have_text("40")
        expect(page.locator("#count-failed")).to_have_text("0")
        # No note, no box (the admin's .errornote showed an empty red one).
        expect(page.locator("#import-note")).to_be_hidden()
        assert page.locator("#import-progress").get_attribute("value") == "40"
        page.screenshot(path=ARTIFACTS / "import-4-result.png", full_page=True)
        # On a phone the job's page fits too (the bar was 30em wide: the page scrolled).
        page.set_viewport_size({"width": 390, "height": 900})
        assert page.evaluate(LAYOUT_PROBLEMS) == []
        page.screenshot(path=ARTIFACTS / "import-4-result-390.png", full_page=True)
        browser.close()

    assert Charger.objects.filter(charge_point_id__startswith="WEB-").count() == 40
