"""Builders of runs for the history, trends, HTML and cost tests: reports, results and job spans."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleet.history.store import RunRecord
from fleet.model import (
    Cell,
    CellVerdict,
    Hardware,
    MetricVerdict,
    Provenance,
    RunReport,
    RunResult,
    Variant,
    Workload,
)
from fleet.plan.cost import JobSpan

H100 = Hardware(name="h100", vendor="nvidia", gpu_count=2, price_per_hour_usd=3.0)


def gpu_cell(variant: str = "eagle3", hardware: Hardware = H100) -> Cell:
    return Cell(tier="nightly", variant=Variant(name=variant, method="ngram", num_speculative_tokens=3),
                model="meta-llama/Llama-3.1-8B-Instruct", hardware=hardware, workload=Workload(),
                engine="vllm")


def measured(cell: Cell, metrics: Mapping[str, float], *, at: str, commit: str) -> RunResult:
    provenance = Provenance(fleet_version="test", engine="vllm", vllm_commit=commit, started_at=at,
                            finished_at=at)
    return RunResult(cell=cell, status="ok", provenance=provenance, metrics=dict(metrics))


def verdict(cell: Cell, status: str = "PASS", metrics: list[MetricVerdict] | None = None) -> CellVerdict:
    return CellVerdict(cell_id=cell.id, variant=cell.variant.name, model=cell.model,
                       hardware=cell.hardware.name, status=status, metrics=metrics or [])  # type: ignore[arg-type]


def run_record(run_id: str, cells_metrics: Sequence[tuple[Cell, Mapping[str, float]]], *, at: str,
               commit: str, status: str = "PASS", job_seconds: float = 1800.0) -> RunRecord:
    """A run whose every cell measured its metrics once at `at`, each cell's Job lasting `job_seconds`."""
    cells = [cell for cell, _ in cells_metrics]
    report = RunReport(run_id=run_id, tier="nightly", backend="kube", started_at=at, finished_at=at,
                       status=status, exit_code=0 if status == "PASS" else 1,  # type: ignore[arg-type]
                       cells=[verdict(c, status) for c in cells])
    results = {c.id: [measured(c, metrics, at=at, commit=commit)] for c, metrics in cells_metrics}
    jobs = [JobSpan(c.id, c.hardware.name, c.hardware.gpu_count, 1000.0, 1000.0 + job_seconds)
            for c in cells]
    return RunRecord(report, {c.id: c for c in cells}, results, jobs,
                     {c.hardware.name: c.hardware.price_per_hour_usd or 0.0 for c in cells})


POSITIONS = {"acceptance_rate_pos_0": 0.62, "acceptance_rate_pos_1": 0.41, "acceptance_rate_pos_2": 0.27}


def stepped_history(runs: int = 16, step_at: int = 10) -> list[RunRecord]:
    """Nightly runs of one cell whose acceptance length drops 8 % at run `step_at` (a planted regression)."""
    cell = gpu_cell()
    records = []
    for number in range(runs):
        wobble = 1 + 0.004 * ((number * 7) % 5 - 2)  # deterministic +-0.8 % run-to-run spread
        length = (2.10 if number < step_at else 1.93) * wobble
        metrics = {"acceptance_length": length, "tpot_p50_ms": 12.0 * wobble, **POSITIONS}
        status = "PASS" if number < step_at else "FAIL"
        records.append(run_record(f"nightly-{number:02d}", [(cell, metrics)],
                                  at=f"2026-11-{number + 1:02d}T02:00:00Z",
                                  commit=f"{number:02d}" + "ab" * 19, status=status))
    return records
