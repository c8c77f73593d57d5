#!/usr/bin/env python
"""Django's command-line utility for ChargeSim."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    if not any(arg.startswith("--settings") for arg in sys.argv[1:]):
        # Read the settings now: a bad environment variable (CHARGESIM_TICK_SECONDS=abc)
        # is one line naming it, not the last line of a traceback. Exit 2, as for a bad
        # option: nothing ran (`runscenario`'s 1 says a CSMS failed its checks).
        try:
            settings.INSTALLED_APPS  # noqa: B018  # the first read loads the module
        except ImproperlyConfigured as exc:
            print(f"Settings: {exc}", file=sys.stderr)
            sys.exit(2)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
