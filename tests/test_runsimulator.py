"""`runsimulator` as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import signal
import socket
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib import admin

from tests.process import ROOT, ManagePy, free_port, run_manage, wait_for_port

pytestmark = pytest.mark.slow


def test_make_run_serves_the_admin_login_page_and_a_booted_demo_fleet(tmp_path):
    port, csms_port = free_port(), free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--demo",
        "--demo-chargers",
        "3",
        "--port",
        str(port),
        "--csms-port",
        str(csms_port),
    )
    try:
        wait_for_port(port, proc=sim.proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=10) as page:
            assert page.status == 200
            assert "ChargeSim" in page.read().decode()
        sim.wait_for_output("fleet: 3/3 accepted")
        sim.wait_for_output("the connected fleet frozen too")  # gc_policy, on by default
        assert "objects frozen after loading" in sim.output
        assert "Created the first admin account: user 'admin'" in sim.output
        assert (tmp_path / "admin-credentials.txt").exists()
        sim.signal(signal.SIGINT)
        assert sim.wait(30) == 0
        assert "Stopped: 3 chargers saved." in sim.output
    finally:
        sim.stop()


def test_bad_options_are_refused_with_a_clear_message(tmp_path):
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--shard", "3/2")
    assert result.returncode != 0
    assert "K must be within 0..N-1" in result.stderr
    # A value starting with "-" got argparse's "expected one argument" (QA20): ours, as
    # with --shard=-1/2.
    for argv in (["--shard", "-1/2"], ["--shard=-1/2"]):
        result = run_manage(tmp_path, "runsimulator", "--no-web", *argv)
        assert result.returncode != 0
        assert "--shard '-1/2': K must be within 0..N-1" in result.stderr, argv
        assert "expected one argument" not in result.stderr
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--csms-url", "http://x")
    assert "--csms-url must start with ws:// or wss://" in result.stderr
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--status-every", "0")
    assert "--status-every must be more than 0 seconds" in result.stderr


def test_a_connect_rate_that_is_no_rate_is_refused_with_a_clear_message(tmp_path):
    for raw in ("-1", "nan", "100001"):
        result = run_manage(tmp_path, "runsimulator", "--no-web", "--connect-rate", raw)
        assert result.returncode != 0
        assert (
            "--connect-rate must be within 0 and 100,000 chargers a second (0 = all at once)"
            in result.stderr
        ), raw
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--connect-rate", "fast")
    assert result.returncode != 0
    assert "argument --connect-rate: invalid float value: 'fast'" in result.stderr


@pytest.mark.parametrize(
    ("option", "env", "said"),
    [
        (["--connect-rate", "2"], {}, "3 chargers to connect, 2 a second (about 2 s)"),
        ([], {"CHARGESIM_CONNECT_RATE": "4"}, "3 chargers to connect, 4 a second (about 1 s)"),
    ],
)
def test_the_demo_fleet_connects_in_the_ramp_and_the_output_says_so(tmp_path, option, env, said):
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        "3",
        "--csms-port",
        str(free_port()),
        *option,
        env=env,
    )
    try:
        sim.wait_for_output(f"connect ramp: {said}")
        sim.wait_for_output("fleet: 3/3 accepted")
        sim.wait_for_output("connect ramp: 3 chargers started connecting in ")
        sim.signal(signal.SIGINT)
        assert sim.wait(30) == 0
        assert "Stopped: 3 chargers saved." in sim.output
    finally:
        sim.stop()


def test_a_web_port_in_use_stops_the_start_with_a_clear_message(tmp_path):
    """A second simulator on an occupied port said "Admin and dashboard on ..." and exited
    0 after a log line of Daphne's: a script or a supervisor took it for a clean stop."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_manage(tmp_path, "runsimulator", "--port", str(port))
    assert result.returncode != 0
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Admin and dashboard on" not in result.stdout
    # Said before any database work: a first start no longer migrated, seeded and made
    # an admin account only to stop.
    assert "Seeded" not in result.stdout and "admin account" not in result.stdout


def test_a_csms_port_in_use_stops_the_demo_with_a_clear_message(tmp_path):
    """--demo's built-in CSMS on an occupied port: the start failed with a traceback in the
    log, after "Stopped: 0 chargers saved.", and the command exited 0."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_manage(
            tmp_path, "runsimulator", "--demo", "--port", str(free_port()), "--csms-port", str(port)
        )
    assert result.returncode != 0
    assert f"--csms-port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_demo_file_server_listens_on_the_port_given(tmp_path):
    """It took any free port, a new one at every start: a firewall rule or a CSMS under
    test that serves the same firmware URLs could not count on it."""
    files_port = free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        *("--demo", "--no-web", "--demo-chargers", "1"),
        *("--csms-port", str(free_port()), "--csms-files-port", str(files_port)),
    )
    try:
        sim.wait_for_output(
            f"Its file server (firmware, diagnostics) on http://127.0.0.1:{files_port}"
        )
        with pytest.raises(urllib.error.HTTPError) as answer:  # nothing published there
            urllib.request.urlopen(f"http://127.0.0.1:{files_port}/nothing", timeout=10)
        with answer.value as refused:
            assert refused.code == 404
            assert refused.headers["Server"].startswith("ChargeSimFiles/")
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


def test_a_files_port_in_use_stops_the_demo_with_a_clear_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_manage(
            tmp_path,
            "runsimulator",
            *("--demo", "--no-web", "--csms-port", str(free_port())),
            *("--csms-files-port", str(port)),
        )
    assert result.returncode != 0
    assert f"--csms-files-port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_csms_url_the_chargers_could_not_use_is_refused(tmp_path):
    """Only the scheme was checked: a URL with no host, a bad port or a query was written
    into every demo charger, which then retried it forever."""
    for url, says in (
        ("ws:///ocpp", "names no host"),
        ("ws://127.0.0.1:99999/ocpp", "is not a valid URL"),
        ("ws://127.0.0.1:9000/ocpp?token=1", "must not have a query"),
    ):
        result = run_manage(tmp_path, "runsimulator", "--no-web", "--demo", "--csms-url", url)
        assert result.returncode != 0, url
        assert "--csms-url" in result.stderr and says in result.stderr, result.stderr
    assert not (tmp_path / "db.sqlite3").exists()  # refused before anything was written


def test_a_csms_url_without_demo_is_said_to_be_ignored(tmp_path):
    """--csms-url points the demo fleet only: without --demo it was dropped in silence, and
    a user who meant their own fleet to use it saw the chargers dial their own URLs."""
    sim = ManagePy(
        tmp_path, "runsimulator", "--no-web", "--csms-url", f"ws://127.0.0.1:{free_port()}/ocpp"
    )
    try:
        sim.wait_for_output("--csms-url applies to the demo fleet only (--demo): ignored")
        sim.wait_for_output("fleet: 0/0 accepted")
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


def test_the_built_in_csms_options_without_demo_are_said_to_be_ignored(tmp_path):
    """Without --demo there is no built-in CSMS: its port options were dropped in silence,
    and a user who meant to move the CSMS off a busy port saw nothing happen."""
    sim = ManagePy(
        tmp_path, "runsimulator", "--no-web", "--csms-port", "9123", "--csms-control-port", "0"
    )
    try:
        sim.wait_for_output(
            "--csms-port and --csms-control-port concern the built-in CSMS that --demo "
            "starts: ignored without --demo."
        )
        sim.wait_for_output("fleet: 0/0 accepted")
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


def test_the_built_in_csms_options_beside_a_csms_url_are_said_to_be_ignored(tmp_path):
    """--demo --csms-url starts no built-in CSMS: --csms-port and the like were dropped in
    silence, and a user who gave both waited for a CSMS on that port that never came."""
    csms = f"ws://127.0.0.1:{free_port()}/ocpp"  # nothing listens: the fleet keeps dialling
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        "1",
        "--csms-url",
        csms,
        "--csms-port",
        "9123",
        "--no-demo-operations",
    )
    try:
        sim.wait_for_output(
            "--csms-port and --no-demo-operations concern the built-in CSMS, which does not "
            "start when --csms-url points the demo fleet at another: ignored."
        )
        sim.wait_for_output(f"Demo fleet: 1 charger (1 new) -> {csms}")  # not "1 chargers"
        assert "Built-in CSMS listening" not in sim.output
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


def test_an_only_id_that_loads_nothing_is_said(tmp_path):
    """QA: `--only DEMO-0001 DEMO-00002` (a typo) ran the one charger and said nothing of
    the other, which the user meant to run."""
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        "1",
        "--no-demo-operations",
        "--csms-port",
        str(free_port()),
        "--csms-control-port",
        "-1",
        "--only",
        "DEMO-0001",
        "DEMO-00002",
    )
    try:
        sim.wait_for_output("fleet: 1/1 accepted")
        assert (
            "--only: no enabled charger of shard 0/1 has the id DEMO-00002: not loaded"
        ) in sim.output
        assert "DEMO-0001: not loaded" not in sim.output and "DEMO-0001," not in sim.output
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


def test_a_port_out_of_range_is_refused_before_anything_starts(tmp_path):
    """--csms-port 70000 failed the start with an OverflowError's traceback and exit 0;
    --port 70000 said "cannot listen on bind(): port must be 0-65535"."""
    for option in ("--port", "--csms-port"):
        result = run_manage(tmp_path, "runsimulator", "--demo", option, "70000")
        assert result.returncode != 0, option
        assert f"{option} must be within 1 and 65535." in result.stderr, result.stderr
    result = run_manage(tmp_path, "runsimulator", "--demo", "--csms-files-port", "70000")
    assert result.returncode != 0
    assert "--csms-files-port must be within 0 and 65535." in result.stderr, result.stderr
    assert not (tmp_path / "db.sqlite3").exists()  # refused before anything was written


def test_sigterm_saves_the_meter_registers(tmp_path):
    csms_port = free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        "2",
        "--demo-share",
        "1",
        "--csms-port",
        str(csms_port),
        env={"CHARGESIM_CHECKPOINT_SECONDS": "60"},
    )
    try:
        sim.wait_for_output("fleet: 2/2 accepted")
        import time

        time.sleep(3)  # let energy flow; checkpoints are rare, so only the final one saves
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        registers = [row[0] for row in db.execute("select register_wh from chargers_evse")]
    assert len(registers) == 4 and all(r > 0 for r in registers)


def test_static_files_are_served_with_debug_off_and_no_collectstatic(tmp_path):
    """Daphne serves no files itself: WhiteNoise, in the ASGI app, must answer /static/."""
    port = free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--port",
        str(port),
        env={
            "DEBUG": "false",
            "SECRET_KEY": "a-test-secret-key-that-is-long-enough-for-the-deploy-check-1234",
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback
            "STATIC_ROOT": str(tmp_path / "never-collected"),
        },
    )
    try:
        wait_for_port(port, proc=sim.proc)
        base = f"http://127.0.0.1:{port}/static/"
        for name, source in (
            ("dashboard/dashboard.css", ROOT / "static/dashboard/dashboard.css"),
            ("admin/css/base.css", Path(admin.__file__).parent / "static/admin/css/base.css"),
        ):
            with urllib.request.urlopen(base + name, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/css")
                assert response.read() == source.read_bytes()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "dashboard/no-such-file.css", timeout=10)
        missing.value.close()
        assert missing.value.code == 404
    finally:
        sim.stop()
    assert "Traceback" not in sim.output
    assert "Warning" not in sim.output, sim.output


def test_traffic_replaces_the_demo_driver_and_reports_its_sessions(tmp_path):
    """`--traffic` at 10 simulated hours a second: drivers arrive at the demo sites, charge
    and leave; the status line counts them. `--demo-share` is the deprecated driver."""
    import re
    import time

    sim = ManagePy(
        tmp_path,
        "runsimulator",
        *("--no-web", "--demo", "--demo-chargers", "3", "--no-demo-operations"),
        *("--csms-port", str(free_port()), "--status-every", "0.5", "--demo-share", "0.3"),
        *("--traffic", "--traffic-seed", "5", "--traffic-speed", "36000", "--traffic-hours", "24"),
        *("--traffic-start", "2026-01-05T08:00+01:00"),
    )
    pattern = re.compile(r"traffic: \d+ arrived, ([1-9]\d*) charging sessions, .* ([1-9]\d*) left")
    try:
        sim.wait_for_output("--demo-share is deprecated")
        assert "(ignored with --traffic)" in sim.output
        sim.wait_for_output(
            "Background traffic at 3 sites (seed 5, 36000x time, from 2026-01-05 07:00 UTC)"
        )
        deadline = time.monotonic() + 60
        while pattern.search(sim.output) is None:
            if time.monotonic() > deadline or sim.proc.poll() is not None:
                pytest.fail(f"no session started and ended:\n{sim.output[-3000:]}")
            time.sleep(0.2)
        sim.signal(signal.SIGINT)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


def test_bad_traffic_options_are_refused(tmp_path):
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--traffic", "--traffic-speed", "0")
    assert "--traffic-speed must be more than 0" in result.stderr
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--traffic-hours", "-1")
    assert "--traffic-hours must be more than 0." in result.stderr
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--traffic-start", "monday")
    assert "--traffic-start: 'monday' is not a date and time" in result.stderr


def test_a_web_interface_beyond_loopback_with_debug_on_is_warned_of(tmp_path: Path) -> None:
    # --no-migrate on a new database stops the start right after the options are read.
    result = run_manage(tmp_path, "runsimulator", "--host", "0.0.0.0", "--no-migrate")
    assert "DEBUG is on: an error page shows code and settings to anyone who reaches " in (
        result.stderr
    )
    quiet = run_manage(tmp_path, "runsimulator", "--host", "::1", "--no-migrate")
    assert "DEBUG is on" not in quiet.stderr
    off = run_manage(
        tmp_path,
        "runsimulator",
        "--host",
        "0.0.0.0",
        "--no-migrate",
        env={"DEBUG": "false", "SECRET_KEY": "x" * 50},
    )
    assert "DEBUG is on" not in off.stderr
    assert "is not migrated" in off.stderr
