"""One small error tree, so that every failure says what happened, why, and what to do next.

The category of an error decides the process exit code, which CI systems and the controller read:

    FleetError
    ├── ConfigError            exit 2: the user's input is wrong (files, flags, paths)
    └── InfrastructureError    exit 3: the machine, the cluster or the engine failed

A regression is not an error: it is a verdict, and `fleet` exits 1 when one is found. Nor is an
INCONCLUSIVE run (exit 4): the judge could not tell noise from change with the runs and counts it had,
which a CI gate must not read as a pass (fleet.judge.verdicts says why it has a code of its own).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    PASS = 0
    REGRESSION = 1
    CONFIG = 2
    INFRASTRUCTURE = 3
    #: Cells still INCONCLUSIVE once the rerun budget is spent (or a single look at files): not proven a
    #: regression, so not 1, but not a pass either: a 13 % acceptance drop the counts cannot yet make
    #: significant ends here, and exit 0 would let it through the gate.
    INCONCLUSIVE = 4


class FleetError(Exception):
    """Base of fleet's errors: a message, where it happened, the likely cause and the next step."""

    exit_code: ExitCode = ExitCode.CONFIG
    category: str = "config"

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        cause: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.where = where
        self.cause = cause
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        """The whole error on one line, as the CLI prints it."""
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.cause:
            parts.append(f"likely cause: {self.cause}")
        if self.fix:
            parts.append(f"next: {self.fix}")
        return f"{self.category} error: " + " — ".join(parts)


class ConfigError(FleetError):
    """The user's input is wrong: a file, a field, a flag or a path."""

    exit_code = ExitCode.CONFIG
    category = "config"


class InfrastructureError(FleetError):
    """The machine, the cluster or the engine failed; retrying may help."""

    exit_code = ExitCode.INFRASTRUCTURE
    category = "infrastructure"
