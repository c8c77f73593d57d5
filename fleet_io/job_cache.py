"""Where a running import job keeps its progress and heartbeat for other processes to read.

Scaled out, that is the default cache (Redis), which the web processes and the Celery
workers share. Embedded, the default cache is the memory of the one process, which a
killed process takes with it: a job it was running was then found lost with "0 / 3,000
rows", however far it had got. Nor can a job write its progress to the database: its
import holds SQLite's write lock until it commits. So embedded, the progress and the
heartbeat go to a small file cache in the var directory, beside the database, which
outlives the process (and holds nothing but row counts and a flag).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection

from simulator.contract.failures import layer_errors

# Entries are short-lived (a heartbeat, a progress while running); the few left by a
# killed job expire on their own, and FileBasedCache culls past this many.
MAX_ENTRIES = 1000


def job_cache() -> BaseCache:
    """The default cache when other processes share it, else the var directory's."""
    default = caches["default"]
    if not isinstance(default, LocMemCache):
        return default
    # Jobs are numbered per database: two databases in one var directory (a test's, the
    # development one) must not read each other's job 1.
    database = hashlib.sha256(str(connection.settings_dict["NAME"]).encode()).hexdigest()[:16]
    return _file_cache(str(Path(settings.VAR_DIR) / "import-jobs"), database)


@cache
def _file_cache(location: str, prefix: str) -> FileBasedCache:
    return FileBasedCache(location, {"KEY_PREFIX": prefix, "OPTIONS": {"MAX_ENTRIES": MAX_ENTRIES}})


def cache_errors() -> tuple[type[BaseException], ...]:
    """The errors of a shared cache that cannot be reached (Redis away)."""
    return layer_errors()
