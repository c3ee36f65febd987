"""The Backend port: where cells run. The controller talks only to this protocol.

`local` runs each cell's suite command as a subprocess on this machine; `kube` runs each as a Kubernetes
Job. Both take attempts and hand back outcomes, one per attempt, in the order they finish; retrying is the
controller's decision, never the backend's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fleet.model import Cell, ResultError, RunResult


@dataclass(frozen=True)
class Attempt:
    """One try at running a cell; attempt numbers start at 1."""

    cell: Cell
    number: int
    run_id: str


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt produced: a result document, or the reason there is none."""

    attempt: Attempt
    result: RunResult | None
    failure: ResultError | None
    result_path: Path | None
    exit_code: int | None
    started_at: float
    finished_at: float

    @property
    def cell_id(self) -> str:
        return self.attempt.cell.id

    @property
    def error(self) -> ResultError | None:
        """The failure, whether the backend saw it or the suite wrote it into its result."""
        if self.failure is not None:
            return self.failure
        if self.result is not None and self.result.status == "error":
            return self.result.error
        return None


class Backend(Protocol):
    name: str

    def submit(self, attempts: Sequence[Attempt]) -> None:
        """Start these attempts (or queue them); may be called again while outcomes are being read."""
        ...

    def outcomes(self) -> Iterator[AttemptOutcome]:
        """Yield one outcome per submitted attempt as each finishes, until none is outstanding."""
        ...

    def cancel(self) -> None:
        """Stop everything still running; outcomes already yielded stay valid."""
        ...

    def close(self) -> None:
        """Let go of what the backend holds while it waits (a cluster watch); running work is left alone."""
        ...

    @property
    def closed(self) -> bool:
        """Whether close() let go of something that submitting again would need: then make a new one."""
        ...
