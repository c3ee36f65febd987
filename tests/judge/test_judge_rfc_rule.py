"""The RFC #28135 ±% rule, each cell status, and the run's status and exit code by precedence."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fleet.errors import ExitCode
from fleet.judge import judge_cell, judge_metric, judge_metrics, summarize
from fleet.model import (
    Baseline,
    Cell,
    CellVerdict,
    Hardware,
    MetricBaseline,
    Provenance,
    ResultError,
    RunResult,
    Status,
    Variant,
    Workload,
)
from fleet.report import render_text


def make_cell() -> Cell:
    return Cell(
        tier="smoke",
        variant=Variant(name="eagle3", method="eagle3", num_speculative_tokens=3),
        model="meta-llama/Llama-3.1-8B-Instruct",
        draft_model="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
        hardware=Hardware(name="l4", vendor="nvidia"),
        workload=Workload(num_prompts=100, dataset="sharegpt"),
        engine="vllm",
    )


def make_result(status: str = "ok", **fields: Any) -> RunResult:
    provenance = Provenance(fleet_version="0.1.0", engine="vllm")
    document = {"cell": make_cell(), "status": status, "provenance": provenance}
    return RunResult.model_validate(document | fields)


def make_baseline(**metrics: tuple[float, float]) -> Baseline:
    return Baseline.model_validate(
        {
            "variant": "eagle3",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "gpu_type": "L4",
            "baselines": {name: {"expected": e, "tolerance_pct": t} for name, (e, t) in metrics.items()},
            "last_updated": "2025-11-05",
        }
    )


def judge(result: RunResult | None, baseline: Baseline | None, **kw: Any) -> CellVerdict:
    return judge_cell(
        result,
        baseline,
        baseline_path=kw.pop("baseline_path", "baselines/l4/eagle3__llama-3.1-8b-instruct.json"),
        result_path=None,
        attempts=kw.pop("attempts", 1),
        error=kw.pop("error", None),
        **kw,
    )


# --- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "tol"), [(0.73, 10), (0.75, 10), (44.0, 15), (12.3, 15), (2.1, 15), (-3.0, 20), (1e6, 0.5)]
)
def test_metric_passes_when_exactly_on_either_bound(expected: float, tol: float) -> None:
    entry = MetricBaseline(expected=expected, tolerance_pct=tol)
    assert judge_metric("m", entry.lo, entry).status == "PASS"
    assert judge_metric("m", entry.hi, entry).status == "PASS"


@pytest.mark.parametrize(
    ("expected", "tol"), [(0.73, 10), (0.75, 10), (44.0, 15), (12.3, 15), (2.1, 15), (-3.0, 20), (1e6, 0.5)]
)
def test_metric_fails_when_just_outside_either_bound(expected: float, tol: float) -> None:
    entry = MetricBaseline(expected=expected, tolerance_pct=tol)
    step = abs(expected) * 1e-6
    assert judge_metric("m", entry.lo - step, entry).status == "FAIL"
    assert judge_metric("m", entry.hi + step, entry).status == "FAIL"


def test_rfc_decimal_bound_passes_when_float_arithmetic_lands_a_hair_inside() -> None:
    # 0.73 * 1.10 is 0.8029999999999999 in binary; the RFC prints the bound as 0.803.
    # A metric the registry does not know is judged on both sides, so the upper bound decides here.
    entry = MetricBaseline(expected=0.73, tolerance_pct=10)
    assert entry.hi < 0.803
    assert judge_metric("m", 0.803, entry).status == "PASS"
    assert judge_metric("m", 0.8031, entry).status == "FAIL"


def test_negative_expected_gives_ordered_bounds_when_judging() -> None:
    entry = MetricBaseline(expected=-10.0, tolerance_pct=10)
    verdict = judge_metric("delta_ms", -10.5, entry)
    assert (verdict.lo, verdict.hi, verdict.status) == (-11.0, -9.0, "PASS")
    assert judge_metric("delta_ms", -8.9, entry).status == "FAIL"
    assert judge_metric("delta_ms", 10.0, entry).status == "FAIL"


def test_zero_expected_allows_only_zero_when_judging() -> None:
    entry = MetricBaseline(expected=0.0, tolerance_pct=50)
    assert judge_metric("errors", 0.0, entry).status == "PASS"
    assert judge_metric("errors", 1e-6, entry).status == "FAIL"
    assert judge_metric("errors", -1e-6, entry).status == "FAIL"


def test_metric_fails_with_detail_when_missing_from_result() -> None:
    verdicts = judge_metrics({"speedup": 2.1}, make_baseline(speedup=(2.1, 15), acceptance_rate=(0.73, 10)))
    by_name = {v.metric: v for v in verdicts}
    assert by_name["speedup"].status == "PASS"
    missing = by_name["acceptance_rate"]
    assert (missing.status, missing.observed, missing.detail) == ("FAIL", None, "metric missing from result")


def test_a_cell_says_which_metrics_were_missing_apart_from_those_outside_tolerance() -> None:
    baseline = make_baseline(speedup=(2.1, 15), acceptance_rate=(0.73, 10), acceptance_length=(2.0, 5))
    verdict = judge(make_result(metrics={"speedup": 1.0, "acceptance_length": 2.0}), baseline)
    assert verdict.status == "FAIL"
    assert "1 of 3 metrics outside tolerance: speedup" in verdict.message
    assert "1 of 3 metrics missing from the result" in verdict.message
    assert verdict.message.endswith("acceptance_rate")


def test_metric_fails_when_result_reports_nan() -> None:
    entry = MetricBaseline(expected=1.0, tolerance_pct=10)
    assert judge_metric("speedup", math.nan, entry).status == "FAIL"


def test_metric_verdict_carries_bounds_and_deviation_when_judged() -> None:
    verdict = judge_metric("acceptance_rate", 0.635, MetricBaseline(expected=0.73, tolerance_pct=10))
    assert verdict.status == "FAIL"
    assert verdict.lo == pytest.approx(0.657) and verdict.hi == pytest.approx(0.803)
    assert verdict.detail == "-13.0% from expected (allowed ±10%)"


def test_only_baseline_metrics_are_judged_in_baseline_order() -> None:
    baseline = make_baseline(tpot_p50_ms=(12.3, 15), acceptance_rate=(0.73, 10))
    verdicts = judge_metrics({"acceptance_rate": 0.74, "tpot_p50_ms": 12.0, "extra": 1.0}, baseline)
    assert [v.metric for v in verdicts] == ["tpot_p50_ms", "acceptance_rate"]


# --- cell statuses --------------------------------------------------------------------------------


def test_cell_passes_when_every_metric_is_within_tolerance() -> None:
    verdict = judge(make_result(metrics={"speedup": 2.08, "acceptance_rate": 0.741}),
                    make_baseline(speedup=(2.1, 15), acceptance_rate=(0.73, 10)))
    assert verdict.status == "PASS"
    assert verdict.cell_id == "eagle3__llama-3.1-8b-instruct__l4"
    assert [m.status for m in verdict.metrics] == ["PASS", "PASS"]


def test_cell_fails_naming_metrics_when_any_is_outside_tolerance() -> None:
    verdict = judge(make_result(metrics={"speedup": 1.62, "acceptance_rate": 0.741}),
                    make_baseline(speedup=(2.1, 15), acceptance_rate=(0.73, 10)))
    assert verdict.status == "FAIL"
    assert verdict.message == "1 of 2 metrics outside tolerance: speedup"


def test_cell_errors_with_carried_error_when_result_says_error() -> None:
    error = ResultError(category="infrastructure", reason="oom", message="CUDA out of memory")
    verdict = judge(make_result("error", error=error), make_baseline(speedup=(2.1, 15)))
    assert verdict.status == "ERROR"
    assert verdict.error == error
    assert "CUDA out of memory" in verdict.message


def test_cell_errors_with_given_error_when_there_is_no_result() -> None:
    error = ResultError(category="infrastructure", reason="node-lost", message="node drained")
    verdict = judge(None, None, error=error, cell=make_cell(), attempts=3)
    assert (verdict.status, verdict.error, verdict.attempts) == ("ERROR", error, 3)


def test_cell_errors_as_infrastructure_when_neither_result_nor_error_exists() -> None:
    verdict = judge(None, None, cell=make_cell())
    assert verdict.status == "ERROR"
    assert verdict.error is not None and verdict.error.category == "infrastructure"


def test_judging_refuses_when_it_cannot_tell_which_cell() -> None:
    with pytest.raises(ValueError, match="needs a result or a cell"):
        judge(None, None)


def test_cell_is_skipped_with_reason_when_result_was_skipped() -> None:
    verdict = judge(make_result("skipped", skip_reason="eagle3 not supported by this vLLM"), None)
    assert (verdict.status, verdict.message) == ("SKIPPED", "eagle3 not supported by this vLLM")


def test_cell_has_no_baseline_with_record_command_when_baseline_missing() -> None:
    verdict = judge(make_result(metrics={"speedup": 2.0}), None)
    assert verdict.status == "NO_BASELINE"
    assert "baselines/l4/eagle3__llama-3.1-8b-instruct.json" in verdict.message
    assert "`fleet baseline record --tier smoke --hardware l4`" in verdict.message


def test_the_record_command_for_a_missing_baseline_records_where_it_was_looked_for() -> None:
    verdict = judge(make_result(metrics={"speedup": 2.0}), None,
                    baseline_path="/tmp/team-baselines/l4/eagle3__llama-3.1-8b-instruct.json")
    command = "`fleet baseline record --tier smoke --hardware l4 --baselines /tmp/team-baselines`"
    assert command in verdict.message


# --- run precedence -------------------------------------------------------------------------------


def cell_with(status: Status, index: int = 0) -> CellVerdict:
    return CellVerdict(cell_id=f"c{index}", variant="eagle3", model="m", hardware="l4", status=status)


def report_of(*statuses: Status) -> tuple[str, int]:
    report = summarize(
        [cell_with(s, i) for i, s in enumerate(statuses)],
        run_id="r1", tier="smoke", backend="local",
        started_at="2025-11-05T14:00:00Z", finished_at="2025-11-05T14:05:00Z",
    )
    return report.status, report.exit_code


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("PASS", "FAIL", "ERROR", "NO_BASELINE", "SKIPPED"), ("FAIL", ExitCode.REGRESSION)),
        (("PASS", "ERROR", "NO_BASELINE", "INCONCLUSIVE"), ("ERROR", ExitCode.INFRASTRUCTURE)),
        (("PASS", "NO_BASELINE", "SKIPPED"), ("NO_BASELINE", ExitCode.CONFIG)),
        (("PASS", "SKIPPED", "INCONCLUSIVE"), ("INCONCLUSIVE", ExitCode.INCONCLUSIVE)),
        (("PASS", "NO_BASELINE", "INCONCLUSIVE"), ("NO_BASELINE", ExitCode.CONFIG)),
        (("PASS",), ("PASS", ExitCode.PASS)),
        (("SKIPPED", "SKIPPED"), ("SKIPPED", ExitCode.PASS)),
        (("SKIPPED", "INCONCLUSIVE"), ("INCONCLUSIVE", ExitCode.INCONCLUSIVE)),
        ((), ("SKIPPED", ExitCode.PASS)),
    ],
)
def test_run_status_and_exit_code_follow_precedence(
    statuses: tuple[Status, ...], expected: tuple[str, ExitCode]
) -> None:
    assert report_of(*statuses) == (expected[0], int(expected[1]))


def test_exit_codes_match_the_documented_numbers() -> None:
    statuses = ("PASS", "FAIL", "NO_BASELINE", "ERROR", "INCONCLUSIVE")
    assert [report_of(s)[1] for s in statuses] == [0, 1, 2, 3, 4]


def test_report_keeps_cells_in_order_with_run_fields() -> None:
    cells = [cell_with("PASS", 0), cell_with("SKIPPED", 1)]
    report = summarize(cells, run_id="r9", tier="nightly", backend="kube",
                       started_at="a", finished_at="b")
    assert [c.cell_id for c in report.cells] == ["c0", "c1"]
    assert (report.run_id, report.tier, report.backend) == ("r9", "nightly", "kube")


# --- only the harmful side fails (issue 28) -------------------------------------------------------

RFC_EXAMPLE = {"ttft_p50_ms": (44.0, 15), "tpot_p50_ms": (12.3, 15), "acceptance_rate": (0.73, 10),
               "speedup": (2.1, 15)}


@pytest.mark.parametrize(("metric", "better_by", "worse_by"), [
    ("ttft_p50_ms", 0.77, 1.23),  # lower is better: 23 % faster passes, 23 % slower fails
    ("tpot_p50_ms", 0.77, 1.23),
    ("speedup", 1.23, 0.77),  # higher is better
    ("acceptance_rate", 1.23, 0.77),
])
def test_the_rfc_rule_fails_only_beyond_the_harmful_bound(metric: str, better_by: float,
                                                         worse_by: float) -> None:
    expected, tolerance = RFC_EXAMPLE[metric]
    entry = MetricBaseline(expected=expected, tolerance_pct=tolerance)
    better = judge_metric(metric, expected * better_by, entry)
    assert better.status == "PASS" and "better than the range" in better.detail
    assert judge_metric(metric, expected * worse_by, entry).status == "FAIL"


def test_a_23_percent_faster_ttft_passes_the_rfc_example_cell() -> None:
    observed = {name: e for name, (e, _) in RFC_EXAMPLE.items()} | {"ttft_p50_ms": 44.0 * 0.77}
    verdict = judge(make_result(metrics=observed), make_baseline(**RFC_EXAMPLE))
    assert verdict.status == "PASS"
    ttft = next(m for m in verdict.metrics if m.metric == "ttft_p50_ms")
    assert ttft.observed is not None and ttft.lo is not None and ttft.observed < ttft.lo  # beyond, yet PASS


def test_rule_rfc_over_several_runs_passes_a_faster_mean_and_fails_a_slower_one() -> None:
    baseline = make_baseline(**RFC_EXAMPLE)
    at = {name: e for name, (e, _) in RFC_EXAMPLE.items()}
    faster = [make_result(metrics=at | {"tpot_p50_ms": 12.3 * f}) for f in (0.7, 0.72)]
    slower = [make_result(metrics=at | {"tpot_p50_ms": 12.3 * f}) for f in (1.3, 1.28)]
    for runs, status in ((faster, "PASS"), (slower, "FAIL")):
        verdict = judge(runs[-1], baseline, candidates=runs, rule="rfc")
        assert verdict.status == status


def test_the_text_report_says_better_than_for_a_faster_ttft() -> None:
    observed = {name: e for name, (e, _) in RFC_EXAMPLE.items()} | {"ttft_p50_ms": 44.0 * 0.77}
    verdict = judge(make_result(metrics=observed), make_baseline(**RFC_EXAMPLE))
    report = summarize([verdict], run_id="r", tier="smoke", backend="kube", started_at="s", finished_at="f")
    line = next(line for line in render_text(report, {}, {}).splitlines() if "ttft_p50_ms:" in line)
    assert "better than [37.4, 50.6]" in line and line.endswith("✓")
