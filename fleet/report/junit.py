"""JUnit XML: the report CI systems (Buildkite, GitHub Actions, Jenkins, GitLab) already know how to show.

One <testsuite> per run, one <testcase> per cell (classname `fleet.<tier>.<hardware>`, name = cell id).
Statuses map onto JUnit's four outcomes by what they mean for the run's exit code:
    FAIL          <failure type="regression">  the metric lines of the RFC's failure form
    ERROR         <error type="<category>">     the error and its log tail
    NO_BASELINE   <error type="no-baseline">    the run exits 2: a missing input is an error, not a skip
    SKIPPED       <skipped>                     the method cannot run there
    INCONCLUSIVE  <failure type="inconclusive"> the run exits 4: unsettled after its reruns is not a pass
A differential pair (fleet.judge.differential) is a testcase of classname `fleet.<tier>.<hardware>.
differential`: DIVERGES a <failure type="divergence"> (exit 1), INCONCLUSIVE one of type inconclusive.
Every test case carries all its metric lines in <system-out>, so a reviewer sees passing numbers too,
and, when the run was costed, its GPU time; the run's total GPU-hours and dollars are suite properties
(`gpu_hours`, `cost_usd`), where a CI dashboard can chart them.

Times, in seconds: a testcase's is the time its cell's Jobs took, every attempt's span added (retries and
reruns cost time too), as the run's accounting (`RunReport.cost`, from the attempts' JobSpans) has it; a
cell the accounting shows no Job for took 0 s. The testsuite's is the sum of its testcases', so a CI
server's per-suite figure agrees with its cases; the testsuites root keeps the run's wall clock, start to
finish, which is shorter where cells ran in parallel. A report without accounting (one merged from shards
without their jobs files) has no per-cell times: its testcases carry none rather than a made-up 0, and its
testsuite falls back to the run's wall clock.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from fleet.model import CellVerdict, RunReport
from fleet.report import differential
from fleet.report.text import metric_line_fail, metric_lines_pass


def _seconds(started: str, finished: str) -> float:
    try:
        delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    except ValueError:
        return 0.0
    return max(delta.total_seconds(), 0.0)


def _time(seconds: float) -> str:
    return f"{seconds:.3f}"


def cell_seconds(report: RunReport) -> dict[str, float] | None:
    """Each cell's Job time in seconds, all attempts added, from the run's accounting; None without one."""
    per_cell = (report.cost or {}).get("per_cell")
    if per_cell is None or any("wall_hours" not in line for line in per_cell.values()):
        return None
    seconds = {cell_id: float(line["wall_hours"]) * 3600.0 for cell_id, line in per_cell.items()}
    return {cell.cell_id: seconds.get(cell.cell_id, 0.0) for cell in report.cells}


def _metric_text(cell: CellVerdict, cost: dict[str, Any] | None) -> str:
    lines = metric_lines_pass(m for m in cell.metrics if m.status in ("PASS", "FAIL"))
    lines += [f"  {m.metric}: {m.status.lower()} ({m.detail})" for m in cell.metrics
              if m.status not in ("PASS", "FAIL")]
    if cost is not None:
        lines.append(f"GPU time: {cost['gpu_hours']:.3f} GPU-h, ${cost['cost_usd']:,.2f} "
                     f"({cost['jobs']} job{'s' if cost['jobs'] != 1 else ''})")
    return "\n".join([cell.message, *lines]) + "\n"


def _testcase(parent: ET.Element, cell: CellVerdict, tier: str, cost: dict[str, Any] | None = None,
              seconds: float | None = None) -> None:
    case = ET.SubElement(parent, "testcase", name=cell.cell_id, classname=f"fleet.{tier}.{cell.hardware}")
    if seconds is not None:
        case.set("time", _time(seconds))
    if cell.status == "FAIL":
        failed = [metric_line_fail(m).strip() for m in cell.metrics if m.status == "FAIL"]
        node = ET.SubElement(case, "failure", type="regression", message=cell.message)
        node.text = "\n".join(failed) + "\n"
    elif cell.status == "ERROR":
        category = cell.error.category if cell.error is not None else "infrastructure"
        node = ET.SubElement(case, "error", type=category, message=cell.message)
        node.text = cell.error.log_tail if cell.error is not None else ""
    elif cell.status == "NO_BASELINE":
        ET.SubElement(case, "error", type="no-baseline", message=cell.message)
    elif cell.status == "SKIPPED":
        ET.SubElement(case, "skipped", message=cell.message)
    elif cell.status == "INCONCLUSIVE":
        ET.SubElement(case, "failure", type="inconclusive", message=cell.message)
    out = ET.SubElement(case, "system-out")
    out.text = _metric_text(cell, cost)


def render_junit(report: RunReport) -> str:
    """The report as a JUnit XML document (UTF-8, with declaration), ending with a newline."""
    counts = {status: sum(1 for c in report.cells if c.status == status)
              for status in ("FAIL", "ERROR", "NO_BASELINE", "SKIPPED", "INCONCLUSIVE")}
    pair_cases, pair_failures = differential.junit_counts(report)
    totals = {
        "tests": str(len(report.cells) + pair_cases),
        "failures": str(counts["FAIL"] + counts["INCONCLUSIVE"] + pair_failures),
        "errors": str(counts["ERROR"] + counts["NO_BASELINE"]),
    }
    wall = _seconds(report.started_at, report.finished_at)
    per_cell_seconds = cell_seconds(report)
    suite_seconds = wall if per_cell_seconds is None else sum(per_cell_seconds.values())
    root = ET.Element("testsuites", {"name": "fleet", "time": _time(wall), **totals})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"fleet.{report.tier}", "time": _time(suite_seconds), **totals,
        "skipped": str(counts["SKIPPED"]),
        "timestamp": report.started_at, "id": report.run_id})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", report.run_id), ("backend", report.backend), ("status", report.status),
                        ("exit_code", str(report.exit_code)), ("rule", report.rule or "auto"),
                        ("error_control", report.error_control or ""),
                        ("alpha", "" if report.alpha is None else f"{report.alpha:g}")):
        ET.SubElement(properties, "property", name=name, value=value)
    cost = report.cost or {}
    if "total" in cost:
        for name in ("gpu_hours", "cost_usd", "unpriced_gpu_hours"):
            ET.SubElement(properties, "property", name=name, value=f"{cost['total'][name]:.6g}")
    per_cell = cost.get("per_cell", {})
    for cell in report.cells:
        _testcase(suite, cell, report.tier, per_cell.get(cell.cell_id),
                  None if per_cell_seconds is None else per_cell_seconds[cell.cell_id])
    differential.junit_testcases(suite, report)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
