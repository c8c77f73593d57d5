"""Scenario runs started through the API or the dashboard, inside the running simulator.

A run is stored as `queued` at once (the caller gets its id), then runs against the
running workers (`RunningWorkers`: they host the chargers already; template chargers are
made and the workers told, as `runscenario` does):

- embedded (no REDIS_URL, web and engine in one process): a task on the server's event
  loop. An eager Celery task would hold up the request for the whole run.
- scaled out: a Celery task (`scenarios.tasks`), on any Celery worker.

While it runs, its progress (each charger's steps so far, with verdicts and timings) is
saved on the run's `result` at most once a second, with a heartbeat: a run whose process
stops saving it is stored as an error (`ScenarioRun.objects.mark_stale`). A cancel request
is a flag on the row, so that it reaches the run whichever process runs it; the run then
stops as an interrupted `runscenario` does (temporary chargers removed, stored as error).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from chargers.engine_client import EngineClient
from chargers.orm_threads import in_thread
from scenarios import format
from scenarios.models import ScenarioRun
from scenarios.runner import Options, Runner
from simulator.contract import builtin_csms, loop_tasks
from simulator.contract.failures import brief

log = logging.getLogger(__name__)

SAVE_SECONDS = 1.0
CANCELLED = "cancelled before it finished"
STOPPED = "the simulator stopped before it finished"


class TooManyRuns(Exception):
    """The concurrent run limit is reached."""


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _same_csms(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    hosts = {a.hostname, b.hostname}
    return (a.scheme, a.port, a.path.rstrip("/")) == (b.scheme, b.port, b.path.rstrip("/")) and (
        len(hosts) == 1 or hosts <= LOOPBACK
    )


def builtin_control(csms_url: str) -> str | None:
    """`${csms_control}` by default: the control endpoint of the built-in CSMS of this
    process, when the run's chargers connect to that CSMS (no `csms_url` given, or its
    own). It makes only that CSMS act: for a run against another CSMS it sent the
    triggers to a CSMS the chargers were not connected to, and each answered 409, a
    failed run that the CSMS under test never took part in."""
    builtin = builtin_csms.running()
    if builtin is None or builtin.control_url is None:
        return None
    if csms_url and not _same_csms(csms_url, builtin.url):
        return None
    return builtin.control_url


def unmet_csms(scenario: format.Scenario, csms_url: str = "") -> str | None:
    """Why the scenario cannot run here, when its template chargers have no CSMS to
    connect to: no `csms_url` in the request nor in the template, and no built-in CSMS in
    this process (a simulator without --demo, or scaled out, where the run goes to
    Celery). Such a run was queued and then stored as an error, its message naming
    runscenario's options; `runscenario` refuses it before anything runs, as this does."""
    template = scenario.chargers.get("template")
    if not isinstance(template, dict) or template.get("csms_url") or csms_url:
        return None
    if builtin_csms.running() is not None:
        return None
    return (
        "The scenario's template chargers need a CSMS, and no built-in CSMS runs in this "
        "simulator (runsimulator --demo starts one): give csms_url, your CSMS's URL, or "
        "the template a csms_url."
    )


def unmet_hook(scenario: format.Scenario, csms_url: str = "") -> str | None:
    """Why the scenario cannot run here, when its steps make the CSMS act through
    `${csms_control}` and nothing gives it a value: the run would connect its chargers and
    error at its first trigger. Only the built-in CSMS of this process fills it in (a run
    of a scaled-out simulator runs on Celery, which has none), for the chargers that
    connect to it."""
    if "csms_control" not in scenario.uses or "csms_control" in scenario.variables:
        return None
    if builtin_control(csms_url) is not None:
        return None
    if csms_url and builtin_csms.running() is not None:
        return (
            "The scenario makes the CSMS act through ${csms_control}, which has no value "
            f"for {csms_url}: the built-in CSMS's control endpoint makes only that CSMS "
            "act. Give variables.csms_control, your CSMS's hook (docs/csms-control.md)."
        )
    return (
        "The scenario makes the CSMS act through ${csms_control}, which has no value here: "
        "no built-in CSMS with a control endpoint runs in this simulator (runsimulator "
        "--demo starts one). Give variables.csms_control, your CSMS's hook "
        "(docs/csms-control.md)."
    )


def queue(
    scenario: format.Scenario,
    *,
    variables: dict[str, Any],
    seed: int | None,
    csms_url: str,
) -> ScenarioRun:
    """Store the run as queued (its seed chosen now, so that it can be repeated), or raise
    TooManyRuns. Call `dispatch` after, from the loop that should run it (embedded)."""
    ScenarioRun.objects.mark_stale()
    limit = settings.CHARGESIM_SCENARIO_RUNS
    if seed is None:
        seed = scenario.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    run = ScenarioRun.objects.create(
        name=scenario.name,
        file=scenario.file,
        source=scenario.source,
        seed=seed,
        variables=variables,
        csms_url=csms_url,
        status=ScenarioRun.Status.QUEUED,
        heartbeat=timezone.now(),
    )
    # Counted after the insert: of two requests racing for the last place, the later one
    # sees the earlier and backs out.
    ahead = ScenarioRun.objects.active().filter(pk__lte=run.pk).count()
    if ahead > limit:
        run.delete()
        raise TooManyRuns(
            f"{limit} scenario run{' is' if limit == 1 else 's are'} queued or running "
            "(CHARGESIM_SCENARIO_RUNS): wait for one to finish, or cancel one."
        )
    return run


async def dispatch(run: ScenarioRun) -> ScenarioRun:
    """Start the queued run: on this event loop (embedded), or on Celery (scaled out). The
    run as it is then: ended as `error` when no background worker could be given it."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # A context of its own: the request's (its ThreadSensitiveContext, whose executor
        # ends with the request) must not be inherited by a task that outlives it.
        task = asyncio.get_running_loop().create_task(
            execute_queued(run.pk), name=f"scenario-run-{run.pk}", context=contextvars.Context()
        )
        loop_tasks.adopt(task)  # kept, and cancelled when the simulator stops
        return run
    # In a thread: the send is blocking network I/O, and with Redis away it blocked the
    # web process's event loop, every other request with it.
    return await in_thread(_send, thread_sensitive=True)(run)


def _send(run: ScenarioRun) -> ScenarioRun:
    try:
        # By name: scenarios.tasks imports this module. Without a result to wait for (the
        # task's own ignore_result is not known by name): with Redis away, the result
        # backend's retries held the request 20 s before its 500.
        current_app.send_task("scenarios.run_scenario", args=[run.pk], ignore_result=True)
    except OperationalError as exc:  # kombu's: the broker (Redis) cannot be reached
        why = brief(exc)
        log.warning("Scenario run %s could not be queued for a background worker: %s", run.pk, why)
        # It stayed queued for good, counted against CHARGESIM_SCENARIO_RUNS.
        ScenarioRun.objects.filter(pk=run.pk, status=ScenarioRun.Status.QUEUED).update(
            status=ScenarioRun.Status.ERROR,
            message=(
                "The run could not be handed to a background worker: the broker (Redis) "
                f"cannot be reached ({why}). Start it again once Redis is back."
            ),
            finished=timezone.now(),
        )
        run.refresh_from_db()
    return run


def request_cancel(run: ScenarioRun) -> ScenarioRun:
    """A queued run is stored as cancelled at once; a running one is told (it stops
    within about a second, cleans up, and is stored as error)."""
    now = timezone.now()
    ScenarioRun.objects.filter(pk=run.pk, status=ScenarioRun.Status.QUEUED).update(
        status=ScenarioRun.Status.ERROR,
        message="cancelled before it started",
        cancel_requested=True,
        finished=now,
    )
    ScenarioRun.objects.filter(pk=run.pk, status=ScenarioRun.Status.RUNNING).update(
        cancel_requested=True
    )
    run.refresh_from_db()
    return run


async def execute_queued(pk: int) -> None:
    """Run a queued run (once: the first caller claims it), saving progress as it goes."""
    claimed = await in_thread(_claim, thread_sensitive=True)(pk)
    if claimed is None:
        return
    run, scenario = claimed
    if scenario is None:
        return
    # Embedded with --demo, the built-in CSMS runs in this process: the default CSMS of
    # template chargers, and the library's ${csms_control}.
    builtin = builtin_csms.running()
    runner = Runner(
        scenario,
        client=EngineClient(),
        options=Options(
            csms_url=run.csms_url or (builtin.url if builtin else None),
            csms_control=builtin_control(run.csms_url),
            seed=run.seed,
        ),
        run=run,
    )
    task = asyncio.ensure_future(runner.execute())
    cancelled = False
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=SAVE_SECONDS)
            if task.done():
                break
            snapshot = runner.result(ScenarioRun.Status.RUNNING)
            try:
                asked = await in_thread(_save_progress, thread_sensitive=True)(pk, snapshot)
            except Exception:
                # A progress save that fails (the database is busy) must not stop the run:
                # its final save still comes, and the next progress save in a second.
                log.exception("scenario run %s: saving its progress failed", pk)
                continue
            if asked:
                cancelled = True
                runner.stop_message = CANCELLED
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    except asyncio.CancelledError:
        # The simulator stops: let the run clean up and store itself, then stop.
        runner.stop_message = STOPPED
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await in_thread(_note_stop, thread_sensitive=True)(pk, STOPPED)
        raise
    if cancelled:
        await in_thread(_note_stop, thread_sensitive=True)(pk, CANCELLED)


def _claim(pk: int) -> tuple[ScenarioRun, format.Scenario | None] | None:
    now = timezone.now()
    claimed = ScenarioRun.objects.filter(pk=pk, status=ScenarioRun.Status.QUEUED).update(
        status=ScenarioRun.Status.RUNNING, started=now, heartbeat=now
    )
    if claimed != 1:
        return None  # cancelled while queued, or another worker has it
    run = ScenarioRun.objects.get(pk=pk)
    try:
        scenario = format.parse(run.source, file=run.file or "<api>", variables=run.variables)
    except format.ScenarioError as exc:
        run.status = ScenarioRun.Status.ERROR
        run.message = f"the scenario does not parse: {exc}"
        run.finished = timezone.now()
        run.save(update_fields=["status", "message", "finished"])
        return run, None
    return run, scenario


def _save_progress(pk: int, snapshot: dict[str, Any]) -> bool:
    """Save the progress (only while the run is running); whether a cancel was asked."""
    ScenarioRun.objects.filter(pk=pk, status=ScenarioRun.Status.RUNNING).update(
        result=snapshot, heartbeat=timezone.now()
    )
    return ScenarioRun.objects.filter(pk=pk, cancel_requested=True).exists()


def _note_stop(pk: int, message: str) -> None:
    """A run stopped by a cancel request or by the simulator's stop says which (the runner
    says "interrupted")."""
    run = ScenarioRun.objects.filter(pk=pk, status=ScenarioRun.Status.ERROR).first()
    if run is None:
        return
    run.cancel_requested = message == CANCELLED  # the runner's final save wrote its row
    run.message = message
    if isinstance(run.result, dict):
        run.result = {**run.result, "message": message}
    run.save(update_fields=["cancel_requested", "message", "result"])
