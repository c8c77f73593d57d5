"""The scaled-out mode's fence: what checking a batch's chargers against their claims costs.

    python bench/fence_check.py [--chargers 2000] [--repeat 200]
    DATABASE_URL=postgres://... python bench/fence_check.py    (a throwaway database)

With several workers, each write of a worker's checkpoint first asks whether any charger
was claimed since its last write (`RuntimeState.objects.claimed_since`: the claims
version, share-locked on PostgreSQL), and which of them another worker claimed, so that a
worker that stalled while its charger moved to another shard writes nothing more of it.
This times that question alone, in a transaction as the writer asks it, beside a
transaction with one small query (what the question adds to a write is the difference):

- unchanged: nothing claimed since (every write but the few after a claim);
- after a claim: another engine just claimed `--claimed` chargers.

Figures (the last line is one JSON object): microseconds per write, the median of
`--repeat` transactions; and the database's vendor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from fleet import create_fleet, prepare_database, say, setup_django
from in_process import throwaway_var_dir  # bench/ is the script's directory


def run(n: int, claimed: int, repeat: int) -> dict[str, Any]:
    from django.db import connection, transaction
    from django.utils import timezone

    from chargers.models import Charger, EngineLease, RuntimeState

    create_fleet(n, "ws://127.0.0.1:1/ocpp", 60)
    pks = list(Charger.objects.order_by("pk").values_list("pk", flat=True))
    mine = EngineLease.objects.stamp(None, timezone.now())
    other = EngineLease.objects.stamp(None, timezone.now())
    RuntimeState.objects.claim(pks, mine)
    seen, _ = RuntimeState.objects.claimed_since(None, mine)

    def ask(since: int) -> tuple[float, set[int]]:
        started = time.perf_counter()
        with transaction.atomic():
            _, found = RuntimeState.objects.claimed_since(since, mine)
        return time.perf_counter() - started, found

    def empty() -> float:
        started = time.perf_counter()
        with transaction.atomic():
            Charger.objects.filter(pk=pks[0]).exists()  # a write's transaction has a query
        return time.perf_counter() - started

    baseline = [empty() for _ in range(repeat)]
    unchanged = [ask(seen)[0] for _ in range(repeat)]
    RuntimeState.objects.claim(pks[:claimed], other)
    after = []
    for _ in range(repeat):
        took, found = ask(seen)
        assert len(found) == claimed
        after.append(took)
    return {
        "chargers": n,
        "claimed": claimed,
        "vendor": connection.vendor,
        "us_transaction_with_one_query": round(statistics.median(baseline) * 1e6, 1),
        "us_unchanged": round(statistics.median(unchanged) * 1e6, 1),
        "us_after_a_claim": round(statistics.median(after) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=2000, metavar="N")
    parser.add_argument("--claimed", type=int, default=10, metavar="K")
    parser.add_argument("--repeat", type=int, default=200, metavar="R")
    args = parser.parse_args(argv)
    setup_django(throwaway_var_dir("chargesim-fence-"))
    prepare_database()
    figures = run(args.chargers, min(args.claimed, args.chargers), args.repeat)
    say(
        ", ".join(f"{k}: {v}" for k, v in figures.items() if k.startswith("us_"))
        + f" ({figures['vendor']})"
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
