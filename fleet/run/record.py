"""`fleet baseline record`'s measuring: each cell of a tier run N times on this machine, as N separate runs
(separate engine processes), so that the baseline's spread is the spread between engine starts.

A replicate that fails leaves no baseline at all: a baseline from fewer runs than asked would record a
spread nobody reviewed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fleet.backends.local import LocalBackend
from fleet.errors import ExitCode
from fleet.model import Cell, RunResult
from fleet.run.common import stderr
from fleet.run.controller import execute, new_run_id
from fleet.run.submit import Progress


def measure_replicates(cells: Sequence[Cell], replicates: int, *, tier: str, runs_dir: Path,
                       progress: Callable[[int], Progress]) -> dict[str, list[RunResult]] | ExitCode:
    """Every cell's results over `replicates` runs, or the exit code of the first failed replicate."""
    collected: dict[str, list[RunResult]] = {cell.id: [] for cell in cells}
    for replicate in range(1, replicates + 1):
        run_id = new_run_id(f"{tier}-record")
        stderr.print(f"replicate {replicate}/{replicates}: run {run_id}")
        shown = progress(len(cells))
        backend = LocalBackend(runs_dir / run_id, on_start=shown.started)
        for outcome in execute(cells, backend, run_id=run_id, on_outcome=shown.ended):
            if outcome.error is not None or outcome.result is None:
                reason = outcome.error.reason if outcome.error else "no result"
                stderr.print(f"{outcome.cell.id} failed in replicate {replicate} ({reason}); "
                             "no baseline written")
                config = outcome.error is not None and outcome.error.category == "config"
                return ExitCode.CONFIG if config else ExitCode.INFRASTRUCTURE
            collected[outcome.cell.id].append(outcome.result)
    return collected
