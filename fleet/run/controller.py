"""The controller's loop: submit every cell, gather each outcome, retry what the policy allows, judge.

It owns no I/O of its own beyond what it is handed: the backend runs cells, the run's BaselineSet reads
the baseline files (once each), and the callers decide where reports go. That keeps one loop for the
local machine, the cluster and the tests.

Two kinds of "again": an infrastructure failure is retried by the RetryPolicy (the same replicate,
attempt budget per reason); a cell the judge finds INCONCLUSIVE is rerun as a new replicate (another
engine start), up to `max_runs` successful runs, and then judged on all of them together. Reruns are
how flaky noisy metrics are settled; the budget bounds what a noisy night can cost. DEFAULT_MAX_RUNS = 5
matches the 5 runs a baseline is recorded from: past that, more candidate runs barely narrow the test
(its variance has a 1/N floor from the baseline), so the cell stays INCONCLUSIVE and is reported so.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.backends.base import Attempt, AttemptOutcome, Backend
from fleet.judge.decide import (
    ALPHA,
    Rule,
    decide,
    family_size_of,
    gather,
    pooled_spreads,
    settled_by_replay,
)
from fleet.judge.differential import family_size_of_pairs
from fleet.judge.multiple import Method
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.judge.verdicts import CellCase, judge_run_verdicts, summarize
from fleet.model import Baseline, Cell, ResultError, RunReport, RunResult
from fleet.plan.retry import RetryPolicy
from fleet.run.plan import BaselineSet

#: Decides after each successful run whether the cell needs another one (INCONCLUSIVE).
RerunCheck = Callable[[Cell, Sequence[RunResult]], bool]


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
    #: Every successful result of the cell, in order (more than one after reruns).
    candidates: tuple[RunResult, ...] = ()


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
    rerun: RerunCheck | None = None,
    max_runs: int = 1,
    earlier: Callable[[Cell, int], Sequence[RunResult]] | None = None,
) -> list[CellOutcome]:
    """Run every cell to a final outcome; `on_outcome(outcome, will_retry)` reports progress.

    With `rerun`, a successful cell is run again while `rerun(cell, results so far)` says so and it has
    fewer than `max_runs` successful results (the INCONCLUSIVE loop; see the module docstring).
    `earlier(cell, n)`: the results attempts before n already measured, for a backend that adopts a
    cell's attempt n from an earlier controller (`fleet resume`): they are the cell's candidates too.
    """
    policy = policy or RetryPolicy()
    backend.submit([Attempt(cell, 1, run_id) for cell in cells])
    first_start: dict[str, float] = {}
    replicate_start: dict[str, int] = {cell.id: 1 for cell in cells}
    candidates: dict[str, list[RunResult]] = {cell.id: [] for cell in cells}
    final: dict[str, CellOutcome] = {}
    for outcome in backend.outcomes():
        cell = outcome.attempt.cell
        number = outcome.attempt.number
        if cell.id not in first_start and number > 1 and earlier is not None:
            candidates[cell.id].extend(r for r in earlier(cell, number) if r.status == "ok")
        first_start.setdefault(cell.id, outcome.started_at)
        retry = policy.should_retry(outcome.error, number - replicate_start[cell.id] + 1)
        good = outcome.error is None and outcome.result is not None and outcome.result.status == "ok"
        if good and outcome.result is not None:
            candidates[cell.id].append(outcome.result)
        runs = candidates[cell.id]
        again = good and rerun is not None and len(runs) < max_runs and rerun(cell, tuple(runs))
        if on_outcome is not None:
            on_outcome(outcome, retry or again)
        if retry or again:
            if again:
                replicate_start[cell.id] = number + 1
            backend.submit([Attempt(cell, number + 1, run_id)])
            continue
        if runs and not good:
            # A rerun that could not be measured leaves the runs already measured to be judged.
            final[cell.id] = CellOutcome(cell, runs[-1], None, outcome.result_path, number,
                                         first_start[cell.id], outcome.finished_at, tuple(runs))
            continue
        final[cell.id] = CellOutcome(cell, outcome.result, outcome.error, outcome.result_path, number,
                                     first_start[cell.id], outcome.finished_at, tuple(runs))
    return [final[cell.id] for cell in cells]


def make_rerun_check(
    cells: Sequence[Cell],
    baselines: BaselineSet,
    *,
    rule: Rule = "auto",
    alpha: float = ALPHA,
    method: Method = "holm",
    family: Sequence[Cell] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
) -> RerunCheck:
    """A RerunCheck that judges a cell as it will be judged in the whole run (same family size).

    `family`: every cell of the whole run when `cells` is one shard of it (default: `cells`).
    `max_runs`: the loop's budget, as `execute` is given it (the noisy tests spend alpha over its looks).
    """
    pool = baselines.recorded(family if family is not None else cells)
    # The run's differential pairs are in its family too (fleet.judge.differential).
    family_size = family_size_of(pool) + family_size_of_pairs(family if family is not None else cells)
    pooled = pooled_spreads(pool)

    def check(cell: Cell, results: Sequence[RunResult]) -> bool:
        baseline = baselines.of(cell)
        if baseline is None:
            return False
        evidence = gather(list(results), baseline, rule, pooled, max_runs)
        [verdicts] = decide([evidence], alpha=alpha, method=method, family_size=family_size)
        # A deterministic engine replays its runs: a third run of it cannot decide what two could not.
        return any(v.status == "INCONCLUSIVE" for v in verdicts) and \
            not settled_by_replay(verdicts, baseline, results, pooled)

    return check


def judge_run(
    outcomes: Sequence[CellOutcome],
    *,
    baselines: BaselineSet,
    run_id: str,
    tier: str,
    backend: str,
    started_at: str,
    finished_at: str,
    rule: Rule = "auto",
    alpha: float = ALPHA,
    method: Method = "holm",
    family: Sequence[Cell] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
) -> tuple[RunReport, dict[str, Baseline]]:
    """Judge each cell against the baseline recorded for its hardware; returns the report and baselines.

    Error control spans every cell x metric of the run and its differential pairs (cells that differ in
    one execution axis, judged against each other: the report's `differentials`). A shard of a sharded
    run passes the whole run's cells as `family`: its tests are then controlled as one part of the whole
    run's family (padded Holm, conservative; a pair split over two shards is judged by neither), and
    `fleet merge` re-judges the union exactly. `max_runs`: the rerun
    budget the outcomes were made under.
    """
    cases = []
    found: dict[str, Baseline] = {}
    for outcome in outcomes:
        baseline, path = baselines.lookup(outcome.cell)
        if baseline is not None:
            found[outcome.cell.id] = baseline
        cases.append(CellCase(
            outcome.result,
            baseline,
            baseline_path=str(path),
            result_path=str(outcome.result_path) if outcome.result_path else None,
            attempts=outcome.attempts,
            error=outcome.error,
            cell=outcome.cell,
            candidates=outcome.candidates,
        ))
    pool = baselines.recorded(family) if family is not None else None
    family_size = (family_size_of(pool) + family_size_of_pairs(family)
                   if pool is not None and family is not None else None)
    verdicts, differentials = judge_run_verdicts(cases, rule=rule, alpha=alpha, method=method, pool=pool,
                                                 family_size=family_size, max_runs=max_runs)
    report = summarize(verdicts, run_id=run_id, tier=tier, backend=backend,
                       started_at=started_at, finished_at=finished_at, rule=rule,
                       error_control=method, alpha=alpha, max_runs=max_runs, differentials=differentials)
    return report, found


def outcomes_from_files(documents: Sequence[tuple[Path, RunResult]]) -> list[CellOutcome]:
    """Result files produced anywhere, grouped by cell: several files of one cell are its candidate runs."""
    grouped: dict[str, list[tuple[Path, RunResult]]] = {}
    for path, document in documents:
        grouped.setdefault(document.cell.id, []).append((path, document))
    outcomes = []
    for group in grouped.values():
        path, last = group[-1]
        ok = tuple(doc for _, doc in group if doc.status == "ok")
        chosen = next((doc for doc in reversed(ok)), last)
        outcomes.append(CellOutcome(last.cell, chosen, chosen.error, path, len(group), 0.0, 0.0, ok))
    return outcomes
