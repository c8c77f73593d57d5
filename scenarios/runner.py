"""Running a scenario: its chargers, their steps in parallel, the verdicts, the stored run.

1. The run is stored (`ScenarioRun`, status running) with its seed: the given one, the
   file's, or a fresh one, so that it can be repeated.
2. Its chargers are resolved (ids, a pattern, a location) or made from the template: new
   rows written as any fleet write is (the workers are told after commit), with
   auto-connect off, so that the run watches them from before their first frame.
3. The engine is asked to run them (`EngineHost.start`: the in-process engine of
   `runscenario` loads exactly these; running workers need nothing), each is waited for
   until its worker runs it, and the run subscribes to their events (`Watch`).
4. Each charger waits its seeded share of `spread`, connects (template chargers), then
   runs the steps in order; a failed step skips the rest of that charger's steps.
5. The verdicts, timings and frames are stored; temporary chargers are deleted, and so is
   the default location they were made at once it is empty (`delete_default_location`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.utils import timezone

from chargers.engine_client import EngineClient, EngineError
from chargers.evse_layout import EvseSpec
from chargers.fleet import ChargerPlan, create_chargers
from chargers.models import Charger, Evse
from chargers.orm_threads import in_thread
from chargers.validators import validate_authorization_key, validate_csms_url
from locations.models import Location
from scenarios import charger_ids
from scenarios.format import Scenario, Step, substitute_runtime, unresolved
from scenarios.models import (
    DEFAULT_LOCATION,
    ScenarioRun,
    delete_chargers,
    delete_default_location,
    run_verdict,
)
from scenarios.step_titles import step_title
from scenarios.steps import STEPS, StepContext, StepError, StepFailed, Target, is_fleet_step
from scenarios.template_checks import config_text
from scenarios.texts import hiding, one_line, shown_variables, storable, written_secrets
from scenarios.watch import (
    CALL,
    CALLERROR,
    CALLRESULT,
    Frame,
    Watch,
    close_said,
    closed_by,
    closes_not_ours,
)
from simulator import contract
from vehicles.models import VehicleModel

log = logging.getLogger(__name__)

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
# How long a charger may take to be loaded by its worker (a new row is applied within a
# coalescing delay), and to connect and boot when the run connects it.
LOAD_SECONDS = 30.0
CONNECT_SECONDS = 60.0
# How long the end of a run waits for the StopTransactions of the sessions it ends on its
# temporary chargers to be answered, before it deletes them anyway.
END_SESSIONS_SECONDS = 5.0
# The reason those sessions end with. The charger is taken out of service mid-session: no
# driver stopped at the reader (Local), no CSMS asked (Remote), no power was cut (PowerLoss,
# which a charger reports only after it boots again, which this one never will). OCPP 1.6's
# "Other" claims nothing that did not happen; a CSMS closes the transaction either way.
END_SESSIONS_REASON = "Other"
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"

Progress = Callable[[str], None]


class EngineHost(Protocol):
    """Where the chargers run: `runscenario`'s in-process engine, or the running workers."""

    async def start(self, charge_point_ids: list[str]) -> None: ...

    async def stop(self) -> None: ...


class RunningWorkers:
    """The workers already run every charger: nothing to start or stop."""

    async def start(self, charge_point_ids: list[str]) -> None:
        return None

    async def stop(self) -> None:
        return None


class SetupError(Exception):
    """The run's chargers cannot be had; the run's status is `error`."""


@dataclass
class Options:
    csms_url: str | None = None  # for template chargers without their own
    csms_control: str | None = None  # ${csms_control}, unless the scenario sets it
    seed: int | None = None  # overrides the file's
    settle_seconds: float = 1.2  # how late events arrive (see Watch)
    load_seconds: float = LOAD_SECONDS


@dataclass
class ChargerRun:
    target: Target
    start_delay: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    status: str = PASSED
    message: str = ""
    position: int = -1  # the index of the step it is at (len(steps): done)
    # Seconds from the start of its case (after its start delay) to its last verdict; None
    # while it runs.
    duration: float | None = None
    # The closes of its connection that were not the scenario's doing (`_note_disconnects`),
    # and the time (Unix) of the last one taken.
    disconnects: list[dict[str, Any]] = field(default_factory=list)
    closes_seen: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "charge_point_id": self.target.charge_point_id,
            "charger_id": self.target.pk,
            "temporary": self.target.temporary,
            "status": self.status,
            "message": self.message,
            "start_delay": round(self.start_delay, 3),
            "duration": None if self.duration is None else round(self.duration, 3),
            "disconnects": list(self.disconnects),
            "steps": list(self.steps),  # a copy: a run in progress is saved from a thread
        }


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        *,
        client: EngineClient,
        host: EngineHost | None = None,
        options: Options | None = None,
        progress: Progress | None = None,
        run: ScenarioRun | None = None,
    ) -> None:
        """`run`: a row already stored (queued through the API) to run, instead of a new
        one."""
        self.scenario = scenario
        self.client = client
        self.host = host or RunningWorkers()
        self.options = options or Options()
        self.progress = progress or (lambda text: None)
        seed = self.options.seed if self.options.seed is not None else scenario.seed
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = random.Random(self.seed)
        self.run: ScenarioRun | None = run
        self.chargers: list[ChargerRun] = []
        self.watch: Watch | None = None
        # What a cancelled run is stored as saying; whoever cancels it may say why first, so
        # that the run's one final save already carries it (a reader polling for the end
        # never sees a message that is rewritten a moment later).
        self.stop_message = "interrupted before it finished"
        self._t0 = 0.0  # loop time of the start
        self._started_at = 0.0  # Unix time of the start
        # Seconds the setup took (chargers found or made, loaded, watched), as far as it
        # got; None while it runs.
        self._setup_seconds: float | None = None
        # Fleet steps (`is_fleet_step`): the chargers' positions, and each such step's one
        # verdict (by step index), shared by every charger that reached it.
        self._moved = asyncio.Condition()
        self._fleet_verdicts: dict[int, asyncio.Future[tuple[str, str]]] = {}
        self.location = _location_of(scenario.chargers)
        # Of the template's charger ids (scenarios.charger_ids).
        self.token = charger_ids.draw_token()
        # The template's chargers went to DEFAULT_LOCATION, named by no one: removed after.
        self._default_location_used = False
        # Every message the run keeps or shows, with its secret variables' values hidden,
        # and the secrets the file writes out (a hook's answer may quote them).
        hide_variables = hiding(scenario.variables)
        hide_written = hiding(written_secrets(scenario.raw))
        self.hide: Callable[[Any], Any] = lambda value: hide_written(hide_variables(value))

    # -- the run -------------------------------------------------------------------------------

    async def execute(self) -> ScenarioRun:
        """Run the scenario; the stored run, finished (never raises for a failing CSMS)."""
        if self.run is None:
            self.run = await in_thread(self._create_run, thread_sensitive=True)()
        self._t0 = asyncio.get_running_loop().time()
        self._started_at = time.time()
        targets: list[Target] = []
        message = ""
        host_started = False
        interrupted = False
        try:
            targets = await in_thread(self._resolve, thread_sensitive=True)()
            await self.host.start([t.charge_point_id for t in targets])
            host_started = True
            await self._until_loaded(targets)
            self.watch = Watch(
                self.client.layer,
                self.client.shards,
                [t.pk for t in targets],
                settle_seconds=self.options.settle_seconds,
            )
            await self.watch.start()
            self._end_setup()
            spread = self.scenario.spread
            self.chargers = [
                ChargerRun(t, self.rng.uniform(0, spread) if spread else 0.0) for t in targets
            ]
            seeds = [self.rng.randrange(2**63) for _ in self.chargers]
            await asyncio.gather(
                *(
                    self._run_charger(c, random.Random(s))
                    for c, s in zip(self.chargers, seeds, strict=True)
                )
            )
            # A close in the last moments of a charger's last step reaches the watch a
            # flush later: the report must not miss it.
            await self.watch.settle()
            for charger in self.chargers:
                self._note_disconnects(charger)
        except asyncio.CancelledError:
            # Ctrl-C: still clean up and store the run as interrupted, then stop.
            interrupted = True
            message = self.stop_message
            self._cut_short(message)
        except SetupError as exc:
            message = str(exc)
        except EngineError as exc:
            message = f"the engine: {exc}"
        except Exception as exc:
            log.exception("scenario %s failed", self.scenario.name)
            message = f"the runner failed: {type(exc).__name__}: {exc}"
        finally:
            self._end_setup()  # one that failed or was cut short took this long
            if host_started and await self._end_sessions(targets):
                interrupted = True  # cancelled meanwhile: the waiting was cut short, no more
            if self.watch is not None:
                await self.watch.stop()
            if host_started:
                await self.host.stop()
            if any(t.temporary for t in targets):
                await in_thread(_delete_temporary, thread_sensitive=True)(targets)
            if self._default_location_used and self.run is not None:
                await in_thread(delete_default_location, thread_sensitive=True)(self.run.pk)
        took = asyncio.get_running_loop().time() - self._t0
        run = await in_thread(self._finish, thread_sensitive=True)(message, took)
        if interrupted:
            raise asyncio.CancelledError
        return run

    def _end_setup(self) -> None:
        if self._setup_seconds is None:
            self._setup_seconds = asyncio.get_running_loop().time() - self._t0

    async def _end_sessions(self, targets: list[Target]) -> bool:
        """Stop the sessions still running on the run's temporary chargers, and wait (at
        most END_SESSIONS_SECONDS) for the CSMS to answer each StopTransaction, before they
        are deleted: a charger deleted mid-session left its transaction open at the CSMS
        for good, and one that tracks them refused the idTag's next start (ConcurrentTx).
        Whether the run was cancelled meanwhile: a second Ctrl-C skips the waiting, never
        the deleting."""
        temporary = [t for t in targets if t.temporary]
        if not temporary:
            return False
        loop = asyncio.get_running_loop()
        try:
            since = time.time()
            stopped = await asyncio.gather(*(self._stop_sessions(t) for t in temporary))
            deadline = loop.time() + END_SESSIONS_SECONDS
            watch = self.watch
            for target, count in zip(temporary, stopped, strict=True):
                if count and watch is not None:
                    await watch.wait_for(
                        target.pk, partial(_stops_answered, since, count), deadline
                    )
        except asyncio.CancelledError:
            return True
        except Exception as exc:  # the chargers are deleted all the same
            log.warning("scenario %s: ending its sessions failed: %s", self.scenario.name, exc)
        return False

    async def _stop_sessions(self, target: Target) -> int:
        """Stop the charger's running transactions (END_SESSIONS_REASON); how many
        StopTransactions went to a CSMS that is there to answer them (none offline: the
        charger only queues them)."""
        state = await self.client.state(target.pk, target.charge_point_id)
        charger = state.get("charger")
        if not state.get("ok") or charger is None:
            return 0
        running = [e["connector_id"] for e in charger["evses"] if e["id_tag"] is not None]
        for connector in running:
            args: contract.StopArgs = {"connector_id": connector, "reason": END_SESSIONS_REASON}
            result = await self.client.command(target.pk, target.charge_point_id, "stop", args)
            if not result.get("ok"):
                log.info("%s: %s", target.charge_point_id, result.get("message"))
        return len(running) if charger["link"] == "online" else 0

    def _cut_short(self, why: str) -> None:
        """A cancelled run: each charger that had not finished is in error, its step in
        progress errored and the steps after it skipped, so that the verdicts (and the
        JUnit's count of tests) cover the whole scenario, not just what was done."""
        elapsed = asyncio.get_running_loop().time() - self._t0
        for charger in self.chargers:
            done = len(charger.steps)
            if done >= len(self.scenario.steps):
                continue
            for step in self.scenario.steps[done:]:
                first = len(charger.steps) == done
                charger.steps.append(
                    _verdict(
                        step,
                        ERROR if first else SKIPPED,
                        why if first else f"skipped after: {why}",
                        elapsed,
                        0.0,
                    )
                )
            if charger.status == PASSED:
                charger.status, charger.message = ERROR, why
            if charger.duration is None:
                charger.duration = max(elapsed - charger.start_delay, 0.0)

    def _create_run(self) -> ScenarioRun:
        return ScenarioRun.objects.create(
            name=self.scenario.name,
            file=self.scenario.file,
            source=self.scenario.source,
            seed=self.seed,
            variables=shown_variables(_jsonable(self.scenario.variables)),
            status=ScenarioRun.Status.RUNNING,
            started=timezone.now(),
        )

    def _finish(self, message: str, took: float) -> ScenarioRun:
        run = self.run
        assert run is not None
        status = run_verdict(message, (c.status for c in self.chargers))
        run.status = status
        run.message = storable(self.hide(message))
        run.finished = timezone.now()
        # A run queued through the API kept its variables as given until it ran; a secret
        # one (by its name) is kept no longer.
        # Before the variables it reads are hidden; and the values the run ran with (a
        # --var among them) hidden wherever the text holds them too.
        run.source = self.hide(run.shown_source())
        run.variables = shown_variables(run.variables)
        events = self.watch.events if self.watch is not None else []
        frames = [e for e in events if e.get("kind") in ("frame", "connection")]
        run.store_frames(
            (self.hide(_stored_event(e)) for e in frames), self.watch.dropped if self.watch else 0
        )
        run.result = {
            **self.result(status, message, took),
            "frames": {"count": run.frame_count, "dropped": run.frames_dropped},
        }
        run.save()
        return run

    def result(self, status: str, message: str = "", took: float | None = None) -> dict[str, Any]:
        """The run's result as stored at its end; while it runs (`took` None: up to now),
        the steps done so far. Call it on the loop that runs the scenario."""
        if took is None:
            took = asyncio.get_running_loop().time() - self._t0 if self._t0 else 0.0
        # Storable: a step's message may quote what the CSMS sent, control characters too.
        return storable(
            self.hide(
                {
                    "run": self.run.pk if self.run is not None else None,
                    "scenario": self.scenario.name,
                    "description": self.scenario.description,
                    "file": self.scenario.file,
                    "seed": self.seed,
                    "variables": shown_variables(_jsonable(self.scenario.variables)),
                    "status": status,
                    "message": message,
                    "started": datetime.fromtimestamp(self._started_at, UTC).strftime(ISO),
                    "duration": round(took, 3),
                    "setup_duration": (
                        None if self._setup_seconds is None else round(self._setup_seconds, 3)
                    ),
                    "steps_total": len(self.scenario.steps),
                    "chargers": [c.as_dict() for c in self.chargers],
                }
            )
        )

    # -- chargers --------------------------------------------------------------------------------

    def _resolve(self) -> list[Target]:
        spec = self.scenario.chargers
        if "template" in spec:
            return self._make_temporary(spec["template"])
        rows = Charger.objects.filter(enabled=True)
        if "ids" in spec:
            wanted = [str(i) for i in spec["ids"]]
            found = {c.charge_point_id: c for c in rows.filter(charge_point_id__in=wanted)}
            missing = [i for i in wanted if i not in found]
            if missing:
                raise SetupError(
                    f"no enabled charger with the id {', '.join(missing)}"
                    + charger_ids.case_hint(missing)
                )
            chosen = [found[i] for i in wanted]
        elif "pattern" in spec:
            pattern = re.compile(fnmatch.translate(str(spec["pattern"])))
            chosen = [
                c for c in rows.order_by("charge_point_id") if pattern.match(c.charge_point_id)
            ]
            if not chosen:
                raise SetupError(f"no enabled charger's id matches {spec['pattern']!r}")
        else:
            name = str(spec["location"])
            if not Location.objects.filter(name=name).exists():
                raise SetupError(f"no location named {name!r}")
            chosen = list(rows.filter(location__name=name).order_by("charge_point_id"))
            if not chosen:
                raise SetupError(f"the location {name!r} has no enabled charger")
        return [Target(c.pk, c.charge_point_id, c.csms_url) for c in chosen]

    def _make_temporary(self, template: dict[str, Any]) -> list[Target]:
        assert self.run is not None
        csms_url = str(template.get("csms_url") or self.options.csms_url or "")
        if not csms_url:
            raise SetupError(
                "the template's chargers need a CSMS: give the template a csms_url, or "
                "runscenario --csms-url URL (or --builtin-csms)"
            )
        try:
            validate_csms_url(csms_url)  # the chargers' own rules (no password in it)
        except ValidationError as exc:
            raise SetupError(f"the template's CSMS URL: {' '.join(exc.messages)}") from None
        location_name = str(template.get("location") or DEFAULT_LOCATION)
        location = Location.objects.filter(name=location_name).first()
        if location is None:
            if "location" in template:
                raise SetupError(f"no location named {location_name!r}")
            location = Location.objects.create(name=DEFAULT_LOCATION)
        self._default_location_used = not template.get("location")
        power_type = str(template.get("power_type", "AC"))
        max_kw = float(template.get("max_power_kw", 22))
        connector = Evse.ConnectorType.CCS2 if power_type == "DC" else Evse.ConnectorType.TYPE2
        evses = [EvseSpec(connector, max_kw)] * int(template.get("connectors", 1))
        overrides = {
            str(k): config_text(v) for k, v in (template.get("configuration") or {}).items()
        }
        vehicle = _vehicle(template.get("vehicle"))
        prefix = str(template.get("prefix", "SCN"))
        extra: dict[str, Any] = {
            k: str(template[k]) for k in ("vendor", "model", "firmware_version") if k in template
        }
        profile = int(template.get("security_profile", 0))
        if profile:
            # A CSMS that asks for HTTP Basic credentials; the key is sealed as any charger's.
            if profile == 2 and not csms_url.startswith("wss://"):
                raise SetupError("security profile 2 needs a wss:// CSMS URL (TLS)")
            key = str(template.get("authorization_key", ""))
            try:
                validate_authorization_key(key)
            except ValidationError as exc:
                raise SetupError(
                    f"the template's authorization_key: {' '.join(exc.messages)}"
                ) from None
            extra.update(security_profile=profile, authorization_key=key)
        count = int(template["count"])

        def insert(ids: list[str]) -> list[Charger]:
            plans = [
                ChargerPlan(
                    Charger(
                        charge_point_id=cp_id,
                        location=location,
                        csms_url=csms_url,
                        power_type=power_type,
                        max_power_kw=max_kw,
                        auto_connect=False,
                        default_vehicle=vehicle,
                        **extra,
                    ),
                    evses,
                    overrides,
                )
                for cp_id in ids
            ]
            return create_chargers(plans)

        try:
            self.token, made = charger_ids.claim(prefix, self.run.pk, self.token, count, insert)
        except charger_ids.NoFreeIds as exc:
            raise SetupError(str(exc)) from None
        connect = bool(template.get("connect", True))
        return [
            Target(c.pk, c.charge_point_id, csms_url, temporary=True, connect_first=connect)
            for c in made
        ]

    async def _until_loaded(self, targets: list[Target]) -> None:
        """Wait until each charger's worker runs it (a new row takes a moment)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.load_seconds

        async def loaded(target: Target) -> None:
            while True:
                result = await self.client.state(target.pk, target.charge_point_id)
                if result.get("ok"):
                    return
                if result.get("error") != contract.ERROR_NOT_RUNNING or loop.time() > deadline:
                    raise SetupError(
                        f"{target.charge_point_id} is not running: {result.get('message')}"
                    )
                await asyncio.sleep(0.2)

        await asyncio.gather(*(loaded(t) for t in targets))

    # -- steps -----------------------------------------------------------------------------------

    async def _run_charger(self, charger: ChargerRun, rng: random.Random) -> None:
        assert self.watch is not None
        await asyncio.sleep(charger.start_delay)
        target = charger.target
        values = {
            "charge_point_id": target.charge_point_id,
            "charger_id": target.pk,
            "csms_url": target.csms_url,
            **(
                {"csms_control": self.options.csms_control}
                if self.options.csms_control is not None
                else {}
            ),
            **self.scenario.variables,
        }
        loop = asyncio.get_running_loop()
        case_started = loop.time()
        since = time.time()
        failed: str | None = None
        if target.connect_first:
            ctx = StepContext(
                self.client, self.watch, target, rng, since, self._started_at, loop.time()
            )
            wait_for = contract.WaitFor(condition=contract.ACCEPTED, timeout=CONNECT_SECONDS)
            try:
                await ctx.command("connect", {}, wait_for)
            except (StepFailed, StepError) as exc:
                failed = f"{target.charge_point_id} did not connect: {exc}"
                charger.status, charger.message = ERROR, failed
        for step in self.scenario.steps:
            await self._move(charger, step.index)
            if failed is not None:
                charger.steps.append(_verdict(step, SKIPPED, f"skipped after: {failed}", 0.0, 0.0))
                continue
            started = loop.time()
            ctx = StepContext(
                self.client,
                self.watch,
                target,
                rng,
                since,
                self._started_at,
                started,
                seed=self.seed,
                location=self.location,
                fleet=[c.target for c in self.chargers],
                hide=self.hide,
            )
            since = time.time()
            if is_fleet_step(step.kind, step.args):
                status, message = await self._run_fleet_step(step, ctx, values)
            else:
                status, message = await self._run_step(step, ctx, values)
            message = self.hide(message)
            took = loop.time() - started
            charger.steps.append(_verdict(step, status, message, started - self._t0, took))
            notes = "".join(f"; {note}" for note in self._note_disconnects(charger))
            self.progress(
                one_line(
                    f"{self.scenario.name} {target.charge_point_id} {step.label}: {status}"
                    f" ({took:.2f} s){'' if status == PASSED else ': ' + message}{notes}"
                )
            )
            if status != PASSED:
                failed = message
                charger.status, charger.message = status, message
        charger.duration = loop.time() - case_started
        await self._move(charger, len(self.scenario.steps))

    def _note_disconnects(self, charger: ChargerRun) -> list[str]:
        """Take the closes of the charger's connection that were not the scenario's doing
        (the CSMS closed it, it was lost, a keepalive ping got no pong) and have reached
        the watch since the last look: each goes in the charger's `disconnects` and, as a
        note, on the step it happened in (or the last before it: the JUnit's system-out).
        A run whose CSMS dropped a connection mid-session passed without a word; whether
        it fails is the scenario's to say (`expect: {connection_kept: true}`). Returns the
        notes taken, for the command's step line."""
        assert self.watch is not None
        links = self.watch.links.get(charger.target.pk, [])
        closes = [c for c in closes_not_ours(links) if c.at > charger.closes_seen]
        notes = []
        for close in closes:
            charger.closes_seen = close.at
            at = close.at - self._started_at
            note = self.hide(close_said(close, self._started_at))
            step = _step_at(charger.steps, at)
            if step is not None:
                step.setdefault("notes", []).append(note)
            charger.disconnects.append(
                {
                    "at": round(at, 3),
                    "by": closed_by(close.detail),
                    "code": close.detail.get("code"),
                    "reason": self.hide(str(close.detail.get("reason") or "")),
                    "step": None if step is None else step["index"],
                    "message": note,
                }
            )
            notes.append(note)
        return notes

    async def _move(self, charger: ChargerRun, position: int) -> None:
        async with self._moved:
            charger.position = position
            self._moved.notify_all()

    async def _run_fleet_step(
        self, step: Step, ctx: StepContext, values: dict[str, Any]
    ) -> tuple[str, str]:
        """Run a fleet step once, when every charger has reached it or gone past it (a
        charger whose earlier step failed skips it); every charger here gets its verdict."""
        async with self._moved:
            await self._moved.wait_for(lambda: all(c.position >= step.index for c in self.chargers))
        shared = self._fleet_verdicts.get(step.index)
        if shared is None:
            where = f"{step.label} on the run's {len(self.chargers)} chargers"
            shared = asyncio.ensure_future(self._run_step(step, ctx, values, where=where))
            self._fleet_verdicts[step.index] = shared
        return await asyncio.shield(shared)

    async def _run_step(
        self, step: Step, ctx: StepContext, values: dict[str, Any], *, where: str = ""
    ) -> tuple[str, str]:
        where = where or f"{step.label} on {ctx.target.charge_point_id}"
        handler = STEPS.get(step.kind)
        if handler is None:
            return ERROR, f"{where}: this runner has no step kind {step.kind!r}"
        args = substitute_runtime(step.args, values)
        missing = unresolved(args)
        if missing:
            names = ", ".join(f"${{{name}}}" for name in sorted(missing))
            hint = (
                " (runscenario --var csms_control=URL, or --builtin-csms)"
                if "csms_control" in missing
                else ""
            )
            return ERROR, f"{where}: {names} has no value in this run{hint}"
        try:
            message = await handler(ctx, args)
        except StepFailed as exc:
            return FAILED, f"{where}: {exc}"
        except StepError as exc:
            return ERROR, f"{where}: {exc}"
        except Exception as exc:
            log.error("%s raised", where, exc_info=True)
            return ERROR, f"{where}: {type(exc).__name__}: {exc}"
        return PASSED, message


def _verdict(step: Step, status: str, message: str, started: float, took: float) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "title": step_title(step.kind, step.args),
        "line": step.line,
        "status": status,
        "message": message,
        "started": round(started, 3),
        "duration": round(took, 3),
    }


def _step_at(steps: list[dict[str, Any]], at: float) -> dict[str, Any] | None:
    """The verdict of the step that was running `at` seconds into the run (or the last to
    start before it); None before the first (the charger was connecting)."""
    found = None
    for step in steps:
        if step["status"] != SKIPPED and step["started"] <= at:
            found = step
    return found


def _location_of(chargers: dict[str, Any]) -> str | None:
    """The location the scenario's chargers are at, by name (a traffic step's), if one."""
    if "location" in chargers:
        return str(chargers["location"])
    if "template" in chargers:
        return str(chargers["template"].get("location") or DEFAULT_LOCATION)
    return None


def _vehicle(name: Any) -> VehicleModel:
    """The template's vehicle ("Make Model", or a model name), or the catalogue's first."""
    if name is not None:
        text = str(name)
        for vehicle in VehicleModel.objects.all():
            if text in (vehicle.model, f"{vehicle.make} {vehicle.model}", str(vehicle)):
                return vehicle
        raise SetupError(f"no vehicle model named {text!r}")
    if not VehicleModel.objects.exists():
        VehicleModel.objects.seed_catalogue()
    first = VehicleModel.objects.order_by("pk").first()
    if first is None:
        raise SetupError("no vehicle model to plug in")
    return first


def _stops_answered(since: float, count: int, frames: list[Frame]) -> bool:
    """Whether `count` StopTransactions sent since `since` were answered (CALLRESULT or
    CALLERROR: either way the CSMS has heard of the stop)."""
    calls = {
        f.message_id
        for f in frames
        if f.direction == "out"
        and f.message_type == CALL
        and f.action == "StopTransaction"
        and f.at >= since
    }
    answered = {
        f.message_id
        for f in frames
        if f.direction == "in" and f.message_type in (CALLRESULT, CALLERROR)
    }
    return len(calls & answered) >= count


def _delete_temporary(targets: list[Target]) -> None:
    delete_chargers((t.pk, t.charge_point_id) for t in targets if t.temporary)


def _stored_event(event: contract.StreamEvent) -> dict[str, Any]:
    return {
        "at": event["at"],
        "kind": event["kind"],
        "charger_id": event["charger_id"],
        "charge_point_id": event["charge_point_id"],
        "data": event["data"],
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in values.items()}
