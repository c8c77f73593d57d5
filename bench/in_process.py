"""Set up a bench that runs the simulator's engine in its own process, without a database.

`tests.engine` imports the runtime, and with it the Django models: Django must be set up
first, on a throwaway var directory (nothing is written there unless a bench asks).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def throwaway_var_dir(prefix: str = "chargesim-bench-") -> Path:
    """A temporary var directory (the bench's database, its secret key), removed when the
    process exits: each run left one behind in /tmp, a fleet's database at 5,000 chargers."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def in_process(root: Path) -> None:
    """Import the checkout at `root` (the working directory: a copy of a bench script then
    measures an older commit just as well) with Django ready."""
    sys.path.insert(0, str(root))
    if "CHARGESIM_VAR_DIR" not in os.environ:
        os.environ["CHARGESIM_VAR_DIR"] = str(throwaway_var_dir())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
