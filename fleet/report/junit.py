"""JUnit XML: the report CI systems (Buildkite, GitHub Actions, Jenkins, GitLab) already know how to show.

One <testsuite> per run, one <testcase> per cell (classname `fleet.<tier>.<hardware>`, name = cell id).
Statuses map onto JUnit's four outcomes by what they mean for the run's exit code:
    FAIL          <failure type="regression">  the metric lines of the RFC's failure form
    ERROR         <error type="<category>">     the error and its log tail
    NO_BASELINE   <error type="no-baseline">    the run exits 2: a missing input is an error, not a skip
    SKIPPED       <skipped>                     the method cannot run there
    INCONCLUSIVE  <skipped type="inconclusive"> not a failure (the run stays green), but visible
Every test case carries all its metric lines in <system-out>, so a reviewer sees passing numbers too,
and, when the run was costed, its GPU time; the run's total GPU-hours and dollars are suite properties
(`gpu_hours`, `cost_usd`), where a CI dashboard can chart them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from fleet.model import CellVerdict, RunReport
from fleet.report.text import metric_line_fail, metric_lines_pass


def _seconds(started: str, finished: str) -> str:
    try:
        delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    except ValueError:
        return "0"
    return f"{max(delta.total_seconds(), 0.0):.3f}"


def _metric_text(cell: CellVerdict, cost: dict[str, Any] | None) -> str:
    lines = metric_lines_pass(m for m in cell.metrics if m.status in ("PASS", "FAIL"))
    lines += [f"  {m.metric}: {m.status.lower()} ({m.detail})" for m in cell.metrics
              if m.status not in ("PASS", "FAIL")]
    if cost is not None:
        lines.append(f"GPU time: {cost['gpu_hours']:.3f} GPU-h, ${cost['cost_usd']:,.2f} "
                     f"({cost['jobs']} job{'s' if cost['jobs'] != 1 else ''})")
    return "\n".join([cell.message, *lines]) + "\n"


def _testcase(parent: ET.Element, cell: CellVerdict, tier: str, cost: dict[str, Any] | None = None) -> None:
    case = ET.SubElement(parent, "testcase", name=cell.cell_id, classname=f"fleet.{tier}.{cell.hardware}")
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
        ET.SubElement(case, "skipped", type="inconclusive", message=cell.message)
    out = ET.SubElement(case, "system-out")
    out.text = _metric_text(cell, cost)


def render_junit(report: RunReport) -> str:
    """The report as a JUnit XML document (UTF-8, with declaration), ending with a newline."""
    counts = {status: sum(1 for c in report.cells if c.status == status)
              for status in ("FAIL", "ERROR", "NO_BASELINE", "SKIPPED", "INCONCLUSIVE")}
    totals = {
        "tests": str(len(report.cells)),
        "failures": str(counts["FAIL"]),
        "errors": str(counts["ERROR"] + counts["NO_BASELINE"]),
    }
    time = _seconds(report.started_at, report.finished_at)
    root = ET.Element("testsuites", {"name": "fleet", "time": time, **totals})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"fleet.{report.tier}", "time": time, **totals,
        "skipped": str(counts["SKIPPED"] + counts["INCONCLUSIVE"]),
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
        _testcase(suite, cell, report.tier, per_cell.get(cell.cell_id))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
