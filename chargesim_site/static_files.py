"""Static files served by the application itself (WhiteNoise), DEBUG on or off.

Daphne serves no files of its own; WhiteNoise answers /static/ in the middleware, which
Django's ASGI handler runs like any other.
"""

from __future__ import annotations

import os

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, without its warning about a STATIC_ROOT that `collectstatic` never
    filled: then the finders serve the same files (WHITENOISE_USE_FINDERS)."""

    def add_files(self, root: str, prefix: str | None = None) -> None:
        unfilled = os.fspath(root) == os.fspath(self.static_root) and not os.path.isdir(root)
        if unfilled and not self.autorefresh:
            return
        super().add_files(root, prefix)
