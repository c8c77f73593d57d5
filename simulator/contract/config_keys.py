"""The OCPP 1.6 configuration keys a ChargeSim charger knows: type, default, access.

Plain Python: the engine validates ChangeConfiguration with it, and the web side uses it
to give new chargers their defaults, so each key is defined exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

SUPPORTED_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "SoC",
    "Current.Offered",
    "Power.Offered",
)


# The feature profiles of OCPP 1.6; a charger supports Core and any of the others.
FEATURE_PROFILES = (
    "Core",
    "SmartCharging",
    "RemoteTrigger",
    "Reservation",
    "LocalAuthListManagement",
    "FirmwareManagement",
)
DEFAULT_FEATURE_PROFILES = ",".join(FEATURE_PROFILES)
# What SupportedFeatureProfiles defaulted to before issue 17 (a migration moves chargers
# that kept it to the new default).
PREVIOUS_FEATURE_PROFILES = "Core,SmartCharging,RemoteTrigger"

# The longest value a key holds (the 1.6 CiString500 of ChangeConfiguration's value).
MAX_VALUE_CHARS = 500
_PLAIN_INTEGER = re.compile(r"-?[0-9]{1,18}")
_LONG_INTEGER = re.compile(r"-?[0-9]{19,}")
# The AuthorizationKey (1.6 security whitepaper, edition 3): 16 to 20 bytes, written in hex.
_HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{2}){16,20}")
# ConnectorPhaseRotation's values (1.6 section 9.1), each for the charger or, with a
# "<connectorId>." prefix, for one connector ("0.RST,1.RTS").
PHASE_ROTATIONS = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")
_PHASE_ROTATION = re.compile(rf"(?:[0-9]{{1,4}}\.)?(?:{'|'.join(PHASE_ROTATIONS)})")


class KeyType(StrEnum):
    INT = "int"
    BOOL = "bool"
    STR = "str"
    MEASURANDS = "measurands"
    PROFILES = "profiles"
    PHASE_ROTATION = "phase_rotation"
    HEX_KEY = "hex_key"


@dataclass(frozen=True, slots=True)
class KeySpec:
    name: str
    type: KeyType
    default: str
    readonly: bool = False
    minimum: int | None = 0
    maximum: int | None = None
    write_only: bool = False
    reboot_required: bool = False
    # Kept on the charger itself (a column of its row), not in its configuration table.
    on_charger: bool = False


class InvalidValue(ValueError):
    """The value is of the wrong type or out of range: ChangeConfiguration answers Rejected."""


_KEYS = (
    KeySpec("HeartbeatInterval", KeyType.INT, "300", maximum=86_400),
    KeySpec("MeterValueSampleInterval", KeyType.INT, "60", maximum=86_400),
    KeySpec(
        "MeterValuesSampledData",
        KeyType.MEASURANDS,
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
    ),
    KeySpec("ClockAlignedDataInterval", KeyType.INT, "0", maximum=86_400),
    KeySpec("MeterValuesAlignedData", KeyType.MEASURANDS, "Energy.Active.Import.Register"),
    KeySpec("StopTxnSampledData", KeyType.MEASURANDS, "Energy.Active.Import.Register"),
    KeySpec("StopTxnAlignedData", KeyType.MEASURANDS, ""),
    KeySpec("ConnectionTimeOut", KeyType.INT, "60", maximum=3_600),
    KeySpec("TransactionMessageAttempts", KeyType.INT, "3", minimum=1, maximum=100),
    KeySpec("TransactionMessageRetryInterval", KeyType.INT, "20", maximum=3_600),
    KeySpec("StopTransactionOnEVSideDisconnect", KeyType.BOOL, "true"),
    KeySpec("UnlockConnectorOnEVSideDisconnect", KeyType.BOOL, "true"),
    KeySpec("StopTransactionOnInvalidId", KeyType.BOOL, "true"),
    KeySpec("AuthorizeRemoteTxRequests", KeyType.BOOL, "false"),
    KeySpec("LocalAuthorizeOffline", KeyType.BOOL, "true"),
    KeySpec("LocalPreAuthorize", KeyType.BOOL, "false"),
    KeySpec("AllowOfflineTxForUnknownId", KeyType.BOOL, "false"),
    KeySpec("AuthorizationCacheEnabled", KeyType.BOOL, "true"),
    KeySpec("NumberOfConnectors", KeyType.INT, "1", readonly=True),
    KeySpec("GetConfigurationMaxKeys", KeyType.INT, "50", readonly=True),
    KeySpec("SupportedFeatureProfiles", KeyType.PROFILES, DEFAULT_FEATURE_PROFILES, readonly=True),
    KeySpec("ConnectorPhaseRotation", KeyType.PHASE_ROTATION, "NotApplicable"),
    KeySpec("ResetRetries", KeyType.INT, "3", maximum=100),
    KeySpec("MinimumStatusDuration", KeyType.INT, "0", maximum=3_600),
    KeySpec("WebSocketPingInterval", KeyType.INT, "60", maximum=86_400),
    KeySpec("MessageTimeout", KeyType.INT, "30", minimum=1, maximum=600),
    KeySpec("StopTransactionMaxMeterValues", KeyType.INT, "50", readonly=True),
    KeySpec("AuthorizationKey", KeyType.HEX_KEY, "", write_only=True),
    KeySpec("ChargeProfileMaxStackLevel", KeyType.INT, "10", readonly=True),
    KeySpec("ChargingScheduleAllowedChargingRateUnit", KeyType.STR, "Current,Power", readonly=True),
    KeySpec("ChargingScheduleMaxPeriods", KeyType.INT, "24", readonly=True),
    KeySpec("MaxChargingProfilesInstalled", KeyType.INT, "10", readonly=True),
    # Reservation and Local Auth List Management (issue 17)
    KeySpec("ReserveConnectorZeroSupported", KeyType.BOOL, "false", readonly=True),
    KeySpec("LocalAuthListEnabled", KeyType.BOOL, "true"),
    KeySpec("LocalAuthListMaxLength", KeyType.INT, "1000", readonly=True, maximum=100_000),
    KeySpec("SendLocalListMaxLength", KeyType.INT, "1000", readonly=True, maximum=100_000),
    # -- Security whitepaper (edition 3): certificates (issue 17, branch seccerts) ----------
    # The size in characters of CertificateSigned's certificateChain (whitepaper: at most
    # 10,000), the number of certificates InstallCertificate may store, whether a new
    # CentralSystemRootCertificate must be signed by the one it replaces (all read-only on a
    # real charger: set them in the admin), and how SignCertificate is repeated.
    KeySpec("CertificateSignedMaxChainSize", KeyType.INT, "10000", readonly=True, maximum=10_000),
    KeySpec("CertificateStoreMaxLength", KeyType.INT, "10", readonly=True, maximum=1_000),
    KeySpec("AdditionalRootCertificateCheck", KeyType.BOOL, "false", readonly=True),
    KeySpec("CertSigningWaitMinimum", KeyType.INT, "60", minimum=1, maximum=86_400),
    KeySpec("CertSigningRepeatTimes", KeyType.INT, "3", maximum=100),
    # -- end of the certificate keys -------------------------------------------------------
    # -- Security whitepaper, edition 3 (issue 17): security profile and CPO name --------
    # (AuthorizationKey, above, is the whitepaper's too; the certificate keys are with the
    # certificate store.) SecurityProfile is the charger's `security_profile` column, as
    # the AuthorizationKey is a column: ChangeConfiguration may raise it (never lower it)
    # when the charger has what the higher profile needs, and the charger reconnects.
    KeySpec("SecurityProfile", KeyType.INT, "0", maximum=3, on_charger=True),
    # The organisation the charger's certificate is issued to (the CSR's O field).
    KeySpec("CpoName", KeyType.STR, ""),
)

KEYS: dict[str, KeySpec] = {spec.name: spec for spec in _KEYS}


def defaults(number_of_connectors: int) -> dict[str, str]:
    """The values a new charger starts with (AuthorizationKey lives on the charger itself)."""
    values = {spec.name: spec.default for spec in _KEYS if not (spec.write_only or spec.on_charger)}
    values["NumberOfConnectors"] = str(number_of_connectors)
    return values


_FOLDED = {key.casefold(): key for key in KEYS}


def standard_spelling(name: str) -> str | None:
    """The table's key `name` names in any case (None: none). OCPP 1.6 keys are CiString50,
    compared without regard to case: a CSMS may write "heartbeatinterval"."""
    return _FOLDED.get(name.casefold())


def case_twin(name: str) -> str | None:
    """The OCPP key `name` differs from only in case (None: none). A charger compares key
    names without regard to case (CiString50), so such a custom key could never be read or
    changed by a CSMS: it is nearly always a typing slip, and one that would show a
    secret's value in plain text where the real key is write-only."""
    twin = standard_spelling(name)
    return twin if twin is not None and twin != name else None


def case_twin_problem(name: str) -> str | None:
    """Why `name` is refused as a custom key (`case_twin`); None when it is not one."""
    twin = case_twin(name)
    if twin is None:
        return None
    return (
        f"{name!r} differs from the OCPP key {twin} only in case, and chargers compare key "
        f"names without regard to case: write {twin}."
    )


def custom_twin_problem(name: str, keys: Iterable[str]) -> str | None:
    """Why `name` is refused as a new custom key beside the charger's keys `keys`: one of
    them differs from it only in case. A CSMS names both the same way (CiString50) and the
    charger answers it with one (`ConfigValues.spelling`), so the other could never be
    read or changed. None when none does, and for a key of the table, which always wins."""
    if name in KEYS:
        return None
    folded = name.casefold()
    twin = next((key for key in keys if key != name and key.casefold() == folded), None)
    if twin is None:
        return None
    return (
        f"{name!r} differs from the key {twin} this charger has only in case, and chargers "
        f"compare key names without regard to case (a CSMS could reach only one of them): "
        f"write {twin}."
    )


def is_standard(name: str) -> bool:
    """A key every charger has (one of `defaults`): its value may change, the key not go, as
    the running charger goes on reporting it (GetConfiguration)."""
    spec = KEYS.get(name)
    return spec is not None and not (spec.write_only or spec.on_charger)


def normalise(name: str, value: str) -> str:
    """Check a value for a known key and return its canonical text; raise InvalidValue."""
    spec = KEYS[name]
    if spec.type is KeyType.INT:
        text = value.strip()
        # Plain ASCII digits only: str.isdigit() also takes "²" and int() takes "٣" or
        # "1_000", none of which a charger's configuration should read back. At most 18
        # digits: every bound fits, and int() never meets its digit limit.
        if _PLAIN_INTEGER.fullmatch(text) is None:
            if _LONG_INTEGER.fullmatch(text) is not None:  # whole, but far out of range
                below = text.startswith("-")
                bound = spec.minimum if below else spec.maximum
                if bound is not None:
                    raise InvalidValue(f"{name} must be at {'least' if below else 'most'} {bound}.")
                raise InvalidValue(f"{name}: {value[:40]!r} is out of range.")
            raise InvalidValue(f"{name} takes a whole number, not {value[:40]!r}.")
        number = int(text)
        if spec.minimum is not None and number < spec.minimum:
            raise InvalidValue(f"{name} must be at least {spec.minimum}.")
        if spec.maximum is not None and number > spec.maximum:
            raise InvalidValue(f"{name} must be at most {spec.maximum}.")
        return str(number)
    if spec.type is KeyType.BOOL:
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            raise InvalidValue(f"{name} takes true or false, not {value!r}.")
        return lowered
    if spec.type is KeyType.MEASURANDS:
        items = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in items if item not in SUPPORTED_MEASURANDS]
        if unknown:
            raise InvalidValue(f"{name}: unsupported measurand(s) {', '.join(unknown)}.")
        # Each once, in the order first named: the charger samples every item, and two
        # readings of one measurand (same context, phase and location) in a MeterValues
        # would read to a CSMS as a second meter, or add up.
        return ",".join(dict.fromkeys(items))
    if spec.type is KeyType.PROFILES:
        items = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in items if item not in FEATURE_PROFILES]
        if unknown:
            raise InvalidValue(f"{name}: unknown feature profile(s) {', '.join(unknown)}.")
        if "Core" not in items:
            raise InvalidValue(f"{name} must include Core.")
        return ",".join(dict.fromkeys(items))
    if spec.type is KeyType.PHASE_ROTATION:
        items = [item.strip() for item in value.split(",") if item.strip()]
        wrong = [item for item in items if _PHASE_ROTATION.fullmatch(item) is None]
        if not items or wrong:
            raise InvalidValue(
                f"{name} takes [connectorId.]rotation items, rotation one of "
                f"{', '.join(PHASE_ROTATIONS)}; not {value[:40]!r}."
            )
        return ",".join(items)
    if spec.type is KeyType.HEX_KEY:
        # The value is a secret: the message never quotes it, as it goes to the log. Kept
        # as written (not lower-cased): it is the HTTP Basic password the CSMS expects.
        if _HEX_KEY.fullmatch(value) is None:
            raise InvalidValue(
                f"{name} takes 16 to 20 bytes written as 32 to 40 hexadecimal digits."
            )
        return value
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidValue(f"{name} is longer than {MAX_VALUE_CHARS} characters.")
    return value


def as_bool(value: str) -> bool:
    return value == "true"


def as_list(value: str) -> list[str]:
    # Each item once: a list stored before `normalise` dropped repeats (a measurand named
    # twice) would otherwise be sampled twice. Parsed once per value (`ConfigValues`).
    return list(dict.fromkeys(item for item in value.split(",") if item))
