"""Split a tier's cells across N CI agents, and join the shards' reports back into one verdict.

A CI system that runs a tier on N parallel agents needs every agent to pick its own cells without
talking to the others: the assignment must be a pure function of the cell set and N, cover every cell
exactly once, and keep the agents' wall-clock time close (greedy longest-processing-time over an
expected cost per cell: the GPU seconds the history recorded for it, else its timeout). Merging
re-runs the run-level precedence over the union of cell verdicts, so a merged run exits exactly as
an unsharded run with the same cell verdicts would.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from fleet.errors import ConfigError
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.judge.verdicts import summarize
from fleet.model import Cell, CellVerdict, ResultError, RunReport
from fleet.plan.cost import JobSpan
from fleet.plan.retry import NO_RESULT

T = TypeVar("T")

__all__ = ["assign_shards", "expected_costs", "merge_reports", "recorded_seconds", "rerun_budget",
           "shard_cells"]


def recorded_seconds(spans: Iterable[JobSpan]) -> dict[str, float]:
    """Median wall seconds of each cell's measuring attempts, from the history's recorded Jobs."""
    by_cell: dict[str, list[float]] = {}
    for span in spans:
        if span.purpose == "run" and span.finished_at > span.started_at:
            by_cell.setdefault(span.cell_id, []).append(span.finished_at - span.started_at)
    return {cell_id: statistics.median(seconds) for cell_id, seconds in by_cell.items()}


def expected_costs(cells: Sequence[Cell], recorded: Mapping[str, float] | None = None) -> dict[str, float]:
    """Each cell's expected cost: its recorded seconds where known, else its timeout (the worst case)."""
    known = recorded or {}
    return {cell.id: float(known.get(cell.id, cell.timeout_s)) for cell in cells}


def assign_shards(costs: Mapping[str, float], num_shards: int) -> list[list[str]]:
    """Cell ids per shard: longest processing time first, into the least-loaded shard.

    Ties break by cell id and by shard index, so the assignment depends only on the (id, cost) pairs,
    never on the order the cells were listed in.
    """
    if num_shards < 1:
        raise ValueError("num_shards must be at least 1")
    shards: list[list[str]] = [[] for _ in range(num_shards)]
    loads = [0.0] * num_shards
    for cell_id in sorted(costs, key=lambda each: (-costs[each], each)):
        target = min(range(num_shards), key=lambda index: (loads[index], len(shards[index]), index))
        shards[target].append(cell_id)
        loads[target] += costs[cell_id]
    return [sorted(shard) for shard in shards]


def shard_cells(cells: Sequence[Cell], shard_id: int, num_shards: int,
                recorded: Mapping[str, float] | None = None) -> list[Cell]:
    """The cells shard `shard_id` (0-based) of `num_shards` runs, in the tier's order."""
    if not 0 <= shard_id < num_shards:
        raise ConfigError(f"shard {shard_id} does not exist among {num_shards} shards", where="--shard-id",
                          fix=f"pass --shard-id from 0 to {num_shards - 1}")
    chosen = set(assign_shards(expected_costs(cells, recorded), num_shards)[shard_id])
    return [cell for cell in cells if cell.id in chosen]


def rerun_budget(report: RunReport) -> int:
    """The --max-runs a shard's report was made under; a report from before budgets were recorded is
    assumed made under the default."""
    return report.max_runs or DEFAULT_MAX_RUNS


def merge_reports(reports: Sequence[RunReport], *, sources: Sequence[str] = (),
                  expected_cells: Sequence[Cell] | None = None,
                  rejudged: Mapping[str, CellVerdict] | None = None) -> RunReport:
    """One report over every shard's cells, its status and exit code decided again over their union.

    With `expected_cells`, a cell no shard reported is an ERROR: shards that saw different histories
    (so balanced differently) or a shard that never uploaded its report must not pass as a clean run.
    `rejudged` replaces shard verdicts by the verdicts of judging the union's results as one run (error
    control across shards; fleet.cli.merge_cmd).
    """
    if not reports:
        raise ConfigError("no shard report to merge", fix="pass the shards' run directories")
    where = ", ".join(sources) or None
    tiers = sorted({report.tier for report in reports})
    if len(tiers) > 1:
        raise ConfigError(f"shards of different tiers cannot be merged: {', '.join(tiers)}", where=where,
                          fix="merge the run directories of one tier's shards only")
    seen: dict[str, str] = {}
    for report in reports:
        for cell in report.cells:
            if cell.cell_id in seen:
                raise ConfigError(f"cell {cell.cell_id} is in two shards: {seen[cell.cell_id]} and "
                                  f"{report.run_id}", where=where,
                                  cause="the shards were planned with different --num-shards or cell sets",
                                  fix="merge the shards of one sharded run only")
            seen[cell.cell_id] = report.run_id
    missing = [_missing(cell) for cell in expected_cells or () if cell.id not in seen]
    judged_again = rejudged or {}
    shard_cells_seen = [judged_again.get(cell.cell_id, cell) for report in reports for cell in report.cells]
    # The tier's order where it is known (as an unsharded run lists them), else by cell id.
    rank = {cell.id: index for index, cell in enumerate(expected_cells or ())}
    cells = sorted([*shard_cells_seen, *missing], key=lambda c: (rank.get(c.cell_id, len(rank)), c.cell_id))
    first = reports[0]

    return summarize(
        cells,
        run_id="+".join(report.run_id for report in reports),
        tier=first.tier,
        backend=_common(r.backend for r in reports) or ",".join(sorted({r.backend for r in reports})),
        started_at=min(report.started_at for report in reports),
        finished_at=max(report.finished_at for report in reports),
        rule=_common(r.rule for r in reports),
        error_control=_common(r.error_control for r in reports),
        alpha=_common(r.alpha for r in reports),
        max_runs=_common(rerun_budget(r) for r in reports),
    )


def _common(values: Iterable[T]) -> T | None:
    """The one value all shards share, or None where they differ."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _missing(cell: Cell) -> CellVerdict:
    error = ResultError(category="infrastructure", reason=NO_RESULT,
                        message="no shard reported this cell: a shard failed before writing report.json, "
                                "the shards were split differently (different --num-shards or history), or "
                                "they ran with --hardware/--variant, which fleet merge must be given too")
    return CellVerdict(cell_id=cell.id, variant=cell.variant.name, model=cell.model,
                       draft_model=cell.draft_model, hardware=cell.hardware.name, status="ERROR",
                       message=f"{error.reason}: {error.message}", error=error, attempts=0, runs=0)
