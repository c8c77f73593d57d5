"""What is wrong with a charger on purpose: answer overrides, a bad network, a wrong clock.

One object per charger (`Charger.impairments`) holds all of it, whoever set it: the
charger's row (persisted, applied at load and whenever the row's values change) or a drive
command (a scenario step, a script; gone at the next reboot of the simulator). The protocol
adapter reads it on every frame it sends and every CALL it answers; the core reads the
clock skew when it stamps a message.

Randomness (jitter, drops) comes from the charger's own `random.Random`, seeded from its
charge point id unless a seed is given, so that a run with the same seed drops the same
frames.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from simulator.core.answer_overrides import AnswerOverrides, Override


@dataclass(slots=True)
class NetworkConditions:
    latency_ms: int = 0
    jitter_ms: int = 0
    drop_rate: float = 0.0  # share of the charger's outgoing frames lost, 0..1

    @property
    def delays(self) -> bool:
        return self.latency_ms > 0 or self.jitter_ms > 0


@dataclass(slots=True, frozen=True)
class StoredImpairments:
    """The values of the charger's row (`ChargerSpec.impairments`): compared with the last
    ones applied, so that saving the row for another reason leaves run-time values alone."""

    answer_overrides: tuple[Override, ...] = ()
    latency_ms: int = 0
    jitter_ms: int = 0
    drop_rate: float = 0.0
    clock_skew_s: float = 0.0


@dataclass(slots=True)
class Impairments:
    answers: AnswerOverrides = field(default_factory=AnswerOverrides)
    network: NetworkConditions = field(default_factory=NetworkConditions)
    clock_skew_s: float = 0.0  # added to every timestamp the charger sends
    random: random.Random = field(default_factory=random.Random)

    @classmethod
    def for_charger(cls, charge_point_id: str) -> Impairments:
        return cls(random=random.Random(zlib.crc32(charge_point_id.encode())))

    def seed(self, seed: int) -> None:
        self.random.seed(seed)

    def frame_delay(self) -> float:
        """Seconds the network holds the next outgoing frame: the latency plus or minus a
        uniform share of the jitter, never below 0."""
        network = self.network
        delay = float(network.latency_ms)
        if network.jitter_ms:
            delay += self.random.uniform(-network.jitter_ms, network.jitter_ms)
        return max(0.0, delay / 1000)

    def drops_frame(self) -> bool:
        rate = self.network.drop_rate
        return rate > 0 and (rate >= 1 or self.random.random() < rate)

    def carry_over(self, old: Impairments, *, same_stored: bool) -> None:
        """This charger replaces `old` (a power cycle builds it afresh): a scenario's
        run-time rules, random state, and, unless the row's values changed, the network
        conditions and clock skew set at run time, survive the reboot."""
        self.answers.keep_run_time(old.answers)
        self.random = old.random
        if same_stored:
            self.network = old.network
            self.clock_skew_s = old.clock_skew_s

    def apply_stored(self, stored: StoredImpairments) -> None:
        """The row's values take over (its rules replace the stored ones; run-time rules
        stay)."""
        self.answers.use_stored(stored.answer_overrides)
        self.network = NetworkConditions(stored.latency_ms, stored.jitter_ms, stored.drop_rate)
        self.clock_skew_s = stored.clock_skew_s
