"""Run `manage.py` commands as real subprocesses, each with its own state directory."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Redis databases the tests deploy onto (0 is left to whoever else uses this Redis).
_TEST_REDIS_DATABASES = range(8, 16)


def redis_database(base_url: str) -> str:
    """`base_url` with a Redis database for one deployment, emptied first.

    Under pytest-xdist each worker draws from its own part of the test databases, so that two
    deployments running at once never share one (their workers would hear each other's
    groups and take each other's Celery tasks); a test of the same worker before may have
    left queued tasks in it, hence the flush. Beyond as many workers as databases, workers
    share them and nothing is flushed."""
    import redis

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    parts = min(workers, len(_TEST_REDIS_DATABASES))
    mine = _TEST_REDIS_DATABASES[worker % parts :: parts]
    url = f"{base_url.rstrip('/')}/{random.choice(mine)}"
    if workers <= len(_TEST_REDIS_DATABASES):
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    return url


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Process:
    """A child process in its own session, output to a file; always killed by stop()."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in output:\n{self.output[-3000:]}")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


def daphne(
    port: int, env: dict[str, str], logs: Path, *, result_seconds: float | None = None
) -> Process:
    """The web tier alone, as the scaled-out mode runs it: Daphne on 127.0.0.1:`port`;
    with `result_seconds`, its API waits that long for a result (`tests.short_waits`)."""
    args = ["-b", "127.0.0.1", "-p", str(port), "chargesim_site.asgi:application"]
    if result_seconds is None:
        return Process("daphne", [sys.executable, "-m", "daphne", *args], env, logs)
    launcher = [sys.executable, "-m", "tests.short_waits", str(result_seconds)]
    return Process("daphne", [*launcher, *args], env, logs)


@contextmanager
def daphne_app(app: str) -> Iterator[int]:
    """Daphne serving the ASGI application `app` ("module:attribute") on a free loopback
    port, which it yields; stopped at the end whatever happens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class ManagePy(Process):
    """`manage.py <args>` with its own state directory (and so its own SQLite file)."""

    def __init__(
        self,
        var_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        sigint_ignored: bool = False,
    ) -> None:
        """`sigint_ignored`: started as a shell starts a background job (a CI job's
        commands), SIGINT ignored from the start; a handler of the process's own may
        still take it."""
        self.var_dir = var_dir
        environment = {**os.environ, "CHARGESIM_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"}
        environment.pop("DATABASE_URL", None)
        environment.update(env or {})
        command = [sys.executable, "manage.py", *args]
        if sigint_ignored:  # an ignored signal stays ignored across exec
            command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
        super().__init__(args[0], command, environment, var_dir)


def run_manage(
    var_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGS` to its end, on a SQLite database in `var_dir` unless `env` names
    another (DATABASE_URL)."""
    environment = {**os.environ, "CHARGESIM_VAR_DIR": str(var_dir)}
    environment.pop("DATABASE_URL", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
