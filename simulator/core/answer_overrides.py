"""How a charger answers the CSMS's CALLs when told to answer otherwise (fault injection).

Two sources of rules, kept apart so that neither undoes the other: the charger's stored
rules (its row's `answer_overrides`, "every" rules, replaced whenever the row changes),
and the rules set at run time by drive commands (a scenario step, a script), which the
`clear` of a command removes. A CALL takes the first matching run-time "next" rule (used
once, in the order they were set), else the newest run-time "every" rule, else the newest
stored rule: the most specific and most recent instruction wins.

The rules themselves are checked by `simulator.contract.overrides.check_rule`; this module
only keeps and picks them, and the protocol adapter carries them out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from simulator.contract.overrides import AnswerRule


@dataclass(frozen=True, slots=True)
class Override:
    """One checked rule, as the adapter applies it: exactly one of the kinds is set."""

    action: str
    every: bool
    status: str | None = None
    call_error: str | None = None
    description: str = ""
    delay_s: float = 0.0
    no_answer: bool = False

    @classmethod
    def from_rule(cls, rule: AnswerRule) -> Override:
        return cls(
            action=rule["action"],
            every=rule["mode"] == "every",
            status=rule.get("status"),
            call_error=rule.get("call_error"),
            description=rule.get("description", ""),
            delay_s=float(rule.get("delay", 0.0)),
            no_answer=bool(rule.get("no_answer", False)),
        )

    def as_rule(self) -> AnswerRule:
        rule: AnswerRule = {"action": self.action, "mode": "every" if self.every else "next"}
        if self.status is not None:
            rule["status"] = self.status
        elif self.call_error is not None:
            rule["call_error"] = self.call_error
            if self.description:
                rule["description"] = self.description
        elif self.no_answer:
            rule["no_answer"] = True
        else:
            rule["delay"] = self.delay_s
        return rule

    @property
    def skips_handler(self) -> bool:
        """The normal handler does not run (only a delay answers normally)."""
        return self.status is not None or self.call_error is not None or self.no_answer


class AnswerOverrides:
    def __init__(self) -> None:
        self._next: list[Override] = []
        self._every: list[Override] = []
        self._stored: list[Override] = []

    def __bool__(self) -> bool:
        return bool(self._next or self._every or self._stored)

    def add(self, rule: AnswerRule) -> Override:
        """A run-time rule (a drive command's)."""
        override = Override.from_rule(rule)
        (self._every if override.every else self._next).append(override)
        return override

    def clear(self, action: str | None = None) -> int:
        """Forget the run-time rules (of `action` only, if given); the stored ones stay.
        How many were removed."""
        before = len(self._next) + len(self._every)
        self._next = [o for o in self._next if action is not None and o.action != action]
        self._every = [o for o in self._every if action is not None and o.action != action]
        return before - len(self._next) - len(self._every)

    def keep_run_time(self, old: AnswerOverrides) -> None:
        """Take over the run-time rules of the charger this one replaces (a reboot)."""
        self._next = list(old._next)
        self._every = list(old._every)

    def use_stored(self, overrides: Iterable[Override]) -> None:
        """The charger row's rules, replacing the ones it had (all are "every" rules)."""
        self._stored = [replace(o, every=True) for o in overrides]

    def take(self, action: str) -> Override | None:
        """The rule for a CALL of `action` now, if any; a "next" rule is used up."""
        for index, override in enumerate(self._next):
            if override.action == action:
                del self._next[index]
                return override
        for source in (self._every, self._stored):
            for override in reversed(source):
                if override.action == action:
                    return override
        return None

    def rules(self) -> list[AnswerRule]:
        """What is in force, for a snapshot: run-time rules first, then the stored ones."""
        return [o.as_rule() for o in (*self._next, *self._every, *self._stored)]
