from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any, NamedTuple, TypedDict

import orjson
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from chargers.bulk import execute_rows, execute_values
from chargers.sealed import SealedTextField, seal, unseal
from chargers.validators import (
    validate_answer_overrides,
    validate_charge_point_id,
    validate_csms_url,
)
from simulator.contract import config_keys, overrides, shard_of
from simulator.contract.one_line import is_one_line

ANSWER_OVERRIDES_HELP = (
    "How this charger answers the CSMS's calls of an action, on every call: a list of rules "
    'such as [{"action": "RemoteStartTransaction", "status": "Rejected"}] (this charger '
    "answers RemoteStartTransaction Rejected, and starts nothing). One of: "
    '"status" (a status of that action\'s answer), "call_error" (an OCPP 1.6 CALLERROR code, '
    'e.g. "NotSupported", with an optional "description"), "delay" (seconds: the normal '
    'answer, late) or "no_answer": true. Empty: it answers normally.'
)


# The code of "profile 1 or 2 needs an AuthorizationKey": not said where a key was given
# but refused (`chargers.forms.without_missing_key`), which the instance then lacks.
KEY_MISSING = "authorization_key_missing"


def case_twin_message(given: str, stored: str) -> str:
    """Why `given` is refused while the charger `stored` exists (they differ only in case)."""
    return (
        f"Charger {stored} exists, whose id differs from {given} only in letter case: a "
        "CSMS may match charge point ids regardless of case and take the two for one "
        "charger. Choose an id that differs in more than case."
    )


class ChargerQuerySet(models.QuerySet["Charger"]):
    def enabled(self) -> ChargerQuerySet:
        return self.filter(enabled=True)

    def case_twins(self, ids: Iterable[str]) -> dict[str, str]:
        """The stored charge point ids among these chargers that equal one of `ids` but for
        letter case (or exactly), by their lower-cased form. Lowered by the database, as
        the unique index `charger_charge_point_id_ci_unique` lowers them (it serves the
        look-up)."""
        folded = sorted({cp_id.lower() for cp_id in ids})
        found: dict[str, str] = {}
        for start in range(0, len(folded), 5000):  # SQLite's parameter limit
            found.update(
                self.annotate(folded=Lower("charge_point_id"))
                .filter(folded__in=folded[start : start + 5000])
                .values_list("folded", "charge_point_id")
            )
        return found

    def per_shard(self, shards: int) -> dict[int, int]:
        """How many of these chargers each shard's worker runs (by their charge point id):
        the fleet's totals count the chargers of a worker that does not answer too."""
        counts: dict[int, int] = {}
        for cp_id in self.values_list("charge_point_id", flat=True).iterator(chunk_size=5000):
            shard = shard_of(cp_id, shards)
            counts[shard] = counts.get(shard, 0) + 1
        return counts

    def set_authorization_key(self, charger_pk: int, value: str) -> None:
        """A key the CSMS set (ChangeConfiguration AuthorizationKey); it is a secret."""
        self.filter(pk=charger_pk).update(authorization_key=value)

    def set_key_column(self, charger_pk: int, key: str, value: str) -> None:
        """A configuration key the CSMS set that is a column of the charger row
        (AuthorizationKey, SecurityProfile). A plain UPDATE, as the engine has it already."""
        if key == "AuthorizationKey":
            self.set_authorization_key(charger_pk, value)
        elif key == "SecurityProfile":
            self.filter(pk=charger_pk).update(security_profile=int(value))
        else:
            raise ValueError(f"{key} is not a column of the charger row")

    def mark_changed(self, charger_pks: Iterable[int]) -> None:
        """An operator's edit of these chargers' EVSEs or configuration keys, which does not
        save the charger row: `updated` says so, for a worker that missed the change
        message finds changes by it (its reconciliation)."""
        self.filter(pk__in=list(charger_pks)).update(updated=timezone.now())

    def set_firmware_versions(self, versions: dict[int, str]) -> None:
        """Firmware the engine installed (UpdateFirmware). A plain UPDATE: `updated` is
        the operator's edits, and this is none (the running charger has it already)."""
        for charger_pk, version in versions.items():
            self.filter(pk=charger_pk).update(firmware_version=version[:50])

    def deletion_losses(self) -> list[str]:
        """What deleting these chargers now would lose, one sentence per charger (empty:
        nothing): a transaction still open, or transaction messages the CSMS has not
        confirmed. A deleted charger's rows go with it, its outbox included, so a
        StopTransaction it could not send at once (offline, its worker not running) would
        never be sent, and the CSMS would keep the transaction open for ever. Read from the
        database, not asked of a worker: true whether one runs the charger or not."""
        losses = []
        for cp_id, open_, held in self._transaction_holds():
            if open_:
                losses.append(
                    f"{cp_id} has {_transactions(open_)} in progress: deleted now, its "
                    "StopTransaction may never be sent. Stop the session (or disable the "
                    "charger) and delete it once its CSMS has confirmed the StopTransaction."
                )
            else:
                losses.append(
                    f"{cp_id} has {_messages(held)} its CSMS has not confirmed yet: deleted "
                    f"now, {'they' if held != 1 else 'it'} may never be sent. Let it "
                    "deliver them (enabled, with its CSMS in reach) and delete it then."
                )
        return losses

    def move_losses(self, new_id: str, shard: int) -> list[str]:
        """What renaming these chargers to `new_id`, which another shard's worker runs,
        would break (empty: nothing): the session in progress ends at once (StopTransaction
        reason Other from the worker running it), but with that worker not running, the new
        shard's worker ends it as after a power loss, under the new id, a transaction its
        CSMS opened under the old one; the same for transaction messages not confirmed.
        Read from the database, as `deletion_losses`: the web side cannot know in advance
        whether the old shard's worker runs."""
        losses = []
        for cp_id, open_, held in self._transaction_holds():
            what = (
                f"{_transactions(open_)} in progress"
                if open_
                else f"{_messages(held)} its CSMS has not confirmed yet"
            )
            losses.append(
                f"{cp_id} has {what}: renamed to {new_id}, it moves to the worker of shard "
                f"{shard}, and if the worker running it now is not there to end "
                f"{'the session' if open_ else 'them'} under {cp_id}, {new_id} would: its "
                f"CSMS opened {'it' if open_ else 'them'} under {cp_id}. Stop the session, "
                "and rename it once its CSMS has confirmed the StopTransaction."
            )
        return losses

    def _transaction_holds(self) -> list[tuple[str, list[str], int]]:
        """(charge point id, its open transactions' ids, its unconfirmed transaction
        messages) of each of these chargers with either, by charge point id."""
        pks = dict(self.values_list("pk", "charge_point_id"))
        open_: dict[int, list[str]] = {}
        for pk, transaction_id, local_id in (
            Transaction.objects.filter(charger_id__in=list(pks), state=Transaction.State.OPEN)
            .order_by("charger_id", "connector_id")
            .values_list("charger_id", "transaction_id", "local_id")
        ):
            open_.setdefault(pk, []).append(
                str(local_id if transaction_id is None else transaction_id)
            )
        held = dict(
            # A transaction's own (a SecurityEventNotification, durable too, is none).
            OutboxMessage.objects.filter(charger_id__in=list(pks))
            .exclude(local_tx_id="")
            .values("charger_id")
            .annotate(n=models.Count("seq"))
            .values_list("charger_id", "n")
        )
        return [
            (cp_id, open_.get(pk, []), held.get(pk, 0))
            for pk, cp_id in sorted(pks.items(), key=lambda item: item[1])
            if pk in open_ or pk in held
        ]


def _transactions(names: list[str]) -> str:
    return f"transaction{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _messages(n: int) -> str:
    return f"{n} transaction message{'s' if n != 1 else ''}"


class Charger(models.Model):
    # The largest single-phase AC wallbox (32 A at 230 V). A charger given no phases is
    # single-phase up to it, as 3.7 kW (16 A) and 7.4 kW wallboxes are: modelled as three
    # phases, 3.7 kW is 5.4 A a phase, below the 6 A a car can charge on (IEC 61851-1).
    SINGLE_PHASE_MAX_KW = 7.4

    class PowerType(models.TextChoices):
        AC = "AC", "AC"
        DC = "DC", "DC"

    class FirmwareFailure(models.TextChoices):
        NONE = "", "none: updates succeed"
        DOWNLOAD_FAILED = "DownloadFailed", "DownloadFailed: every download fails"
        INSTALLATION_FAILED = "InstallationFailed", "InstallationFailed: downloads, then fails"
        INVALID_SIGNATURE = (
            "InvalidSignature",
            "InvalidSignature: signed updates compute a wrong checksum",
        )

    class UploadMethod(models.TextChoices):
        PUT = "PUT", "PUT (the file, to location/<file name>)"
        POST = "POST", "POST (a multipart form, to the location)"

    class PowerSharing(models.TextChoices):
        EQUAL = "equal", "equal share (what one connector leaves goes to the others)"
        FIRST = "first", "first come, first served (the earliest session first)"

    class SecurityProfile(models.IntegerChoices):
        NONE = 0, "0 – no authentication"
        BASIC = 1, "1 – HTTP Basic over ws/wss"
        TLS_BASIC = 2, "2 – TLS (wss) + HTTP Basic"
        TLS_CLIENT_CERT = 3, "3 – TLS (wss) + client certificate"

    charge_point_id = models.CharField(
        "charge point id",
        max_length=48,
        unique=True,
        validators=[validate_charge_point_id],
        help_text=(
            "The identity in the CSMS URL: letters, digits and . _ ~ - (at most 48), unique "
            "regardless of letter case."
        ),
    )
    vendor = models.CharField(max_length=20, default="ChargeSim")
    model = models.CharField(max_length=20, default="Virtual AC 22")
    serial_number = models.CharField(max_length=25, blank=True)
    firmware_version = models.CharField(max_length=50, default="1.0.0")
    power_type = models.CharField(max_length=2, choices=PowerType.choices, default=PowerType.AC)
    max_power_kw = models.FloatField(
        "max power (kW)", default=22.0, validators=[MinValueValidator(0.1), MaxValueValidator(1000)]
    )
    phases = models.PositiveSmallIntegerField(
        default=3,
        choices=[(1, "1"), (3, "3")],
        help_text="AC phases wired to each connector (ignored for DC).",
    )
    nominal_voltage = models.FloatField(
        "nominal voltage (V)",
        default=230.0,
        validators=[MinValueValidator(100), MaxValueValidator(1000)],
        help_text="AC line-to-neutral voltage.",
    )
    location = models.ForeignKey(
        "locations.Location", on_delete=models.PROTECT, related_name="chargers"
    )
    csms_url = models.CharField(
        "CSMS URL",
        max_length=300,
        blank=True,
        validators=[validate_csms_url],
        help_text="ws:// or wss:// endpoint; the charge point id is appended as the last segment.",
    )
    security_profile = models.PositiveSmallIntegerField(
        choices=SecurityProfile.choices, default=SecurityProfile.NONE
    )
    authorization_key = SealedTextField(
        "AuthorizationKey (password)",
        text_max_length=100,
        blank=True,
        help_text=(
            "HTTP Basic password for security profiles 1 and 2. Write-only; the database "
            "holds it sealed under SECRET_KEY."
        ),
    )
    ca_bundle_path = models.CharField(
        "TLS CA bundle path",
        max_length=300,
        blank=True,
        help_text="PEM file to verify the CSMS; empty uses the system store.",
    )
    client_cert_path = models.CharField("client certificate path", max_length=300, blank=True)
    client_key_path = models.CharField("client key path", max_length=300, blank=True)
    default_vehicle = models.ForeignKey(
        "vehicles.VehicleModel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The vehicle a simulated driver plugs in.",
    )
    simulate_ev_on_remote_start = models.BooleanField(
        "simulate an EV on remote start",
        default=False,
        help_text="A RemoteStartTransaction plugs in a vehicle at once, and a remote stop "
        "unplugs it a few seconds later, so that CSMS tests can run unattended.",
    )
    reject_triggered_boot = models.BooleanField(
        "reject TriggerMessage(BootNotification)",
        default=False,
        help_text="As the 1.6 errata suggest; most real chargers accept it.",
    )
    firmware_failure = models.CharField(
        "firmware update failure",
        max_length=20,
        blank=True,
        default="",
        choices=FirmwareFailure.choices,
        help_text="Make every UpdateFirmware fail this way (FirmwareStatusNotification).",
    )
    diagnostics_upload_method = models.CharField(
        "diagnostics upload over HTTP(S)",
        max_length=4,
        default="PUT",
        choices=UploadMethod.choices,
        help_text="How GetDiagnostics uploads to an http(s) location (ftp uses STOR).",
    )
    power_sharing = models.CharField(
        "power sharing",
        max_length=5,
        default="equal",
        choices=PowerSharing.choices,
        help_text="The max power caps the sum of the connectors; this says how they share it.",
    )
    # Fault injection kept with the charger (issue 16): what a scenario step or a drive
    # command sets for a run, stored. The engine applies a change live.
    answer_overrides = models.JSONField(
        "answer overrides",
        default=list,
        blank=True,
        validators=[validate_answer_overrides],
        help_text=ANSWER_OVERRIDES_HELP,
    )
    network_latency_ms = models.PositiveIntegerField(
        "network latency (ms)",
        default=0,
        validators=[MaxValueValidator(overrides.LATENCY_MAX_MS)],
        help_text="Added to each frame the charger sends (in order: delayed, never reordered).",
    )
    network_jitter_ms = models.PositiveIntegerField(
        "network jitter (ms)",
        default=0,
        validators=[MaxValueValidator(overrides.LATENCY_MAX_MS)],
        help_text="Each frame's latency varies by up to this much, either way.",
    )
    network_drop_rate = models.FloatField(
        "network drop rate",
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The share of the charger's outgoing frames lost, from 0 to 1 (0.1: one in "
        "ten). A lost transaction message is sent again, as after a lost answer.",
    )
    clock_skew_seconds = models.FloatField(
        "clock skew (s)",
        default=0.0,
        validators=[
            MinValueValidator(-overrides.SKEW_MAX_S),
            MaxValueValidator(overrides.SKEW_MAX_S),
        ],
        help_text="The timestamps the charger sends are this far ahead (negative: behind), "
        "whatever time the CSMS sets.",
    )
    auto_connect = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    # Indexed: a running worker asks every few seconds which chargers changed since it
    # last looked (its reconciliation, in case a fleet.changed message was lost).
    updated = models.DateTimeField(auto_now=True, db_index=True)

    objects = ChargerQuerySet.as_manager()

    #: Not a column: `case_twins` of the ids of a whole import, read in a few queries, for
    #: `validate_constraints` to look in rather than query once per row (None: it queries).
    known_case_twins: Mapping[str, str] | None = None

    class Meta:
        ordering = ["charge_point_id"]
        constraints = [
            # Ids that differ only in case would fight over one identity at a CSMS that
            # matches them case-insensitively (many do; a proxy may fold the URL's case).
            # `unique=True` stays: its index serves the exact look-ups by id.
            models.UniqueConstraint(
                Lower("charge_point_id"), name="charger_charge_point_id_ci_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.charge_point_id

    def save(self, *args, **kwargs) -> None:
        creating = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if creating:
                ConfigurationKey.objects.seed_defaults(self)

    def get_absolute_url(self) -> str:
        return reverse("admin:chargers_charger_change", args=[self.pk])

    @classmethod
    def phases_for(cls, power_type: str | None, max_power_kw: float | None) -> int:
        """The AC phases of a charger whose phases were not given: one up to
        `SINGLE_PHASE_MAX_KW`, three above (and for DC, whose phases are not used)."""
        if power_type == cls.PowerType.AC and max_power_kw is not None:
            return 1 if max_power_kw <= cls.SINGLE_PHASE_MAX_KW else 3
        return 3

    @classmethod
    def model_for(cls, power_type: str | None, max_power_kw: float | None) -> str:
        """The BootNotification model of a charger given none: its power type and power,
        "Virtual DC 150" or "Virtual AC 22" (the field's default is the default charger's),
        so that a DC charger does not tell its CSMS it is an AC one."""
        kind = cls.PowerType.DC.value if power_type == cls.PowerType.DC else cls.PowerType.AC.value
        return f"Virtual {kind} {22.0 if max_power_kw is None else max_power_kw:g}"

    def sync_number_of_connectors(self) -> None:
        """NumberOfConnectors follows the EVSEs, which forms save after the charger."""
        self.configuration.filter(key="NumberOfConnectors").update(value=str(self.evses.count()))

    def has_signed_certificate(self) -> bool:
        """Whether its store holds a certificate its CSMS signed (SignCertificate and
        CertificateSigned): a TLS client certificate of security profile 3, as the files
        are (the connection uses it first)."""
        if self.pk is None:
            return False
        stored = (
            CertificateStoreRecord.objects.filter(charger_id=self.pk)
            .values_list("certificates", flat=True)
            .first()
        )
        return bool(stored and stored.get("chain"))

    def clean_fields(self, exclude: Any = None) -> None:
        try:
            super().clean_fields(exclude)
        except ValidationError as exc:
            # A charge point id too long is said once, by its own validator ("... is 60
            # characters long; at most 48 are allowed."), not again by max_length's.
            errors = exc.error_dict
            found = errors.get("charge_point_id", [])
            if len(found) > 1:
                errors["charge_point_id"] = [e for e in found if e.code != "max_length"]
            raise ValidationError(errors) from None

    def validate_constraints(self, exclude: Any = None) -> None:
        excluded = set(exclude or ())
        errors: dict[str, Any] = {}
        try:
            # The case-blind uniqueness of the id is checked below instead of by Django's
            # generic "Constraint ... is violated.": said on the field, naming the charger.
            super().validate_constraints(exclude=excluded | {"charge_point_id"})
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if "charge_point_id" not in excluded and self.charge_point_id:
            known = self.known_case_twins
            if known is None:
                others = Charger.objects.exclude(pk=self.pk) if self.pk else Charger.objects
                known = others.case_twins([self.charge_point_id])
            twin = known.get(self.charge_point_id.lower())
            # The same id is the field's own `unique` check's to say ("... already exists").
            if twin is not None and twin != self.charge_point_id:
                message = case_twin_message(self.charge_point_id, twin)
                errors["charge_point_id"] = [ValidationError(message, code="case_twin")]
        if errors:
            raise ValidationError(errors)

    def clean(self) -> None:
        errors: dict[str, str | ValidationError] = {}
        scheme = self.csms_url.split("://", 1)[0] if self.csms_url else ""
        profile = self.security_profile
        if profile in (2, 3) and scheme and scheme != "wss":
            errors["security_profile"] = (
                f"Security profile {profile} needs a wss:// CSMS URL (TLS)."
            )
        if profile in (1, 2) and not self.authorization_key:
            errors["authorization_key"] = ValidationError(
                f"Security profile {profile} needs an AuthorizationKey (HTTP Basic password).",
                code=KEY_MISSING,
            )
        if profile == 3 and not (
            (self.client_cert_path and self.client_key_path) or self.has_signed_certificate()
        ):
            errors["client_cert_path"] = (
                "Security profile 3 needs a client certificate: a certificate and key path, "
                "or one its CSMS signed (SignCertificate, CertificateSigned)."
            )
        # Sent in every BootNotification and shown on one line in lists, logs and exports
        # (a workbook cannot hold a control character at all, and an XLSX export of the
        # fleet was refused for one): a line break or a control character is a mistake.
        for field, label in IDENTITY_FIELDS:
            if not is_one_line(getattr(self, field)):
                errors[field] = (
                    f"{label} is one line of text (no line breaks or control characters)."
                )
        for field in TLS_PATH_FIELDS:  # a file's path: a control character is a mistake
            if field not in errors and not is_one_line(getattr(self, field)):
                errors[field] = "A path is one line of text (no line breaks or control characters)."
        if self.power_type == self.PowerType.DC:
            self.phases = 3
        # Stored in one form: every rule with its mode (the field's validator reports).
        with contextlib.suppress(ValueError):
            self.answer_overrides = overrides.check_rules(self.answer_overrides)
        if self.answer_overrides is None:  # a form's empty JSON field: no rules
            self.answer_overrides = []
        if errors:
            raise ValidationError(errors)


#: The BootNotification fields a charger is stored with, and how a message names each.
TLS_PATH_FIELDS = ("ca_bundle_path", "client_cert_path", "client_key_path")
IDENTITY_FIELDS = (
    ("vendor", "A vendor"),
    ("model", "A model"),
    ("serial_number", "A serial number"),
    ("firmware_version", "A firmware version"),
)


class EvseManager(models.Manager["Evse"]):
    def checkpoint(
        self,
        registers: Sequence[tuple[int, float, str, int]],
        at: datetime,
        *,
        lease: int | None = None,
        leased: Container[int] = (),
        metered: Mapping[int, datetime] | None = None,
    ) -> None:
        """Write (charger pk, register Wh, status, EVSE pk) rows read at `at` (the
        checkpoint batch's rows as they are; the charger pk is not written), in a few
        statements.

        Registers only go up: MAX/GREATEST(stored, new), even if two writers race. Each
        row carries the time its register was true: when the engine last metered its
        charger (`metered`, by charger pk), else `at` (a PowerLoss stop after a crash is
        dated there). The meter moves a register only at its charger's events: read at
        `at`, it was true then, not at `at` (a car drew power since). The rows whose pk is in
        `leased` name the writer's `lease` (`EngineLease`): while the lease is stamped the
        register is known unchanged, so the charger is known alive until the lease's time;
        the others name none."""
        if not registers:
            return
        table = self.model._meta.db_table
        greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
        adapt = connection.ops.adapt_datetimefield_value
        stamp = adapt(at)
        # Chargers metered at one tick share its time: adapted once (a string on SQLite).
        stamps: dict[datetime, Any] = {}
        # One flat list, built in one pass: no tuple per row.
        values: list[Any] = []
        for charger, register, status, pk in registers:
            when = metered.get(charger) if metered else None
            if when is None:
                row_stamp = stamp
            else:
                row_stamp = stamps.get(when)
                if row_stamp is None:
                    row_stamp = stamps[when] = adapt(when)
            values += (register, status, row_stamp, lease if pk in leased else None, pk)
        execute_values(
            f"UPDATE {table} SET register_wh = {greatest}({table}.register_wh, v.column1), "
            f"status = v.column2, checkpointed_at = v.column3, lease_id = v.column4 "
            f"FROM {{rows}} WHERE {table}.id = v.column5",
            values,
            ("double precision", "text", "timestamp with time zone", "bigint", "bigint"),
        )

    def connector_ids(self, charger_pk: int) -> list[int]:
        return list(self.filter(charger_id=charger_pk).values_list("connector_id", flat=True))

    def set_availability(self, charger_pk: int, connectors: dict[int, str]) -> None:
        for connector_id, value in connectors.items():
            self.filter(charger_id=charger_pk, connector_id=connector_id).update(availability=value)


class Evse(models.Model):
    class ConnectorType(models.TextChoices):
        TYPE2 = "Type2", "Type 2 (socket)"
        TYPE2_CABLE = "Type2Cable", "Type 2 (tethered cable)"
        TYPE1 = "Type1", "Type 1"
        CCS2 = "CCS2", "CCS2"
        CCS1 = "CCS1", "CCS1"
        CHADEMO = "CHAdeMO", "CHAdeMO"
        SCHUKO = "Schuko", "Schuko"

    class Availability(models.TextChoices):
        OPERATIVE = "Operative", "Operative"
        INOPERATIVE = "Inoperative", "Inoperative"

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="evses")
    connector_id = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(99)]
    )
    connector_type = models.CharField(
        max_length=12, choices=ConnectorType.choices, default=ConnectorType.TYPE2
    )
    max_power_kw = models.FloatField(
        "max power (kW)", validators=[MinValueValidator(0.1), MaxValueValidator(1000)]
    )
    availability = models.CharField(
        max_length=12, choices=Availability.choices, default=Availability.OPERATIVE
    )
    register_wh = models.FloatField(
        "meter register (Wh)",
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Energy.Active.Import.Register; it never decreases.",
    )
    status = models.CharField(
        max_length=16,
        default="Available",
        editable=False,
        help_text="Last status the simulator reported.",
    )
    # When register_wh was true, as the checkpoint that wrote it says: the engine last
    # metered the connector then (a PowerLoss stop after a crash is dated here).
    checkpointed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The engine's lease (`EngineLease`) that vouches for this row after checkpointed_at:
    # the writer kept the register unchanged while it stamped the lease, so the charger is
    # known alive with this register until the lease's time too (None: only until
    # checkpointed_at), and the register true then if the connector was not charging.
    # A plain number, not a foreign key: leases are never joined.
    lease_id = models.BigIntegerField(null=True, blank=True, editable=False)

    objects = EvseManager()

    # What a person edits; the rest of an EVSE is the engine's (register, status, the
    # availability a CSMS set, the checkpoint time).
    WEB_FIELDS = ["connector_id", "connector_type", "max_power_kw"]
    # The connectors that deliver DC; the others deliver AC. A charger's power type decides
    # which it may have: the engine simulates the whole charger as AC or as DC (phases,
    # DC voltage), so a CCS2 on an AC charger would charge as a 3-phase AC socket.
    DC_CONNECTORS = frozenset({ConnectorType.CCS2, ConnectorType.CCS1, ConnectorType.CHADEMO})

    class Meta:
        ordering = ["charger", "connector_id"]
        verbose_name = "EVSE"
        verbose_name_plural = "EVSEs"
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "connector_id"], name="evse_connector_unique_per_charger"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger_id and self.charger.charge_point_id} #{self.connector_id}"

    @property
    def reported_register_wh(self) -> int:
        """The register as the charger reports it to the CSMS: whole Wh, cut, not rounded
        (meterStop 48 where 48.9 Wh rounded to 49 on the page)."""
        return int(self.register_wh)

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Evse:
        instance = super().from_db(db, field_names, values)
        # The register as read: a form that does not set it must not trip over the engine
        # raising it meanwhile (see clean()).
        instance._loaded_register_wh = instance.__dict__.get("register_wh")  # type: ignore[attr-defined]  # set per instance
        return instance

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.pk and self.register_wh != getattr(self, "_loaded_register_wh", None):
            stored = Evse.objects.filter(pk=self.pk).values_list("register_wh", flat=True).first()
            if stored is not None and self.register_wh < stored:
                errors["register_wh"] = (
                    f"The meter register never goes back (it is at {stored:g} Wh)."
                )
        try:
            # The admin's inline sets the charger being saved (its new power type), unsaved
            # for a new one; a form without a charger leaves it unset.
            charger: Charger | None = self.charger
        except Charger.DoesNotExist:
            charger = None
        if charger is not None:
            problem = self.power_type_problem(self.connector_type, charger.power_type)
            if problem:
                errors["connector_type"] = problem
        if errors:
            raise ValidationError(errors)

    def deletion_refused(self) -> str | None:
        """Why this connector may not be deleted now (None: it may): a transaction is open
        on it. Its meterStart and MeterValues count on this row's register, which the
        engine's checkpoints then no longer write (a crash would lose it), and the engine
        keeps the connector until the session ends anyway. A charger taken out of service
        (deleted or disabled) ends its sessions itself; a connector is not, so the caller
        stops the session first."""
        open_ = (
            Transaction.objects.filter(
                charger_id=self.charger_id,
                connector_id=self.connector_id,
                state=Transaction.State.OPEN,
            )
            .order_by("id")
            .first()
        )
        if open_ is None:
            return None
        name = open_.transaction_id if open_.transaction_id is not None else open_.local_id
        return (
            f"Connector {self.connector_id} of {self.charger.charge_point_id} has transaction "
            f"{name} in progress; stop it first."
        )

    @classmethod
    def power_type_problem(cls, connector_type: str, power_type: str) -> str | None:
        """Why an EVSE with this connector type cannot be on a charger of this power type
        (None: it can, or either is not a known value, which its own field reports). Every
        EVSE write asks this: the model's clean (admin, API), the import and the API's
        EVSE lists (`chargers.evse_layout.power_type_problems`)."""
        if connector_type not in cls.ConnectorType.values:
            return None
        if power_type not in Charger.PowerType.values:
            return None
        dc = connector_type in cls.DC_CONNECTORS
        if dc == (power_type == Charger.PowerType.DC):
            return None
        fits = [t for t in cls.ConnectorType.values if (t in cls.DC_CONNECTORS) != dc]
        kind, charger = ("a DC", "an AC") if dc else ("an AC", "a DC")
        return (
            f"{connector_type} is {kind} connector; {charger} charger takes {power_type} "
            f"connectors only ({', '.join(fits)})."
        )


class ConfigurationKeyManager(models.Manager["ConfigurationKey"]):
    def seed_defaults(self, charger: Charger) -> None:
        """Give a charger the Core defaults it lacks (existing values are kept)."""
        existing = set(self.filter(charger=charger).values_list("key", flat=True))
        count = charger.evses.count() or 1
        self.bulk_create(
            [
                self.model(
                    charger=charger,
                    key=key,
                    value=value,
                    readonly=config_keys.KEYS[key].readonly,
                )
                for key, value in config_keys.defaults(count).items()
                if key not in existing
            ]
        )

    def write_values(self, values: dict[tuple[int, str], str]) -> None:
        """Store (charger pk, key) -> value: changed rows updated, new keys created (with
        the key table's read-only flag)."""
        if not values:
            return
        existing = {
            (row.charger_id, row.key): row
            for row in self.filter(
                charger_id__in={pk for pk, _ in values}, key__in={key for _, key in values}
            )
        }
        updates, creates = [], []
        for (charger_pk, key), value in values.items():
            row = existing.get((charger_pk, key))
            if row is None:
                spec = config_keys.KEYS.get(key)
                creates.append(
                    self.model(
                        charger_id=charger_pk,
                        key=key,
                        value=value,
                        readonly=bool(spec and spec.readonly),
                    )
                )
            elif row.value != value:
                row.value = value
                updates.append(row)
        self.bulk_update(updates, ["value"])
        self.bulk_create(creates)


class ConfigurationKey(models.Model):
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="configuration")
    key = models.CharField(max_length=50)
    value = models.CharField(max_length=500, blank=True)
    readonly = models.BooleanField(default=False)

    objects = ConfigurationKeyManager()

    class Meta:
        ordering = ["charger", "key"]
        verbose_name = "OCPP configuration key"
        constraints = [
            models.UniqueConstraint(fields=["charger", "key"], name="config_key_unique_per_charger")
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"

    def clean(self) -> None:
        for field in ("key", "value"):
            if not is_one_line(getattr(self, field)):
                raise ValidationError(
                    {field: "One line of text (no line breaks or control characters)."}
                )
        if self.key == "AuthorizationKey":
            raise ValidationError(
                {"key": "AuthorizationKey is set on the charger itself (it is write-only)."}
            )
        twin = config_keys.case_twin_problem(self.key) or self.stored_twin_problem()
        if twin is not None:
            raise ValidationError({"key": twin})
        spec = config_keys.KEYS.get(self.key)
        if spec is not None:
            try:
                self.value = config_keys.normalise(self.key, self.value)
            except config_keys.InvalidValue as exc:
                raise ValidationError({"value": str(exc)}) from None
            # An OCPP key's flag is the protocol's: the charger reports it so whatever is
            # stored (GetConfiguration), and a stored flag saying otherwise would mislead.
            self.readonly = spec.readonly

    def stored_twin_problem(self) -> str | None:
        """Why this row's key, new or renamed, may not join its charger's stored keys: one
        differs from it only in case (`config_keys.custom_twin_problem`). A row keeping
        its key is let be: an older pair stays editable until one of it is deleted."""
        if self.charger_id is None:  # a charger being added: no stored keys yet
            return None
        stored = dict(
            ConfigurationKey.objects.filter(charger_id=self.charger_id).values_list("pk", "key")
        )
        if stored.get(self.pk) == self.key:
            return None
        others = [key for pk, key in stored.items() if pk != self.pk]
        return config_keys.custom_twin_problem(self.key, others)

    @staticmethod
    def deletion_refused(key: str, instead: str, *, done: str = "deleted") -> str | None:
        """Why key `key` may not be deleted (or, `done`, renamed), `instead` saying what to
        do; None for a custom key."""
        if not config_keys.is_standard(key):
            return None
        return (
            f"{key} is a standard OCPP key (every charger has it): it cannot be {done}; {instead}."
        )


class TransactionValues(TypedDict):
    """A transaction row as the engine writes it: the one list of its fields."""

    charger_id: int
    connector_id: int
    local_id: str
    id_tag: str
    transaction_id: int | None
    meter_start: int
    meter_stop: int | None
    started_at: str
    stopped_at: str
    stop_reason: str
    state: str


# What a later write of the same transaction may change (the rest is fixed at its start).
TRANSACTION_UPDATED = ("transaction_id", "meter_stop", "stopped_at", "stop_reason", "state")


class TransactionManager(models.Manager["Transaction"]):
    def upsert(self, rows: Sequence[TransactionValues]) -> None:
        """Insert or update by local id (a burst of starts writes hundreds at once)."""
        if not rows:
            return
        fields = list(TransactionValues.__annotations__)
        model_fields = [self.model._meta.get_field(name) for name in fields]
        updates = ", ".join(f"{name} = excluded.{name}" for name in TRANSACTION_UPDATED)
        execute_rows(
            f"INSERT INTO {self.model._meta.db_table} ({', '.join(fields)}) "
            f"SELECT * FROM {{rows}} WHERE true ON CONFLICT (local_id) DO UPDATE SET {updates}",
            [tuple(row[name] for name in fields) for row in rows],  # type: ignore[literal-required]  # names are the TypedDict's own keys
            [_array_type(field) for field in model_fields],
        )

    def open_on(self, charger_pks: Iterable[int]) -> set[int]:
        """Which of these chargers have a transaction still open (in batches of 500)."""
        wanted = sorted(set(charger_pks))
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            found.update(
                self.filter(
                    charger_id__in=wanted[start : start + 500], state=self.model.State.OPEN
                ).values_list("charger_id", flat=True)
            )
        return found


class Transaction(models.Model):
    """A charging session as the simulated charger knows it (survives a restart)."""

    class State(models.TextChoices):
        OPEN = "open", "open"
        STOPPED = "stopped", "stopped"

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="transactions")
    connector_id = models.PositiveSmallIntegerField()
    local_id = models.CharField(max_length=40, unique=True)
    id_tag = models.CharField(max_length=20)
    # 64-bit: OCPP says only "integer", and a CSMS may hand out ids past 2^31; the engine
    # accepts what a signed 64-bit column holds on every backend.
    transaction_id = models.BigIntegerField(
        null=True, blank=True, help_text="The CSMS's id, once StartTransaction was confirmed."
    )
    meter_start = models.BigIntegerField()
    meter_stop = models.BigIntegerField(null=True, blank=True)
    started_at = models.CharField(max_length=32)
    stopped_at = models.CharField(max_length=32, blank=True)
    stop_reason = models.CharField(max_length=20, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)

    objects = TransactionManager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["charger", "state"])]

    def __str__(self) -> str:
        return f"{self.charger_id}#{self.connector_id} {self.transaction_id or self.local_id}"


# A transaction's messages, whatever their local transaction id says.
_TRANSACTION_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


class OutboxMessageManager(models.Manager["OutboxMessage"]):
    """At fleet scale a MeterValues is written and deleted every sample: one INSERT and one
    DELETE per batch, no model instances and no query per charger."""

    def held_for(self, charger_pks: Iterable[int], *, sessions: bool = False) -> set[int]:
        """Which of these chargers have messages in the outbox (unconfirmed, or confirmed
        and not yet deleted by their worker's next checkpoint); `sessions`: only a
        transaction's (a SecurityEventNotification, say, is no session's)."""
        wanted = sorted(set(charger_pks))
        rows = self.all()
        if sessions:
            rows = rows.filter(
                ~models.Q(local_tx_id="") | models.Q(action__in=_TRANSACTION_ACTIONS)
            )
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            found.update(
                rows.filter(charger_id__in=wanted[start : start + 500])
                .values_list("charger_id", flat=True)
                .distinct()
            )
        return found

    def add(self, rows: Sequence[tuple[int, int, str, str | dict[str, Any], str]]) -> None:
        """(charger pk, seq, action, payload, local transaction id) rows, the payload as
        its JSON text (the engine encodes it once, for this row and the wire) or a dict; a
        row already stored is left as it is (a batch written again after a crash is
        harmless)."""
        if not rows:
            return
        jsonb = "::jsonb" if connection.vendor == "postgresql" else ""
        # Adapted once per batch, not once per row by the driver.
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        # The statement's values in one flat list, each row as given and its time: no
        # tuple per row (a MeterValues row per charger and second at fleet scale).
        values: list[Any] = []
        extend, append = values.extend, values.append
        for row in rows:
            extend(row)
            append(now)
        payloads = values[3::6]
        if set(map(type, payloads)) != {str}:  # a dict (rare): the loop could not encode it
            for n, payload in enumerate(payloads):
                if type(payload) is not str:
                    values[3 + 6 * n] = orjson.dumps(payload).decode()
        execute_values(
            f"INSERT INTO {self.model._meta.db_table} "
            "(charger_id, seq, action, payload, local_tx_id, attempts, created) "
            f"SELECT v.column1, v.column2, v.column3, v.column4{jsonb}, v.column5, 0, v.column6 "
            "FROM {rows} WHERE true ON CONFLICT DO NOTHING",
            values,
            ("bigint", "bigint", "text", "text", "text", "timestamp with time zone"),
        )

    def remove(self, keys: Sequence[tuple[int, int]]) -> None:
        """Delete the (charger pk, seq) rows the CSMS confirmed."""
        execute_rows(
            f"DELETE FROM {self.model._meta.db_table} WHERE (charger_id, seq) IN "
            "(SELECT v.column1, v.column2 FROM {rows})",
            keys,
            ("bigint", "bigint"),
        )


class TrustedJSONField(models.JSONField):
    """A JSONField without SQLite's `JSON_VALID` CHECK, for a column that only the engine's
    writer fills, with text `orjson` encoded (or Django's JSON encoder, for a row written
    through the ORM): SQLite would parse every payload again on each INSERT, a MeterValues
    a second per charger. Read back as JSONField is; PostgreSQL's jsonb checks as before."""

    def db_check(self, connection: Any) -> str | None:
        return None


class OutboxMessage(models.Model):
    """A transaction message written before it is sent, deleted once the CSMS confirms it."""

    # No index of its own: the unique (charger, seq) index serves every look-up by charger
    # (a charger's deletion included), and each index costs every INSERT and DELETE.
    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, related_name="outbox", db_index=False
    )
    seq = models.BigIntegerField(help_text="Order of sending within the charger.")
    action = models.CharField(max_length=40)
    payload = TrustedJSONField()
    local_tx_id = models.CharField(max_length=40, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    objects = OutboxMessageManager()

    class Meta:
        ordering = ["charger", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["charger", "seq"], name="outbox_seq_unique_per_charger")
        ]

    def __str__(self) -> str:
        return f"{self.charger_id}/{self.seq} {self.action}"


class ChargingProfileRecordManager(models.Manager["ChargingProfileRecord"]):
    def store(self, profiles: dict[int, list[dict[str, Any]]], *, replace: bool = True) -> None:
        """Charger pk -> its installed profiles ({connectorId, csChargingProfiles}): they
        replace those stored, or with `replace` False are added to them."""
        if not profiles:
            return
        if replace:
            self.filter(charger_id__in=list(profiles)).delete()
        self.bulk_create(
            self.model(
                charger_id=charger_pk,
                connector_id=item["connectorId"],
                profile_id=item["csChargingProfiles"]["chargingProfileId"],
                purpose=item["csChargingProfiles"]["chargingProfilePurpose"],
                stack_level=item["csChargingProfiles"]["stackLevel"],
                body=item["csChargingProfiles"],
            )
            for charger_pk, items in profiles.items()
            for item in items
        )


class ChargingProfileRecord(models.Model):
    """An installed charging profile, as the charger stores it across reboots."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="profiles")
    connector_id = models.PositiveSmallIntegerField()
    profile_id = models.BigIntegerField()  # 64-bit, as transaction_id
    purpose = models.CharField(max_length=24)
    stack_level = models.PositiveSmallIntegerField()
    body = models.JSONField(help_text="csChargingProfiles as received.")

    objects = ChargingProfileRecordManager()

    class Meta:
        ordering = ["charger", "connector_id", "purpose", "-stack_level"]
        verbose_name = "charging profile"

    def __str__(self) -> str:
        return f"{self.purpose} #{self.profile_id} on {self.connector_id}"


class EngineLeaseManager(models.Manager["EngineLease"]):
    def stamp(self, lease: int | None, at: datetime) -> int:
        """Move a lease to `at` (made first if `lease` is None); its pk."""
        if lease is None:
            return int(self.create(alive_at=at).pk)
        self.filter(pk=lease).update(alive_at=at)
        return lease

    def alive(self, leases: Iterable[int]) -> dict[int, datetime]:
        return dict(self.filter(pk__in=list(leases)).values_list("pk", "alive_at"))


class EngineLease(models.Model):
    """One engine process's liveness: its full checkpoints move `alive_at` (one row a
    second instead of every open transaction's registers). An EVSE row that names the lease
    had its register unchanged at each of those checkpoints until its charger's
    transactions ended, when the row is written again without the lease."""

    alive_at = models.DateTimeField()

    objects = EngineLeaseManager()

    def __str__(self) -> str:
        return f"engine lease {self.pk} (alive at {self.alive_at})"


class PluggedVehicleManager(models.Manager["PluggedVehicle"]):
    def store(self, vehicles: dict[int, dict[int, dict[str, Any] | None]]) -> None:
        """Charger pk -> {EVSE pk: its vehicle's record, or None: none plugged in}. An
        EVSE deleted meanwhile is left out (a few rows: plug-ins are rare)."""
        records = {evse: record for per in vehicles.values() for evse, record in per.items()}
        if not records:
            return
        self.filter(evse_id__in=list(records)).delete()
        kept = {pk: record for pk, record in records.items() if record is not None}
        if kept:
            alive = Evse.objects.filter(pk__in=list(kept)).values_list("pk", flat=True)
            self.bulk_create(self.model(evse_id=pk, record=kept[pk]) for pk in alive)


class PluggedVehicle(models.Model):
    """The vehicle plugged into an EVSE, as the engine last wrote it, so that a restart of
    the simulator plugs it back in (a restart is a power cycle: the car stays parked).
    The engine's, as the register: `simulator.core.vehicle.plugged_record`."""

    evse = models.OneToOneField(
        Evse, on_delete=models.CASCADE, primary_key=True, related_name="plugged_vehicle"
    )
    record = models.JSONField()

    objects = PluggedVehicleManager()

    def __str__(self) -> str:
        # What a delete page lists: "vehicle on EVSE 25" named the row's internal key, not
        # the car nor its connector. The record has the car (no query per row).
        spec = self.record.get("spec") if isinstance(self.record, dict) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        soc = self.record.get("soc") if isinstance(self.record, dict) else None
        at = f" at {soc:.0f} %" if isinstance(soc, int | float) else ""
        return f"{name or 'a vehicle'} plugged in{at}"


class SecurityLogEntryManager(models.Manager["SecurityLogEntry"]):
    def store(
        self,
        events: dict[int, list[tuple[str, str, str | None, bool]]],
        keep: int,
        *,
        full: Iterable[int] = (),
    ) -> None:
        """Charger pk -> its new security events (type, timestamp, techInfo, pushed), oldest
        first. The chargers in `full` keep their newest `keep` (their log in memory was full:
        it dropped its oldest; the others have fewer, and no query looks). A charger deleted
        meanwhile is left out (events are rare: a few rows)."""
        if not events:
            return
        alive = set(Charger.objects.filter(pk__in=list(events)).values_list("pk", flat=True))
        self.bulk_create(
            self.model(
                charger_id=pk, kind=kind[:50], timestamp=at[:40], tech_info=info or "", sent=sent
            )
            for pk, new in events.items()
            if pk in alive
            for kind, at, info, sent in new
        )
        for pk in alive.intersection(full):
            newest = self.filter(charger_id=pk).order_by("-pk").values_list("pk", flat=True)
            oldest_kept = list(newest[keep - 1 : keep])
            if oldest_kept:
                self.filter(charger_id=pk, pk__lt=oldest_kept[0]).delete()


class SecurityLogEntry(models.Model):
    """A security event of a charger's security log (1.6 security whitepaper), as the engine
    wrote it, so that the log survives a restart as a charger's flash keeps it (GetLog
    uploads it, the charger page shows it). The engine's: `simulator.core.security_log`."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField("type", max_length=50)
    timestamp = models.CharField(max_length=40, help_text="As sent: ISO 8601, UTC.")
    tech_info = models.TextField(blank=True, help_text="Empty: none was given.")
    sent = models.BooleanField(help_text="Pushed to the CSMS, or only logged.")

    objects = SecurityLogEntryManager()

    class Meta:
        verbose_name_plural = "security log entries"

    def __str__(self) -> str:
        return f"{self.kind} at {self.timestamp}"


class RuntimeStateManager(models.Manager["RuntimeState"]):
    def set_unavailable(self, charger_pk: int, unavailable: bool) -> None:
        """The whole charger's availability (ChangeAvailability on connector 0)."""
        self.update_or_create(charger_id=charger_pk, defaults={"charger_unavailable": unavailable})

    def set_local_list_versions(self, versions: dict[int, int]) -> None:
        for charger_pk, version in versions.items():
            self.update_or_create(charger_id=charger_pk, defaults={"local_list_version": version})

    def set_clock_offsets(self, offsets: dict[int, float]) -> None:
        """Charger pk -> its clock's offset from the host's, as a clock step left it."""
        for charger_pk, offset in offsets.items():
            self.update_or_create(charger_id=charger_pk, defaults={"clock_offset_s": offset})

    def claim(self, charger_pks: Iterable[int], lease: int) -> None:
        """These chargers are run by the engine of `lease` from now on (`holder`), under a
        new claims version (`ChargerClaims`): an engine that ran them before finds them in
        `claimed_since` at its next write, and writes nothing more of theirs. The version
        is moved first: its row lock waits for the writes in progress (see
        `ChargerClaims.read`), so that the claimer then reads what they wrote."""
        pks = list(charger_pks)
        with transaction.atomic():
            version = ChargerClaims.objects.bump()
            self.filter(charger_id__in=pks).update(holder=lease, claim=version)
            have = set(self.filter(charger_id__in=pks).values_list("charger_id", flat=True))
            self.bulk_create(
                [
                    RuntimeState(charger_id=pk, holder=lease, claim=version)
                    for pk in pks
                    if pk not in have
                ],
                ignore_conflicts=True,
            )

    def claimed_since(self, seen: int | None, lease: int) -> tuple[int, set[int]]:
        """The claims version now, and the chargers another engine than `lease`'s claimed
        after version `seen` (None: ever). Inside a writing transaction: one small read
        when nothing was claimed since (the fleet's checkpoints ask it at every write)."""
        version = ChargerClaims.objects.read()
        if version == seen:
            return version, set()
        found = self.filter(holder__isnull=False).exclude(holder=lease)
        if seen is not None:
            found = found.filter(claim__gt=seen)
        return version, set(found.values_list("charger_id", flat=True))


class ChargerClaimsManager(models.Manager["ChargerClaims"]):
    def bump(self) -> int:
        """The next claims version (in the caller's transaction, its row locked till then)."""
        if not self.filter(pk=1).update(version=models.F("version") + 1):
            self.get_or_create(pk=1)
            self.filter(pk=1).update(version=models.F("version") + 1)
        return int(self.values_list("version", flat=True).get(pk=1))

    def read(self) -> int:
        """The claims version, in a writing transaction: on PostgreSQL its row is share-
        locked until that commits, so a claim (`bump`) waits for the write in progress and
        one made first is seen. SQLite lets one writer at a time anyway."""
        table = connection.ops.quote_name(self.model._meta.db_table)
        lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT version FROM {table} WHERE id = 1{lock}")
            row = cursor.fetchone()
        return int(row[0]) if row else 0


class ChargerClaims(models.Model):
    """One row: how many times chargers were claimed (`RuntimeStateManager.claim`). A worker
    compares it with what it saw at its last write: unchanged, no charger of its can have
    been taken on by another."""

    version = models.BigIntegerField(default=0)

    objects = ChargerClaimsManager()

    def __str__(self) -> str:
        return f"charger claims, version {self.version}"


class RuntimeState(models.Model):
    """Per-charger state the engine keeps across restarts (boot, availability, caches)."""

    charger = models.OneToOneField(Charger, on_delete=models.CASCADE, related_name="runtime")
    charger_unavailable = models.BooleanField(default=False)
    outbox_seq = models.BigIntegerField(default=0)
    auth_cache = models.JSONField(default=dict, blank=True)
    # Seconds the charger's clock runs ahead of the host's, as the CSMS's currentTime last
    # stepped it (written at a step, not with every checkpoint): checkpoint and lease times
    # are the host's, a PowerLoss stop is dated on the charger's clock, and the restarted
    # charger starts with it, as a real-time clock keeps its time through a power cut.
    clock_offset_s = models.FloatField(default=0.0, editable=False)
    # 64-bit, as the CSMS's other numbers: SendLocalList's listVersion is any integer.
    local_list_version = models.BigIntegerField(default=0)
    # The engine that runs the charger (its `EngineLease`), in the scaled-out mode: one
    # taking on a charger from another shard claims it, and a worker that had it and
    # stalled meanwhile then finds its later writes refused (`claimed_since`).
    holder = models.BigIntegerField(null=True, blank=True, editable=False)
    claim = models.BigIntegerField(default=0, editable=False)  # its `ChargerClaims` version
    updated = models.DateTimeField(auto_now=True)

    objects = RuntimeStateManager()

    def __str__(self) -> str:
        return f"runtime of {self.charger_id}"


def _array_type(field: Any) -> str:
    """A field's column type for a PostgreSQL array cast (`execute_rows` on PostgreSQL)."""
    return str(field.db_type(connection))


# -- the message log (every OCPP frame and connection event, bounded) -------------------------

# A log row as the engine writes it, in the order of the columns: (charger pk, Unix time,
# kind, direction, message id, action, size, payload, and for a CALL whose answer came in
# the same batch: the answer's time, size and payload; else None, None, "").
FrameLogRow = tuple[int, float, str, str, str, str, int, str, float | None, int | None, str]


class LoggedFrame(NamedTuple):
    """One frame (or connection event) of a row: a row holds one or, for a CALL and its
    answer, two."""

    part: int  # 0: the row's own frame; 1: the answer stored with it
    at: float
    kind: str
    direction: str
    message_id: str
    action: str
    size: int
    payload: str


class FrameLogManager(models.Manager["FrameLogEntry"]):
    """Written by the engine's checkpoint writer in one statement per batch (thousands of
    frames a second at fleet scale: no model instances), and pruned in bounded steps."""

    def add(self, rows: Sequence[FrameLogRow]) -> None:
        self.add_values(list(chain.from_iterable(rows)))

    def add_values(self, values: list[Any]) -> None:
        """`add` with the rows' values in one list, one row after the other."""
        execute_values(
            f"INSERT INTO {self.model._meta.db_table} (charger_id, at, kind, direction, "
            "message_id, action, size, payload, answer_at, answer_size, answer_payload) "
            "SELECT * FROM {rows}",
            values,
            (
                "bigint",
                "double precision",
                "text",
                "text",
                "text",
                "text",
                "integer",
                "text",
                "double precision",
                "integer",
                "text",
            ),
        )

    def prune(self, *, max_rows: int, before: float, limit: int = 20_000) -> int:
        """Delete up to `limit` of the oldest rows: those beyond the newest `max_rows`, and
        those logged before the Unix time `before`. Returns how many were deleted (a full
        `limit` means more are due).

        By id, which grows with time: the newest `max_rows` ids are kept (a hole left by a
        deleted charger only makes it keep fewer), and an age step deletes within the
        oldest `limit` ids, so that neither step scans the table."""
        table = self.model._meta.db_table
        with connection.cursor() as cursor:
            # Two subqueries: SQLite reads MIN and MAX off the index only one at a time (both
            # in one SELECT scan the table).
            cursor.execute(f"SELECT (SELECT MIN(id) FROM {table}), (SELECT MAX(id) FROM {table})")
            low, high = cursor.fetchone()
            if low is None:
                return 0
            keep_from = min(high - max_rows + 1, low + limit)
            deleted = 0
            if keep_from > low:
                cursor.execute(f"DELETE FROM {table} WHERE id < %s", [keep_from])
                deleted = cursor.rowcount
                low = keep_from
            if deleted < limit:
                cursor.execute(
                    f"DELETE FROM {table} WHERE id < %s AND at < %s",
                    [low + limit - deleted, before],
                )
                deleted += cursor.rowcount
        return deleted


class FrameLogEntry(models.Model):
    """One OCPP frame a charger sent or received, or an event of its connection, as the
    engine logged it (redacted: an AuthorizationKey is never stored). A CALL and its answer
    share a row when the answer came in the same batch (nearly always): the log's cost is
    per row, and this halves the rows."""

    class Kind(models.TextChoices):
        FRAME = "frame", "frame"
        CONNECTION = "connection", "connection"

    # No database constraint: a frame of a charger deleted a moment before its batch is
    # written must not fail the batch (such rows are pruned with the old ones); Django
    # still deletes a charger's log with it. No index of its own: see Meta.
    charger = models.ForeignKey(
        Charger,
        on_delete=models.CASCADE,
        related_name="frame_log",
        db_constraint=False,
        db_index=False,
    )
    at = models.FloatField(help_text="When it was logged (Unix time, seconds).")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    direction = models.CharField(max_length=3, blank=True, help_text='"in", "out" or empty.')
    message_id = models.TextField(blank=True)
    action = models.TextField(
        blank=True, help_text="The CALL's action (an answer's is its CALL's); the event's name."
    )
    size = models.IntegerField(help_text="The frame's length in characters, before any cut.")
    payload = models.TextField(
        help_text="The frame as on the wire (cut to the log's limit); an event's details (JSON)."
    )
    # The answer to this CALL, when it came in the same batch (the other direction, the same
    # message id and action).
    answer_at = models.FloatField(null=True, blank=True)
    answer_size = models.IntegerField(null=True, blank=True)
    answer_payload = models.TextField(blank=True, default="")

    objects = FrameLogManager()

    class Meta:
        # Time first: rows arrive in time order, so each insert lands at the index's right
        # edge and each prune at its left (one by charger first would take an insert into
        # every charger's own part of the index, thousands of pages a second at fleet
        # scale). A charger's page reads this index and skips other chargers' entries in
        # the index itself, without reading their rows.
        indexes = [models.Index(fields=["at", "charger"], name="framelog_at_charger")]
        verbose_name = "message log entry"
        verbose_name_plural = "message log"

    def __str__(self) -> str:
        return f"{self.charger_id} {self.direction} {self.action or self.kind}"

    def frames(self) -> list[LoggedFrame]:
        return logged_frames(
            self.at,
            self.kind,
            self.direction,
            self.message_id,
            self.action,
            self.size,
            self.payload,
            self.answer_at,
            self.answer_size,
            self.answer_payload,
        )


def logged_frames(
    at: float,
    kind: str,
    direction: str,
    message_id: str,
    action: str,
    size: int,
    payload: str,
    answer_at: float | None,
    answer_size: int | None,
    answer_payload: str,
) -> list[LoggedFrame]:
    """The frames of a row, in the order they happened."""
    first = LoggedFrame(0, at, kind, direction, message_id, action, size, payload)
    if answer_at is None:
        return [first]
    back = "in" if direction == "out" else "out"
    answer = LoggedFrame(
        1, answer_at, kind, back, message_id, action, answer_size or 0, answer_payload
    )
    return [first, answer]


class ReservationRecordManager(models.Manager["ReservationRecord"]):
    def store(self, reservations: dict[int, list[dict[str, Any]]]) -> None:
        """Charger pk -> its reservations (`Reservation.as_record()`), replacing those
        stored (a charger holds one per connector at most: a few rows)."""
        if not reservations:
            return
        self.filter(charger_id__in=list(reservations)).delete()
        self.bulk_create(
            self.model(
                charger_id=charger_pk,
                reservation_id=item["reservation_id"],
                connector_id=item["connector_id"],
                id_tag=item["id_tag"],
                parent_id_tag=item.get("parent_id_tag") or "",
                expiry=item["expiry"],
            )
            for charger_pk, items in reservations.items()
            for item in items
        )


class ReservationRecord(models.Model):
    """A reservation a CSMS made (ReserveNow), as the charger keeps it across restarts."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="reservations")
    reservation_id = models.BigIntegerField()  # 64-bit, as transaction_id
    connector_id = models.PositiveSmallIntegerField(help_text="0: any connector.")
    id_tag = models.CharField(max_length=20)
    parent_id_tag = models.CharField(max_length=20, blank=True)
    expiry = models.CharField(max_length=40, help_text="expiryDate as the CSMS sent it.")

    objects = ReservationRecordManager()

    class Meta:
        ordering = ["charger", "connector_id"]
        verbose_name = "reservation"
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "reservation_id"], name="reservation_unique_per_charger"
            )
        ]

    def __str__(self) -> str:
        return f"reservation {self.reservation_id} of {self.id_tag} on {self.connector_id}"


class TagEntriesChange(TypedDict):
    """What changed in one charger's stored idTags: with `full`, every entry (the old ones
    go); without, the changed entries only (None: removed)."""

    full: bool
    entries: dict[str, dict[str, str] | None]  # idTag -> status, expiry, parent_id_tag


class LocalListChange(TagEntriesChange):
    """One accepted SendLocalList (or several merged) of one charger, as the engine writes
    it: every entry of a Full update, or the Differential's changes (None: removed)."""

    version: int


class TagEntryManager(models.Manager[Any]):
    """A charger's idTags (a local list may hold thousands): written in a few statements,
    no model instances."""

    def apply_entries(self, changes: Mapping[int, TagEntriesChange]) -> None:
        """Charger pk -> what changed in its idTags."""
        if not changes:
            return
        table = self.model._meta.db_table
        full = [(pk,) for pk, change in changes.items() if change["full"]]
        execute_rows(
            f"DELETE FROM {table} WHERE charger_id IN (SELECT v.column1 FROM {{rows}})",
            full,
            ("bigint",),
        )
        named = [
            (pk, id_tag)
            for pk, change in changes.items()
            if not change["full"]
            for id_tag in change["entries"]
        ]
        execute_rows(
            f"DELETE FROM {table} WHERE (charger_id, id_tag) IN "
            "(SELECT v.column1, v.column2 FROM {rows})",
            named,
            ("bigint", "text"),
        )
        execute_rows(
            f"INSERT INTO {table} (charger_id, id_tag, status, expiry, parent_id_tag) "
            "SELECT * FROM {rows} WHERE true",
            [
                (pk, id_tag, entry["status"], entry["expiry"], entry["parent_id_tag"])
                for pk, change in changes.items()
                for id_tag, entry in change["entries"].items()
                if entry is not None
            ],
            ("bigint", "text", "text", "text", "text"),
        )


class LocalAuthEntryManager(TagEntryManager):
    def apply(self, changes: dict[int, LocalListChange]) -> None:
        """Charger pk -> what changed in its list (and its version)."""
        if not changes:
            return
        self.apply_entries(changes)
        RuntimeState.objects.set_local_list_versions(
            {pk: change["version"] for pk, change in changes.items()}
        )


class TagEntry(models.Model):
    """An idTag a charger knows the CSMS's word on: its status, expiryDate and parentIdTag
    (IdTagInfo), as the local list and the authorization cache keep them."""

    id_tag = models.CharField(max_length=20)
    status = models.CharField(max_length=16)
    expiry = models.CharField(max_length=40, blank=True)
    parent_id_tag = models.CharField(max_length=20, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.id_tag}: {self.status}"


class LocalAuthEntry(TagEntry):
    """An idTag of a charger's Local Authorization List (SendLocalList)."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="local_list")

    objects = LocalAuthEntryManager()

    class Meta:
        ordering = ["charger", "id_tag"]
        verbose_name = "local authorization list entry"
        verbose_name_plural = "local authorization list entries"
        constraints = [
            models.UniqueConstraint(fields=["charger", "id_tag"], name="local_list_tag_unique")
        ]


class AuthCacheEntry(TagEntry):
    """An idTag of a charger's Authorization Cache: the last answer the CSMS gave it (1.6
    section 3.5.2: the cache SHOULD survive reboots and power outages). Rows of one charger
    in the order they were remembered (`id`): the oldest goes first when the cache is full."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="auth_cache")

    objects = TagEntryManager()

    class Meta:
        ordering = ["charger", "id"]
        verbose_name = "authorization cache entry"
        verbose_name_plural = "authorization cache entries"
        constraints = [
            models.UniqueConstraint(fields=["charger", "id_tag"], name="auth_cache_tag_unique")
        ]


# -- Security whitepaper (edition 3): the certificate store (issue 17, branch seccerts) -----


class CertificateStoreRecordManager(models.Manager["CertificateStoreRecord"]):
    def store(self, stores: dict[int, tuple[dict[str, Any], dict[str, str]]]) -> None:
        """Charger pk -> (its certificates, its private keys): one row per charger, the
        keys sealed (`chargers.sealed`) before they reach the database."""
        if not stores:
            return
        for charger_pk, (certificates, secrets) in stores.items():
            self.update_or_create(
                charger_id=charger_pk,
                defaults={"certificates": certificates, "sealed_keys": seal(secrets)},
            )


class CertificateStoreRecord(models.Model):
    """A charger's certificate store: the roots InstallCertificate put there and its own
    certificate chain (PEM, public), and its private keys, sealed under SECRET_KEY and never
    shown (not in the admin, an export, the API or a page)."""

    charger = models.OneToOneField(
        Charger, on_delete=models.CASCADE, related_name="certificate_store"
    )
    certificates = models.JSONField(default=dict, blank=True)
    sealed_keys = models.TextField(blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CertificateStoreRecordManager()

    class Meta:
        verbose_name = "certificate store"

    def __str__(self) -> str:
        roots = len(self.certificates.get("roots") or ())
        return f"{roots} root certificate(s), {'a' if self.certificates.get('chain') else 'no'} own"

    def secrets(self) -> dict[str, str]:
        return unseal(self.sealed_keys)
