"""Daphne serving the site with the API's engine client waiting at most SECONDS for a
result after the acknowledgement, as the API tests shorten its waits in their own process
(`live.client`): a worker that acknowledges an action and answers later is then a shard
that did not answer in time (`unfinished_shards`) seconds into a browser test, rather than
after the minute the web tier waits (`engine_client.RESULT_SECONDS`).

    python -m tests.short_waits SECONDS <daphne's arguments>
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    seconds = float(argv[0])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from daphne.cli import CommandLineInterface

    from api.routers import live
    from chargers.engine_client import EngineClient

    live.client = lambda: EngineClient(result_seconds=seconds)
    CommandLineInterface().run(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
