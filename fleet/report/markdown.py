"""Markdown for a CI step summary (GitHub's $GITHUB_STEP_SUMMARY, Buildkite annotations).

A summary line, one table row per cell, then a collapsible block per non-passing cell with its metric
lines, so the page stays short when all is well and says exactly what broke when it is not.
"""

from __future__ import annotations

from fleet.model import CellVerdict, MetricVerdict, RunReport
from fleet.report import differential
from fleet.report.limits import limit_text
from fleet.report.text import summary_line

_ICON = {"PASS": "✅", "FAIL": "❌", "ERROR": "⚠️", "NO_BASELINE": "❓", "SKIPPED": "⏭️", "INCONCLUSIVE": "🔁"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _metric_row(m: MetricVerdict) -> str:
    named = limit_text(m)
    bounds = "—" if m.lo is None or m.hi is None else f"[{_number(m.lo)}, {_number(m.hi)}]"
    bounds += f" ({named})" if named and m.lo is not None and m.hi is not None else ""
    p = "—" if m.adjusted_p is None else f"{m.adjusted_p:.2g}"
    return (
        f"| {_ICON.get(m.status, '')} {m.status} | `{m.metric}` | {_number(m.observed)} | "
        f"{_number(m.expected)} | {bounds} | {p} | {_cell(m.detail)} |"
    )


def _details(cell: CellVerdict) -> list[str]:
    lines = [
        f"<details><summary>{_ICON[cell.status]} <code>{cell.cell_id}</code>: {_cell(cell.message)}"
        "</summary>",
        "",
        "| status | metric | observed | expected | bounds | adjusted p | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_metric_row(m) for m in cell.metrics]
    return [*lines, "", "</details>", ""]


def render_markdown(report: RunReport) -> str:
    """The report as GitHub-flavoured Markdown, ending with a newline."""
    lines = [
        f"## {_ICON.get(report.status, '')} fleet: tier `{report.tier}`: {report.status}",
        "",
        summary_line(report),
        "",
    ]
    if report.rule or report.error_control:
        alpha = "-" if report.alpha is None else f"{report.alpha:g}"
        control = report.error_control or "-"
        lines += [
            f"Judged with rule `{report.rule or 'auto'}`, error control `{control}` "
            f"at alpha {alpha} across all cells x metrics.",
            "",
        ]
    lines += ["| status | cell | hardware | runs | message |", "|---|---|---|---|---|"]
    lines += [
        f"| {_ICON[c.status]} {c.status} | `{c.cell_id}` | {c.hardware} | {c.runs} | {_cell(c.message)} |"
        for c in report.cells
    ]
    lines.append("")
    for cell in report.cells:
        if cell.status != "PASS":
            lines += _details(cell)
    lines += differential.markdown_lines(report)
    return "\n".join(lines).rstrip("\n") + "\n"
