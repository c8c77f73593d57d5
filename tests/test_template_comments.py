"""Django's `{# ... #}` comment is one line only: one spread over two lines is no comment,
and the page shows it as text (the charger page showed the recent-transactions template's
note to every visitor). Longer notes use {% comment %}."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_template_has_a_comment_spread_over_lines():
    templates = sorted(ROOT.glob("templates/**/*.html")) + sorted(
        ROOT.glob("*/templates/**/*.html")
    )
    assert templates
    broken = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in templates
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.count("{#") > line.count("#}")
    ]
    assert broken == []


def test_the_charger_page_shows_no_template_comment(admin_client_logged_in):
    from tests.cast import make_charger

    charger = make_charger("TPL-1")
    page = admin_client_logged_in.get(f"/chargers/{charger.pk}/").content.decode()
    assert "{#" not in page and "#}" not in page
