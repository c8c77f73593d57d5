"""Set up a bench that runs the simulator's engine in its own process, without a database.

`tests.engine` imports the runtime, and with it the Django models: Django must be set up
first, on a throwaway var directory (nothing is written there unless a bench asks).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def in_process(root: Path) -> None:
    """Import the checkout at `root` (the working directory: a copy of a bench script then
    measures an older commit just as well) with Django ready."""
    sys.path.insert(0, str(root))
    os.environ.setdefault("CHARGESIM_VAR_DIR", tempfile.mkdtemp())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
