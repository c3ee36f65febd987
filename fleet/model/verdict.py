"""Verdicts: what the judge decided per metric and per cell, and the run report every format renders."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fleet.model._base import Strict
from fleet.model.result import ResultError

#: PASS and FAIL are decisions; INCONCLUSIVE asks for a rerun; NO_BASELINE and SKIPPED say that
#: nothing could be judged; ERROR means the cell produced no measurement (infrastructure or config).
Status = Literal["PASS", "FAIL", "INCONCLUSIVE", "NO_BASELINE", "SKIPPED", "ERROR"]


class MetricVerdict(Strict):
    metric: str
    status: Status
    observed: float | None = None
    expected: float | None = None
    lo: float | None = None
    hi: float | None = None
    tolerance_pct: float | None = None
    rule: str = ""
    detail: str = ""
    p_value: float | None = None
    # fleet's statistical judge: p_value is the raw one-sided p of harm (for a noisy metric, the one that
    # allows for slow engine starts, fleet.judge.best_run); adjusted_p is it after error
    # control over the run (for a noisy metric, of p over its rerun look's share of the budget, so it can
    # exceed the family size times p); runs are the candidate runs (engine starts) the verdict rests on.
    adjusted_p: float | None = None
    runs: int | None = Field(default=None, ge=1)


class CellVerdict(Strict):
    cell_id: str
    variant: str
    model: str
    draft_model: str | None = None
    hardware: str
    status: Status
    metrics: list[MetricVerdict] = Field(default_factory=list)
    message: str = ""
    error: ResultError | None = None
    baseline_path: str | None = None
    result_path: str | None = None
    attempts: int = Field(default=1, ge=0)
    #: Candidate results judged together (more than 1 after INCONCLUSIVE-driven reruns).
    runs: int = Field(default=1, ge=0)


class RunReport(Strict):
    schema_version: Literal[1] = 1
    run_id: str
    tier: str
    backend: str
    started_at: str
    finished_at: str
    status: Status
    exit_code: int
    cells: list[CellVerdict]
    #: How the run was judged: `auto` (statistical where a spread was recorded) or `rfc`; error control.
    rule: str | None = None
    error_control: str | None = None
    alpha: float | None = None
    #: The controller's rerun budget per cell, over whose looks the noisy tests split their budget.
    max_runs: int | None = None
    #: GPU-hours and cost per cell, pool and run (fleet.plan.cost.cost_document), where accounted.
    cost: dict[str, Any] | None = None
