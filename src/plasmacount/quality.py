"""Quality control: the one vocabulary of a QC status ("pass", "warn", "fail"), the two-level
limits every check is written in, and the rule that a check's reasons decide its status.

A status is decided by its reasons: any failing reason fails, else any warning warns, else it
passes. Reasons are listed failing first, so that a reader sees first what stopped the sample.
The same `Limits` object judges a measurement in the analysis and in the report's QC table, so
the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PASS, WARN, FAIL = "pass", "warn", "fail"
STATUSES = (PASS, WARN, FAIL)


@dataclass(frozen=True)
class Limits:
    """A measurement warns beyond `warn` and fails beyond `fail`; beyond means above, or below
    for a floor (`floor=True`, as for read counts). A value that is not a number (NaN: the
    measurement could not be made) passes: the check that needs it says so itself."""

    warn: float
    fail: float
    floor: bool = False

    def __post_init__(self) -> None:
        if (self.fail > self.warn) if self.floor else (self.fail < self.warn):
            raise ValueError(f"a fail limit ({self.fail}) must lie beyond the warn limit ({self.warn})")

    def _beyond(self, value: float, limit: float) -> bool:
        return value < limit if self.floor else value > limit

    def status(self, value: float) -> str:
        if self._beyond(value, self.fail):
            return FAIL
        return WARN if self._beyond(value, self.warn) else PASS

    def expectation(self, shown: str) -> str:
        """The passing range as a reader sees it, with the warn limit written as `shown`."""
        return f"{'>=' if self.floor else '<='} {shown}"


@dataclass
class Findings:
    """The reasons a check has found so far, by level."""

    failing: list[str] = field(default_factory=list)
    warning: list[str] = field(default_factory=list)

    def add(self, level: str, reason: str) -> None:
        if level == FAIL:
            self.failing.append(reason)
        elif level == WARN:
            self.warning.append(reason)
        elif level != PASS:
            raise ValueError(f"unknown QC level {level!r}: one of {', '.join(STATUSES)}")

    def check(self, value: float, limits: Limits, reason: str) -> None:
        """Record `reason` at the level `limits` give `value` (nothing when it passes)."""
        self.add(limits.status(value), reason)

    @property
    def status(self) -> str:
        return FAIL if self.failing else WARN if self.warning else PASS

    @property
    def reasons(self) -> list[str]:
        return self.failing + self.warning
