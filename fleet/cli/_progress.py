"""Progress on stderr while cells run: which cell started, how each attempt ended."""

from __future__ import annotations

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.run.common import stderr
from fleet.run.submit import Progress


class CellProgress:
    """Prints a line when a cell starts, is rerun or retried, and when each attempt ends."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started_cells = 0
        self.measured: dict[str, int] = {}  # runs each cell measured
        self.last_measured: set[str] = set()  # cells whose last attempt measured: a next one is a rerun

    def started(self, attempt: Attempt) -> None:
        cell = attempt.cell.id
        if attempt.number == 1:
            self.started_cells += 1
            stderr.print(f"[{self.started_cells}/{self.total}] running {cell} ...")
        elif cell in self.last_measured:
            stderr.print(f"      rerunning {cell} (run {self.measured[cell] + 1}: the judge found it "
                         "inconclusive) ...")
        else:
            stderr.print(f"      retrying {cell} (attempt {attempt.number}) ...")

    def ended(self, outcome: AttemptOutcome, will_retry: bool) -> None:
        took = outcome.finished_at - outcome.started_at
        error = outcome.error
        if error is not None:
            verdict = f"{error.category} failure: {error.reason}: {error.message}"
            verdict += " - retrying" if will_retry else ""
        elif outcome.result is not None and outcome.result.status == "skipped":
            verdict = f"skipped: {outcome.result.skip_reason}"
        else:
            verdict = "measured"
        if error is None and outcome.result is not None and outcome.result.status == "ok":
            self.measured[outcome.cell_id] = self.measured.get(outcome.cell_id, 0) + 1
            self.last_measured.add(outcome.cell_id)
        else:
            self.last_measured.discard(outcome.cell_id)
        stderr.print(f"    {outcome.cell_id}: {verdict} ({took:.1f} s)")


def cell_progress(total: int) -> Progress:
    shown = CellProgress(total)
    return Progress(shown.started, shown.ended)
