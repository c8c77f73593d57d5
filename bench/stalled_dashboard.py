"""A dashboard page that stops reading its socket: does the web process's memory grow?

    .venv/bin/python bench/stalled_dashboard.py [--chargers 200] [--seconds 120] [--every 5]
                                                [--page fleet|charger] [--keep-sending 0]

One `runsimulator --demo` process (web, worker and the built-in CSMS in one, as `make run`
runs it) on a throwaway SQLite file, every demo charger charging (`--demo-share 1`), so
that every watched charger changes, and is published, twice a second. Then:

1. a page's socket that reads (the websockets library, logged in with the admin's
   session cookie, watching every charger as the fleet page's first page does) for
   `--every` seconds: the frames and bytes a page receives per second;
2. the stalled page: the same socket, its receive buffer made small (SO_RCVBUF 4 KiB) and
   the library's incoming queue one message deep, that sends its `watch` and then never
   reads again, as a frozen tab or a sleeping laptop whose TCP connection is still open.
   With `--keep-sending S` it sends its `watch` again every S seconds while it does not
   read (a page whose user keeps clicking over a link too slow for what it receives).

Every `--every` seconds it prints the web process's RSS (VmRSS), whether the server still
holds the stalled connection (its side of it in /proc/net/tcp) and the bytes queued in the
server's kernel send buffer for it. At the end the stalled page reads again: how its socket
ended (close code and reason), and the frames and bytes it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = "bench-stalled-dashboard"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the page stalls")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--page", choices=("fleet", "charger"), default="fleet")
    parser.add_argument(
        "--keep-sending", type=float, default=0.0, help="send a watch every S s while stalled"
    )
    return parser.parse_args()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def server_side(server_port: int, client_port: int) -> tuple[bool, int]:
    """Whether the server's end of the connection from `client_port` is established, and
    the bytes in its kernel send queue (what Twisted handed over and the client has not
    taken): /proc/net/tcp, as `ss` reads it."""
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            tx_queue = int(fields[4].split(":")[0], 16)
            return fields[3] == "01", tx_queue  # 01: ESTABLISHED
    return False, 0


async def open_page(url: str, session: str, host: str, rcvbuf: int | None = None) -> Any:
    from websockets.asyncio.client import connect

    sock = socket.socket()
    if rcvbuf is not None:  # before connect(): the window the client offers follows it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", int(host.rsplit(":", 1)[1])))
    return await connect(
        url,
        sock=sock,
        additional_headers={"Origin": f"http://{host}", "Cookie": f"sessionid={session}"},
        max_queue=1 if rcvbuf is not None else 16,
        max_size=None,
        # The library's own keepalive would close a socket it does not read after 40 s
        # (its ping's answer waits unread): only the server's behaviour is measured.
        ping_interval=None,
    )


async def measure(args: argparse.Namespace, sim: Any, port: int, pks: list[int]) -> None:
    from websockets.exceptions import ConnectionClosed

    from tests.web_session import log_in

    host = f"127.0.0.1:{port}"
    session = log_in(host, PASSWORD)
    path = "/ws/fleet/" if args.page == "fleet" else f"/ws/chargers/{pks[0]}/"
    url = f"ws://{host}{path}"
    watch = json.dumps({"type": "watch", "chargers": pks[:200]})
    pid = sim.proc.pid

    async with await open_page(url, session, host) as reader:
        await reader.send(watch)
        frames = size = 0
        begin = time.monotonic()
        while (left := args.every - (time.monotonic() - begin)) > 0:
            try:
                message = await asyncio.wait_for(reader.recv(), left)
            except TimeoutError:
                break
            frames += 1
            size += len(message)
        took = time.monotonic() - begin
    print(
        f"a reading {args.page} page gets {frames / took:.1f} frames/s, "
        f"{size / took / 1024:.1f} KiB/s ({frames} frames in {took:.1f} s)",
        flush=True,
    )

    stalled = await open_page(url, session, host, rcvbuf=4096)
    client_port = stalled.transport.get_extra_info("sockname")[1]
    await stalled.send(watch)
    # The library reads in the background until its queue is full, then stops reading the
    # socket: from here on nothing is read, pings included.
    begin = time.monotonic()
    last_send = begin
    print(f"{'s':>6} {'web RSS MiB':>12} {'held':>5} {'kernel send-q KiB':>18}", flush=True)
    while (now := time.monotonic()) - begin < args.seconds:
        held, queued = server_side(port, client_port)
        print(
            f"{now - begin:6.0f} {rss_kib(pid) / 1024:12.1f} {'yes' if held else 'no':>5} "
            f"{queued / 1024:18.1f}",
            flush=True,
        )
        if args.keep_sending and now - last_send >= args.keep_sending:
            with contextlib.suppress(ConnectionClosed):
                await stalled.send(watch)
            last_send = now
        await asyncio.sleep(min(args.every, args.keep_sending or args.every))
    # Read again for --every seconds (the fleet keeps publishing, so a page never runs
    # out of frames): what had piled up for it, and how its socket ended if it did.
    frames = size = 0
    how = "still open"
    begin = time.monotonic()
    try:
        while (left := args.every - (time.monotonic() - begin)) > 0:
            message = await asyncio.wait_for(stalled.recv(), left)
            frames += 1
            size += len(message)
    except ConnectionClosed as closed:
        how = f"closed: {closed.rcvd.code} {closed.rcvd.reason!r}" if closed.rcvd else "dropped"
    except TimeoutError:
        pass
    await stalled.close()
    print(f"the stalled page, reading again: {how}; got {frames} frames, {size / 1024:.0f} KiB")
    print(f"web RSS at the end: {rss_kib(pid) / 1024:.1f} MiB", flush=True)


def main() -> None:
    args = parse()
    from tests.browser import demo_site
    from tests.process import run_manage

    with (
        tempfile.TemporaryDirectory(prefix="stalled-dashboard-") as tmp,
        demo_site(Path(tmp), PASSWORD, args.chargers, share=1) as site,
    ):
        port = int(site.url.rsplit(":", 1)[1])
        listed = run_manage(
            Path(tmp),
            "shell",
            "-c",
            "from chargers.models import Charger; "
            "print(list(Charger.objects.order_by('pk').values_list('pk', flat=True)))",
        )
        pks = json.loads(listed.stdout.strip().splitlines()[-1])
        print(f"{len(pks)} chargers charging; web process pid {site.sim.proc.pid}", flush=True)
        asyncio.run(measure(args, site.sim, port, pks))


if __name__ == "__main__":
    main()
