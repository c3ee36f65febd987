"""JUnit XML and Markdown reports: schema-valid, one testcase per cell, failures carry the metric lines."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from fleet.model import CellVerdict, MetricVerdict, ResultError, RunReport, Status
from fleet.plan.cost import JobSpan, account, cost_document
from fleet.report import FORMATS, render
from fleet.report.junit import render_junit
from fleet.report.markdown import render_markdown

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "data" / "junit.xsd")
FAILED = MetricVerdict(
    metric="acceptance_rate",
    status="FAIL",
    observed=0.635,
    expected=0.73,
    lo=0.657,
    hi=0.803,
    tolerance_pct=10,
    rule="rfc",
    detail="-13.0%",
)
PASSED = MetricVerdict(
    metric="speedup",
    status="PASS",
    observed=2.08,
    expected=2.1,
    lo=1.785,
    hi=2.415,
    tolerance_pct=15,
    rule="rfc",
    detail="-1%",
)


def cell(status: Status, index: int, **extra: object) -> CellVerdict:
    return CellVerdict.model_validate(
        {
            "cell_id": f"eagle3__m{index}__l4",
            "variant": "eagle3",
            "model": "m",
            "hardware": "l4",
            "status": status,
            "message": f"{status} & <why>",
            **extra,
        }
    )


def report(*cells: CellVerdict) -> RunReport:
    return RunReport(
        run_id="nightly-1",
        tier="nightly",
        backend="kube",
        started_at="2025-11-05T14:00:00+00:00",
        finished_at="2025-11-05T14:45:00+00:00",
        status="FAIL",
        exit_code=1,
        cells=list(cells),
        rule="auto",
        error_control="holm",
        alpha=0.01,
    )


EVERY_STATUS = report(
    cell("PASS", 0, metrics=[PASSED]),
    cell("FAIL", 1, metrics=[FAILED, PASSED]),
    cell(
        "ERROR",
        2,
        error=ResultError(
            category="infrastructure", reason="oom", message="CUDA OOM", log_tail="line 1\nline 2"
        ),
    ),
    cell("NO_BASELINE", 3),
    cell("SKIPPED", 4),
    cell("INCONCLUSIVE", 5, metrics=[PASSED.model_copy(update={"status": "INCONCLUSIVE"})]),
)


def test_junit_report_validates_against_the_junit_schema() -> None:
    SCHEMA.validate(render_junit(EVERY_STATUS))


def test_the_schema_check_rejects_a_report_with_a_missing_counter() -> None:
    broken = render_junit(EVERY_STATUS).replace(' failures="2"', "", 1).replace(' failures="2"', "", 1)
    assert not SCHEMA.is_valid(broken)


def test_junit_has_a_testcase_per_cell_and_counts_that_add_up() -> None:
    root = ET.fromstring(render_junit(EVERY_STATUS))
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.cell_id for c in EVERY_STATUS.cells]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "6",
        "2",
        "2",
        "1",
    )
    assert suite.get("time") == "2700.000"


def test_a_failed_cell_carries_the_rfc_failure_lines() -> None:
    root = ET.fromstring(render_junit(EVERY_STATUS))
    failure = root.find("testsuite/testcase[@name='eagle3__m1__l4']/failure")
    assert failure is not None and failure.get("type") == "regression"
    assert failure.text == "- acceptance_rate: 0.635 outside range [0.657, 0.803] (expected: 0.73 ±10%)\n"


def test_no_baseline_is_an_error_and_inconclusive_a_typed_failure() -> None:
    root = ET.fromstring(render_junit(EVERY_STATUS))
    assert root.find("testsuite/testcase[@name='eagle3__m3__l4']/error").get("type") == "no-baseline"  # type: ignore[union-attr]
    unsettled = root.find("testsuite/testcase[@name='eagle3__m5__l4']/failure")
    assert unsettled is not None and unsettled.get("type") == "inconclusive"  # the run exits 4


def test_markdown_lists_every_cell_and_details_only_the_non_passing_ones() -> None:
    text = render_markdown(EVERY_STATUS)
    assert text.count("| `eagle3__m") == 6
    assert text.count("<details>") == 5
    assert "`acceptance_rate` | 0.635 | 0.73 | [0.657, 0.803]" in text
    assert "CUDA OOM" in text or "ERROR & <why>" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_from_the_one_report(fmt: str) -> None:
    assert render(EVERY_STATUS, fmt).endswith("\n")  # type: ignore[arg-type]


def test_a_costed_run_carries_its_gpu_hours_in_the_junit_suite_and_each_case() -> None:
    line = {"jobs": 2, "wall_hours": 0.5, "gpu_hours": 1.0, "cost_usd": 3.0, "unpriced_gpu_hours": 0.0}
    cost = {"total": line, "per_cell": {EVERY_STATUS.cells[0].cell_id: line}, "per_hardware": {},
            "prices_usd_per_gpu_hour": {}}
    costed = EVERY_STATUS.model_copy(update={"cost": cost})
    document = render_junit(costed)
    SCHEMA.validate(document)
    [suite] = ET.fromstring(document).findall("testsuite")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (properties["gpu_hours"], properties["cost_usd"]) == ("1", "3")
    first = suite.findall("testcase")[0].find("system-out")
    assert first is not None and "GPU time: 1.000 GPU-h, $3.00 (2 jobs)" in (first.text or "")


def accounted(report: RunReport, spans: list[JobSpan]) -> RunReport:
    """The report as `fleet submit` writes it: the attempts' spans accounted into its `cost`."""
    return report.model_copy(update={"cost": cost_document(account(spans, {"l4": 0.8}))})


START = 1_762_351_200.0  # 2025-11-05T14:00:00Z, the run's start
TIMED = accounted(EVERY_STATUS, [
    JobSpan("eagle3__m0__l4", "l4", 1, START, START + 120.0),
    # a retried cell: both attempts' time counts
    JobSpan("eagle3__m1__l4", "l4", 1, START, START + 100.0, attempt=1),
    JobSpan("eagle3__m1__l4", "l4", 1, START + 100.0, START + 150.5, attempt=2),
    JobSpan("eagle3__m2__l4", "l4", 1, START, START + 30.25),
])


def test_every_testcase_carries_the_time_its_cells_jobs_took_and_the_suite_their_total() -> None:
    document = render_junit(TIMED)
    SCHEMA.validate(document)
    root = ET.fromstring(document)
    [suite] = root.findall("testsuite")
    times = {case.get("name"): case.get("time") for case in suite.findall("testcase")}
    assert times == {"eagle3__m0__l4": "120.000", "eagle3__m1__l4": "150.500", "eagle3__m2__l4": "30.250",
                     "eagle3__m3__l4": "0.000", "eagle3__m4__l4": "0.000", "eagle3__m5__l4": "0.000"}
    assert suite.get("time") == "300.750"
    assert root.get("time") == "2700.000"  # the run's wall clock: its cells ran in parallel


def test_the_times_survive_the_report_json_round_trip() -> None:
    reread = RunReport.model_validate_json(render(TIMED, "json"))
    assert render_junit(reread) == render_junit(TIMED)


def test_testcases_carry_no_made_up_time_when_the_run_was_not_accounted() -> None:
    [suite] = ET.fromstring(render_junit(EVERY_STATUS)).findall("testsuite")
    assert all(case.get("time") is None for case in suite.findall("testcase"))
    assert suite.get("time") == "2700.000"
