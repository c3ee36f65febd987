"""Small builders of valid documents for tests."""

from __future__ import annotations

from typing import Any

from fleet.judge.differential import judge_differentials
from fleet.judge.verdicts import summarize
from fleet.model import (
    Cell,
    Hardware,
    MatchSummary,
    Provenance,
    RunReport,
    RunResult,
    SpecCounters,
    Variant,
    Workload,
)


def make_cell(name: str = "ngram-k4") -> Cell:
    return Cell(
        tier="local",
        variant=Variant(name=name, method="ngram", num_speculative_tokens=4),
        model="bundled:tiny-stdlib/target",
        hardware=Hardware(name="cpu", vendor="cpu", gpu_count=0),
        workload=Workload(),
        engine="reference",
    )


def ok_result(cell: Cell) -> RunResult:
    return RunResult(cell=cell, status="ok", provenance=Provenance(fleet_version="test", engine="fake"),
                     metrics={"acceptance_length": 2.0})


#: The value that deletes a key in `edit`.
DELETE = object()


def edit(document: dict[str, Any], path: str, value: Any, *, sep: str = ".") -> None:
    """Set (or, with DELETE, remove) the key at a dotted path of a JSON-like document, in place."""
    *parents, leaf = path.split(sep)
    node = document
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value


def with_execution(cell: Cell, **axes: str) -> Cell:
    """The cell with these execution-axis values (Cell.execution), e.g. prefix_caching="on"."""
    return cell.model_copy(update={"execution": dict(axes)})


def counted_result(cell: Cell, drafts: int, accepted_per_position: list[int], *, matches: int | None = None,
                   prompts: int = 50, k: int = 4) -> RunResult:
    """An ok result whose speculative counters and metrics agree: `drafts` drafts of `k` tokens with
    these accepted counts per position; `matches` of `prompts` exact matches with the reference."""
    accepted = sum(accepted_per_position)
    metrics = {"acceptance_length": 1.0 + accepted / drafts, "acceptance_rate": accepted / (drafts * k)}
    metrics.update({f"acceptance_rate_pos_{i}": count / drafts
                    for i, count in enumerate(accepted_per_position)})
    match = None
    if matches is not None:
        match = MatchSummary(num_prompts=prompts, exact_token_matches=matches)
        metrics["match_rate"] = matches / prompts
    return RunResult(cell=cell, status="ok", provenance=Provenance(fleet_version="test", engine="fake"),
                     counters=SpecCounters(num_drafts=drafts, num_draft_tokens=drafts * k,
                                           num_accepted_tokens=accepted,
                                           accepted_per_position=accepted_per_position),
                     metrics=metrics, match=match)


def differential_report() -> RunReport:
    """A run of three ngram cells (counts as recorded on the H200) whose prefix_caching pair diverges
    (acceptance length 1.02 with prefix_caching=on vs 2.2 off) and whose cudagraph pair is the same."""
    base = make_cell()
    recorded = [632, 423, 317, 217]  # ngram-k4's counts on the H200 (evidence/h200/series/s8)
    results = [
        counted_result(with_execution(base, prefix_caching="off", cudagraph="full"), 1327, recorded),
        counted_result(with_execution(base, prefix_caching="on", cudagraph="full"), 1400, [25, 3, 0, 0]),
        counted_result(with_execution(base, prefix_caching="off", cudagraph="none"), 1327, recorded),
    ]
    return summarize([], run_id="nightly-1", tier="local", backend="local",
                     started_at="2026-12-08T00:00:00", finished_at="2026-12-08T00:10:00",
                     differentials=judge_differentials(results))
