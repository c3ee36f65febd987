"""Verdicts: what the judge decided per metric and per cell, and the run report every format renders."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

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
    #: The baseline's RFC tolerance (lo and hi are expected ± tolerance_pct): set only where the RFC rule
    #: judged the metric, so a reviewer who edits tolerance_pct in a baseline sees that number here.
    tolerance_pct: float | None = None
    #: Where the statistical judge decided instead: how far the band's harmful edge (lo or hi, from the
    #: recorded spread, the family size and alpha) lies from expected, in percent, and over how many
    #: recorded runs that spread was measured. Never under the name tolerance_pct: editing the baseline's
    #: tolerance_pct does not move it.
    band_pct: float | None = None
    band_runs: int | None = Field(default=None, ge=1)
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


#: A differential verdict (fleet.judge.differential): two cells that differ in one execution axis agree
#: (SAME), disagree beyond noise (DIVERGES: a regression, the run FAILs), or cannot yet be told apart.
DifferentialStatus = Literal["SAME", "DIVERGES", "INCONCLUSIVE"]


class DifferentialMetric(Strict):
    """One metric of a differential pair: its value on each side, and the test between them."""

    metric: str
    status: DifferentialStatus
    value_a: float
    value_b: float
    #: The events each side's value is a mean over (drafts, or prompts for the match rate), all runs added.
    trials_a: int = Field(ge=0)
    trials_b: int = Field(ge=0)
    rule: str = ""
    detail: str = ""
    #: The raw two-sided p of the difference, and it adjusted over the run's family.
    p_value: float | None = None
    adjusted_p: float | None = None


class DifferentialVerdict(Strict):
    """Two cells identical except in one execution axis, compared with each other (no baseline needed)."""

    axis: str
    value_a: str
    value_b: str
    cell_a: str
    cell_b: str
    variant: str
    model: str
    draft_model: str | None = None
    hardware: str
    status: DifferentialStatus
    message: str = ""
    metrics: list[DifferentialMetric] = Field(default_factory=list)
    runs_a: int = Field(default=1, ge=0)
    runs_b: int = Field(default=1, ge=0)
    #: The other execution axes' values, the same on both sides.
    shared_execution: dict[str, str] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """`<cell a> <axis>: a vs b [other=value ...]`, what a report titles the pair by."""
        others = " ".join(f"{axis}={value}" for axis, value in sorted(self.shared_execution.items()))
        return (f"{self.cell_a} {self.axis}: {self.value_a} vs {self.value_b}"
                + (f" [{others}]" if others else ""))


class RunReport(Strict):
    #: 2: a statistically judged metric's band is `band_pct` (version 1, still read, put it under
    #: `tolerance_pct`).
    schema_version: Literal[2] = 2
    run_id: str
    tier: str
    backend: str
    started_at: str
    finished_at: str
    status: Status
    exit_code: int
    cells: list[CellVerdict]
    #: Pairs of cells that differ in exactly one execution axis, judged against each other
    #: (fleet.judge.differential); a DIVERGES makes the run FAIL.
    differentials: list[DifferentialVerdict] = Field(default_factory=list)
    #: How the run was judged: `auto` (statistical where a spread was recorded) or `rfc`; error control.
    rule: str | None = None
    error_control: str | None = None
    alpha: float | None = None
    #: The controller's rerun budget per cell, over whose looks the noisy tests split their budget.
    max_runs: int | None = None
    #: GPU-hours and cost per cell, pool and run (fleet.plan.cost.cost_document), where accounted.
    cost: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _band_out_of_tolerance(cls, data: Any) -> Any:
        """A version-1 report (the history keeps them) put the statistical band under tolerance_pct: read
        it as band_pct, so an old report re-rendered shows no number under a name it does not have."""
        if not isinstance(data, dict) or data.get("schema_version") != 1:
            return data
        cells = [dict(cell, metrics=[_v1_metric(m) for m in cell.get("metrics", [])])
                 if isinstance(cell, dict) else cell for cell in data.get("cells", [])]
        return {**data, "schema_version": 2, "cells": cells}


#: The rule name of fleet.judge.rfc_rule, the only judge whose tolerance_pct is the baseline's.
RFC_RULE_PREFIX = "rfc28135"


def _v1_metric(metric: Any) -> Any:
    if not isinstance(metric, dict) or str(metric.get("rule", "")).startswith(RFC_RULE_PREFIX) \
            or metric.get("tolerance_pct") is None:
        return metric
    return {**{k: v for k, v in metric.items() if k != "tolerance_pct"}, "band_pct": metric["tolerance_pct"]}
