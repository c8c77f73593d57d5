"""Top costs of a py-spy "raw" (collapsed stacks) profile: self and inclusive time.

    python bench/fleet.py --chargers 2000 --sample-interval 1 --duration 30 \\
        --profile /tmp/worker.txt --profile-format raw
    python bench/profile_top.py /tmp/worker.txt [--top 30] [--match simulator/]

Inclusive time counts a function once per sample even when it recurses. --match keeps only
frames whose file contains the text (e.g. simulator/ for the engine's own functions).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (to/file.py)' (the line dropped, path shortened)."""
    found = FRAME.match(frame)
    if not found:
        return frame
    parts = found["file"].split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif len(parts) > 2:
        parts = parts[-2:]
    return f"{found['func']} ({'/'.join(parts)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only frames whose file contains this")
    args = parser.parse_args(argv)
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    with open(args.path) as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            total += count
            frames = [
                short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))
            ]
            if not frames:
                continue
            own[frames[-1]] += count
            for frame in set(frames):
                if args.match in frame:
                    inclusive[frame] += count
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples\n\nself time:")
    for frame, count in own.most_common(args.top):
        print(f"  {count / total:6.1%}  {frame}")
    print("\ninclusive time:")
    for frame, count in inclusive.most_common(args.top):
        print(f"  {count / total:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
