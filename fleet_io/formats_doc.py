"""docs/import-formats.md, the one description of the import files, as a page of the app:
the admin's import form links to it (a path in the repository opens nowhere for an
operator). Rendered from the file at each request, so the page never differs from it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from markdown_it import MarkdownIt


def docs_dir() -> Path:
    return Path(settings.BASE_DIR) / "docs"


def import_formats_html() -> str:
    """The document as HTML. Its own HTML is escaped, not passed through (`html` off)."""
    text = (docs_dir() / "import-formats.md").read_text(encoding="utf-8")
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def sample_file(name: str) -> Path | None:
    """One of the sample files the document links to (docs/samples/), by its exact name;
    None for any other name (no path reaches beyond that folder)."""
    folder = docs_dir() / "samples"
    found = {path.name: path for path in folder.iterdir() if path.is_file()}
    return found.get(name)
