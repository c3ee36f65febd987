"""The text report against RFC #28135's sample output, line by line, plus fleet's extra forms.

The RFC's numbers are reproduced through the real judge (judge_cell, summarize) and rendered. The
output equals the RFC's block except for these documented differences:
- `Test Prompts: 100 (sharegpt)`: the parenthesis names the prompt source (RFC: "mixed categories").
- `GPU: NVIDIA L4 (1x)`: the device name as the driver reports it (RFC: "L4").
- Under Action Required steps 2 and 3, a line with the exact command (record / bisect) is added.
- A one-line run summary precedes the footer.
- tpot_p50_ms's upper bound prints as 14.1, not 14.2: 12.3 * 1.15 = 14.145 rounds half-up to 14.1
  (the RFC rounded twice, or up). Every other number equals the RFC's.
"""

from __future__ import annotations

import json

import pytest

from fleet.judge import judge_cell, summarize
from fleet.model import (
    Baseline,
    Cell,
    CellVerdict,
    Hardware,
    MetricVerdict,
    Provenance,
    ResultError,
    RunReport,
    RunResult,
    Variant,
    Workload,
)
from fleet.report import render_json, render_text
from fleet.report.text import fmt_expected, fmt_number, metric_format, metric_line_fail, metric_lines_pass

RFC_BLOCK = """\
===== Speculative Decoding Regression Test Results =====

Test: Eagle3 Regression - Llama-3.1-8B-Instruct
Status: ✓ PASSED
Duration: 4m 32s

Baseline: eagle3_llama3.1_8b.json

Metrics (all within tolerance):
  match_rate:       0.765 within [0.675, 0.825] (expected: 0.75 ±10%) ✓
  acceptance_rate:  0.741 within [0.657, 0.803] (expected: 0.73 ±10%) ✓
  ttft_p50_ms:      44.8  within [37.4, 50.6]   (expected: 44.0 ±15%) ✓
  tpot_p50_ms:      12.9  within [10.5, 14.2]   (expected: 12.3 ±15%) ✓
  speedup:          2.08  within [1.79, 2.42]   (expected: 2.10 ±15%) ✓

Details:
  Test Prompts: 100 (mixed categories)
  GPU: L4 (1x)
  Dataset: ShareGPT
  Commit: 3481e4074
  Timestamp: 2025-11-05T14:32:15Z

---

Example FAILURE output:

Test: Eagle3 Regression - Llama-3.1-8B-Instruct
Status: ✗ FAILED
Duration: 4m 18s

Regression detected:
  - acceptance_rate: 0.635 outside range [0.657, 0.803] (expected: 0.73 ±10%)
  - speedup: 1.62 outside range [1.79, 2.42] (expected: 2.10 ±15%)

Baseline: eagle3_llama3.1_8b.json
Last updated: 2025-11-05
Commit: 3481e4074

Action Required:
  1. Investigate recent changes to spec decode code
  2. Check if this is an intentional change requiring baseline update
  3. If regression is real, bisect to find problematic commit

=================================================
"""
RFC_LINES = RFC_BLOCK.splitlines()
RFC_PASS = RFC_LINES[: RFC_LINES.index("---") - 1]
RFC_FAIL = RFC_LINES[RFC_LINES.index("Example FAILURE output:") + 2 :]
CELL_ID = "eagle3__llama-3.1-8b-instruct__l4"
BASELINE_FILE = "baselines/l4/eagle3_llama3.1_8b.json"

# The RFC's baseline JSON plus the match_rate row its report shows, in the report's order.
RFC_BASELINE = Baseline.model_validate(
    {
        "variant": "eagle3",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "draft_model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
        "gpu_type": "L4",
        "dataset": "sharegpt",
        "baselines": {
            "match_rate": {"expected": 0.75, "tolerance_pct": 10},
            "acceptance_rate": {"expected": 0.73, "tolerance_pct": 10},
            "ttft_p50_ms": {"expected": 44.0, "tolerance_pct": 15},
            "tpot_p50_ms": {"expected": 12.3, "tolerance_pct": 15},
            "speedup": {"expected": 2.1, "tolerance_pct": 15},
        },
        "last_updated": "2025-11-05",
        "baseline_commit": "3481e4074",
        "notes": "Baseline from 10 benchmark runs on L4 GPU",
    }
)
PASS_METRICS = {
    "match_rate": 0.765, "acceptance_rate": 0.741, "ttft_p50_ms": 44.8, "tpot_p50_ms": 12.9, "speedup": 2.08,
}
FAIL_METRICS = PASS_METRICS | {"acceptance_rate": 0.635, "speedup": 1.62}


def make_cell(hardware: str = "l4", variant: str = "eagle3") -> Cell:
    return Cell(
        tier="smoke",
        variant=Variant(name=variant, method="eagle3", num_speculative_tokens=3),
        model="meta-llama/Llama-3.1-8B-Instruct",
        draft_model="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
        hardware=Hardware(name=hardware, vendor="nvidia", gpu_product="NVIDIA-L4"),
        workload=Workload(num_prompts=100, dataset="sharegpt"),
        engine="vllm",
    )


def make_result(metrics: dict[str, float], finished_at: str, cell: Cell | None = None) -> RunResult:
    provenance = Provenance(
        fleet_version="0.1.0",
        engine="vllm",
        vllm_commit="3481e4074",
        gpu_name="NVIDIA L4",
        gpu_count=1,
        started_at="2025-11-05T14:32:15Z",
        finished_at=finished_at,
    )
    return RunResult(cell=cell or make_cell(), status="ok", provenance=provenance, metrics=metrics)


def render_one(result: RunResult, baseline: Baseline | None) -> tuple[str, RunReport]:
    verdict = judge_cell(
        result, baseline, baseline_path=BASELINE_FILE, result_path=None, attempts=1, error=None
    )
    report = summarize([verdict], run_id="r1", tier="smoke", backend="kube",
                       started_at="2025-11-05T14:30:00Z", finished_at="2025-11-05T14:40:00Z")
    keyed_baselines = {verdict.cell_id: baseline} if baseline is not None else {}
    return render_text(report, {verdict.cell_id: result}, keyed_baselines), report


def replaced(lines: list[str], old: str, new: str) -> list[str]:
    assert old in lines, old
    return [new if line == old else line for line in lines]


RFC_TPOT = "  tpot_p50_ms:      12.9  within [10.5, 14.2]   (expected: 12.3 ±15%) ✓"
FLEET_TPOT = "  tpot_p50_ms:      12.9  within [10.5, 14.1]   (expected: 12.3 ±15%) ✓"


def test_pass_form_equals_rfc_sample_except_documented_lines() -> None:
    text, _ = render_one(make_result(PASS_METRICS, "2025-11-05T14:36:47Z"), RFC_BASELINE)
    expected = replaced(RFC_PASS, RFC_TPOT, FLEET_TPOT)
    expected = replaced(expected, "  Test Prompts: 100 (mixed categories)", "  Test Prompts: 100 (sharegpt)")
    expected = replaced(expected, "  GPU: L4 (1x)", "  GPU: NVIDIA L4 (1x)")
    summary = "Run r1 (tier smoke, kube): 1 cell: 1 passed, 0 failed — overall PASS (exit 0)"
    assert text.splitlines() == [*expected, "", summary, "", "=" * 49]
    assert text.endswith("=\n")


def test_pass_metric_lines_equal_rfc_lines_except_tpot_upper_bound() -> None:
    text, _ = render_one(make_result(PASS_METRICS, "2025-11-05T14:36:47Z"), RFC_BASELINE)
    rfc_metric_lines = [line for line in replaced(RFC_PASS, RFC_TPOT, FLEET_TPOT) if line.endswith(" ✓")]
    assert len(rfc_metric_lines) == 5
    assert [line for line in text.splitlines() if line.endswith(" ✓")] == rfc_metric_lines


def test_fail_form_equals_rfc_sample_plus_commands() -> None:
    text, report = render_one(make_result(FAIL_METRICS, "2025-11-05T14:36:33Z"), RFC_BASELINE)
    expected = [RFC_LINES[0], "", *RFC_FAIL]
    step2 = expected.index("  2. Check if this is an intentional change requiring baseline update")
    record = "     fleet baseline record --tier smoke --hardware l4 --variant eagle3 --update"
    expected.insert(step2 + 1, record)
    # The RFC's run and baseline share commit 3481e4074, so the good end is left for the user to name.
    bisect = (f"     fleet bisect --good GOOD_SHA --bad 3481e4074 --cell {CELL_ID} --repo VLLM_CLONE "
              "--metric acceptance_rate")
    expected.insert(step2 + 3, bisect)
    summary = "Run r1 (tier smoke, kube): 1 cell: 0 passed, 1 failed — overall FAIL (exit 1)"
    expected[-1:-1] = [summary, ""]
    assert text.splitlines() == expected
    assert report.exit_code == 1


def test_fail_form_lines_equal_rfc_regression_lines_exactly() -> None:
    text, _ = render_one(make_result(FAIL_METRICS, "2025-11-05T14:36:33Z"), RFC_BASELINE)
    rfc_lines = [line for line in RFC_FAIL if line.startswith("  - ")]
    assert [line for line in text.splitlines() if line.startswith("  - ")] == rfc_lines


def test_bisect_command_starts_from_baseline_commit_when_it_differs() -> None:
    older = RFC_BASELINE.model_copy(update={"baseline_commit": "1111aaaa2"})
    text, _ = render_one(make_result(FAIL_METRICS, "2025-11-05T14:36:33Z"), older)
    assert (f"     fleet bisect --good 1111aaaa2 --bad 3481e4074 --cell {CELL_ID} --repo VLLM_CLONE "
            "--metric acceptance_rate") in text.splitlines()


def test_bisect_command_names_placeholders_when_commits_unknown() -> None:
    no_commit = RFC_BASELINE.model_copy(update={"baseline_commit": None})
    result = make_result(FAIL_METRICS, "2025-11-05T14:36:33Z")
    provenance = result.provenance.model_copy(update={"vllm_commit": None})
    result = result.model_copy(update={"provenance": provenance})
    text, _ = render_one(result, no_commit)
    assert f"fleet bisect --good GOOD_SHA --bad BAD_SHA --cell {CELL_ID} --repo VLLM_CLONE" in text
    assert "Commit: unknown" in text


def test_missing_metric_is_listed_as_regression() -> None:
    metrics = {k: v for k, v in PASS_METRICS.items() if k != "speedup"}
    text, _ = render_one(make_result(metrics, "2025-11-05T14:36:33Z"), RFC_BASELINE)
    assert "  - speedup: missing from result (expected: 2.10 ±15%)" in text.splitlines()


def test_no_baseline_form_shows_observed_values_and_record_command() -> None:
    text, report = render_one(make_result(PASS_METRICS, "2025-11-05T14:36:47Z"), None)
    lines = text.splitlines()
    assert "Status: ? NO BASELINE" in lines
    assert f"No baseline: {BASELINE_FILE}" in lines
    assert "  acceptance_rate:  0.741" in lines
    assert "     fleet baseline record --tier smoke --hardware l4 --variant eagle3" in lines
    assert report.exit_code == 2


def error_report(category: str) -> str:
    log = "\n".join(f"line {i}" for i in range(30))
    error = ResultError.model_validate(
        {"category": category, "reason": "oom", "message": "CUDA out of memory", "log_tail": log,
         "exit_code": 137}
    )
    verdict = judge_cell(None, None, baseline_path=None, result_path=None, attempts=3, error=error,
                         cell=make_cell())
    report = summarize([verdict], run_id="r2", tier="smoke", backend="kube", started_at="a", finished_at="b")
    return render_text(report, {}, {})


def test_error_form_shows_category_reason_log_tail_and_rerun_advice_for_infrastructure() -> None:
    lines = error_report("infrastructure").splitlines()
    assert "Status: ⚠ ERROR" in lines
    assert "Error (infrastructure, oom): CUDA out of memory" in lines
    assert "Attempts: 3" in lines
    assert "Log tail (last 10 lines):" in lines
    assert "  | line 29" in lines and "  | line 19" not in lines
    assert "  1. Rerun the cell: infrastructure failures are often transient" in lines
    assert any("check the l4 nodes" in line for line in lines)
    assert lines[-3].endswith("0 passed, 0 failed, 1 errored — overall ERROR (exit 3)")


def test_error_form_asks_to_fix_input_for_config_errors() -> None:
    text = error_report("config")
    assert "Fix the input named in the error above" in text
    assert "Rerun the cell: infrastructure" not in text


def test_skipped_form_shows_the_reason() -> None:
    result = RunResult(cell=make_cell(), status="skipped", skip_reason="method eagle3 unavailable",
                       provenance=Provenance(fleet_version="0.1.0", engine="vllm"))
    text, report = render_one(result, RFC_BASELINE)
    assert "Status: - SKIPPED" in text.splitlines()
    assert "Reason: method eagle3 unavailable" in text.splitlines()
    assert (report.status, report.exit_code) == ("SKIPPED", 0)


def test_inconclusive_form_lists_metrics_and_note() -> None:
    metric = MetricVerdict(metric="ttft_p50_ms", status="INCONCLUSIVE", observed=52.0, expected=44.0,
                           detail="p=0.08, rerun")
    report = RunReport(run_id="r", tier="smoke", backend="local", started_at="a", finished_at="b",
                       status="INCONCLUSIVE", exit_code=0,
                       cells=[make_verdict("INCONCLUSIVE", metrics=[metric])])
    lines = render_text(report, {}, {}).splitlines()
    assert "Status: ? INCONCLUSIVE" in lines
    assert "  ttft_p50_ms: inconclusive (p=0.08, rerun)" in lines


def make_verdict(status: str, **fields: object) -> CellVerdict:
    return CellVerdict.model_validate(
        {"cell_id": CELL_ID, "variant": "eagle3", "model": "meta-llama/Llama-3.1-8B-Instruct",
         "hardware": "l4", "status": status} | fields
    )


def test_test_line_names_hardware_when_report_spans_several_pools() -> None:
    cells = [make_cell("l4"), make_cell("a100")]
    results = {c.id: make_result(PASS_METRICS, "2025-11-05T14:36:47Z", c) for c in cells}
    verdicts = [judge_cell(results[c.id], None, baseline_path=None, result_path=None, attempts=1, error=None)
                for c in cells]
    report = summarize(verdicts, run_id="r3", tier="nightly", backend="kube", started_at="a", finished_at="b")
    lines = render_text(report, results, {}).splitlines()
    assert "Test: Eagle3 Regression - Llama-3.1-8B-Instruct on l4" in lines
    assert "Test: Eagle3 Regression - Llama-3.1-8B-Instruct on a100" in lines
    assert lines.count("---") == 1
    assert lines[-3] == "Run r3 (tier nightly, kube): 2 cells: 0 passed, 0 failed, 2 without baseline " \
                        "— overall NO_BASELINE (exit 2)"


def test_empty_report_has_header_summary_and_footer() -> None:
    report = summarize([], run_id="r0", tier="smoke", backend="local", started_at="a", finished_at="b")
    assert render_text(report, {}, {}).splitlines() == [
        RFC_LINES[0],
        "",
        "Run r0 (tier smoke, local): 0 cells: 0 passed, 0 failed — overall SKIPPED (exit 0)",
        "",
        "=" * 49,
    ]


@pytest.mark.parametrize(
    ("name", "value", "decimals"),
    [
        ("acceptance_rate", 0.7, 3), ("match_rate", 0.7, 3), ("ttft_p50_ms", 44.0, 1), ("speedup", 2.1, 2),
        ("acceptance_length", 2.6, 2), ("e2e_p50_s", 1.2, 3), ("output_tokens_per_s", 950.0, 1),
        ("acceptance_rate_pos0", 0.7, 3), ("acceptance_rate_2", 0.7, 3),
        ("weird", 3.0, 3), ("weird", 30.0, 1),
    ],
)
def test_metric_decimals_are_chosen_by_name_suffix(name: str, value: float, decimals: int) -> None:
    assert metric_format(name, value).decimals == decimals


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (1.7850000000000001, 2, "1.79"), (2.415, 2, "2.42"), (10.455, 1, "10.5"),
        (14.145000000000001, 1, "14.1"), (14.15, 1, "14.2"), (0.8029999999999999, 3, "0.803"),
        (-1.25, 1, "-1.3"), (44.0, 1, "44.0"),
    ],
)
def test_numbers_round_half_up_on_their_decimal_form(value: float, decimals: int, text: str) -> None:
    assert fmt_number(value, decimals) == text


def test_expected_keeps_recorded_precision_with_a_minimum() -> None:
    assert [fmt_expected(v, metric_format(n, v)) for n, v in
            [("match_rate", 0.75), ("match_rate", 0.7312), ("speedup", 2.1), ("ttft_p50_ms", 44.0)]] == [
        "0.75", "0.731", "2.10", "44.0"]


def test_line_gets_more_decimals_when_rounding_would_contradict_the_verdict() -> None:
    # 14.146 is outside [10.455, 14.145]; with 1 or 2 decimals it would print inside its bounds.
    metric = MetricVerdict(metric="tpot_p50_ms", status="FAIL", observed=14.146, expected=12.3, lo=10.455,
                           hi=14.145, tolerance_pct=15)
    assert metric_lines_pass([metric]) == [
        "  tpot_p50_ms:  14.146 outside [10.455, 14.145] (expected: 12.3 ±15%) ✗"
    ]
    assert metric_line_fail(metric) == (
        "  - tpot_p50_ms: 14.146 outside range [10.455, 14.145] (expected: 12.3 ±15%)"
    )
    inside = metric.model_copy(update={"observed": 14.14, "status": "PASS"})
    assert metric_lines_pass([inside])[0].startswith("  tpot_p50_ms:  14.1 within [10.5, 14.1] ")


def test_json_report_round_trips_with_indent_two() -> None:
    _, report = render_one(make_result(FAIL_METRICS, "2025-11-05T14:36:33Z"), RFC_BASELINE)
    document = render_json(report)
    assert document.startswith('{\n  "schema_version": 2,') and document.endswith("}\n")
    assert RunReport.model_validate_json(document) == report
    assert json.loads(document)["cells"][0]["metrics"][1]["status"] == "FAIL"
