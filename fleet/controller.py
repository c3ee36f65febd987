"""The controller's loop: submit every cell, gather each outcome, retry what the policy allows, judge.

It owns no I/O of its own beyond what it is handed: the backend runs cells, `fleet.baselines` reads the
baseline files, and the callers decide where reports go. That keeps one loop for the local machine, the
cluster and the tests.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.backends.base import Attempt, AttemptOutcome, Backend
from fleet.baselines import find_baseline
from fleet.judge.verdicts import judge_cell, summarize
from fleet.model import Baseline, Cell, ResultError, RunReport, RunResult
from fleet.retry import RetryPolicy


@dataclass(frozen=True)
class CellOutcome:
    """A cell's final state after all its attempts."""

    cell: Cell
    result: RunResult | None
    error: ResultError | None
    result_path: Path | None
    attempts: int
    started_at: float
    finished_at: float


def new_run_id(tier: str, now: dt.datetime | None = None) -> str:
    moment = now or dt.datetime.now(dt.UTC)
    return f"{tier}-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def execute(
    cells: Sequence[Cell],
    backend: Backend,
    *,
    run_id: str,
    policy: RetryPolicy | None = None,
    on_outcome: Callable[[AttemptOutcome, bool], None] | None = None,
) -> list[CellOutcome]:
    """Run every cell to a final outcome; `on_outcome(outcome, will_retry)` reports progress."""
    policy = policy or RetryPolicy()
    backend.submit([Attempt(cell, 1, run_id) for cell in cells])
    first_start: dict[str, float] = {}
    final: dict[str, CellOutcome] = {}
    for outcome in backend.outcomes():
        cell = outcome.attempt.cell
        first_start.setdefault(cell.id, outcome.started_at)
        retry = policy.should_retry(outcome.error, outcome.attempt.number)
        if on_outcome is not None:
            on_outcome(outcome, retry)
        if retry:
            backend.submit([Attempt(cell, outcome.attempt.number + 1, run_id)])
            continue
        final[cell.id] = CellOutcome(cell, outcome.result, outcome.error, outcome.result_path,
                                     outcome.attempt.number, first_start[cell.id], outcome.finished_at)
    return [final[cell.id] for cell in cells]


def judge_run(
    outcomes: Sequence[CellOutcome],
    *,
    baselines_root: Path,
    run_id: str,
    tier: str,
    backend: str,
    started_at: str,
    finished_at: str,
) -> tuple[RunReport, dict[str, Baseline]]:
    """Judge each cell against the baseline recorded for its hardware; returns the report and baselines."""
    verdicts = []
    baselines: dict[str, Baseline] = {}
    for outcome in outcomes:
        baseline, path = find_baseline(baselines_root, outcome.cell)
        if baseline is not None:
            baselines[outcome.cell.id] = baseline
        verdicts.append(judge_cell(
            outcome.result,
            baseline,
            cell=outcome.cell,
            baseline_path=str(path),
            result_path=str(outcome.result_path) if outcome.result_path else None,
            attempts=outcome.attempts,
            error=outcome.error,
        ))
    report = summarize(verdicts, run_id=run_id, tier=tier, backend=backend,
                       started_at=started_at, finished_at=finished_at)
    return report, baselines
