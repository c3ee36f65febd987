"""The differential verdicts (fleet.judge.differential) in every report format, kept in one module so
text, Markdown, JUnit and HTML word a pair the same way: the axis, its two values, the figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from html import escape

from fleet.judge.differential import p_text
from fleet.model import DifferentialMetric, DifferentialVerdict, RunReport

_WORDS = {"SAME": "same", "DIVERGES": "diverging", "INCONCLUSIVE": "inconclusive"}
_ICON = {"SAME": "✅", "DIVERGES": "❌", "INCONCLUSIVE": "🔁"}
#: Which run status class the HTML badge of a pair borrows.
_BADGE = {"SAME": "PASS", "DIVERGES": "FAIL", "INCONCLUSIVE": "INCONCLUSIVE"}


def summary(report: RunReport) -> str:
    """`9 differential pairs: 8 same, 1 diverging`, or '' for a run without pairs."""
    pairs = report.differentials
    if not pairs:
        return ""
    counts: Counter[str] = Counter(pair.status for pair in pairs)
    parts = [f"{counts[status]} {word}" for status, word in _WORDS.items()
             if counts[status] or status == "SAME"]
    return f"{len(pairs)} differential pair{'s' * (len(pairs) != 1)}: {', '.join(parts)}"


def _subject(pair: DifferentialVerdict) -> str:
    others = ", ".join(f"{axis}={value}" for axis, value in sorted(pair.shared_execution.items()))
    return (f"{pair.variant} on {pair.model} ({pair.hardware}), {pair.axis}: {pair.value_a} vs {pair.value_b}"
            + (f" (with {others})" if others else ""))


def _metric_line(pair: DifferentialVerdict, m: DifferentialMetric) -> str:
    adjusted = "" if m.adjusted_p is None else f", adjusted p {p_text(m.adjusted_p)}"
    return (f"  {m.metric}: {m.value_a:.4g} with {pair.axis}={pair.value_a} vs {m.value_b:.4g} with "
            f"{pair.axis}={pair.value_b}: {m.status}{adjusted} ({m.detail})")


def text_lines(report: RunReport) -> list[str]:
    """The text report's section: one block per pair, the diverging ones with every metric line."""
    if not report.differentials:
        return []
    lines = ["Differential (cells that differ in one execution axis, compared with each other):"]
    for pair in report.differentials:
        lines += ["", f"Pair: {_subject(pair)}", f"Status: {pair.status}", f"Cells: {pair.cell_a} vs "
                  f"{pair.cell_b} ({pair.runs_a} and {pair.runs_b} run(s))", f"Verdict: {pair.message}"]
        shown = pair.metrics if pair.status != "SAME" else [m for m in pair.metrics
                                                           if m.metric in ("acceptance_length", "match_rate")]
        lines += [_metric_line(pair, m) for m in shown]
        if pair.status == "DIVERGES":
            lines += ["Action Required:",
                      f"  1. Reproduce with the {pair.axis} values alone: greedy acceptance must not "
                      "depend on how the engine executes",
                      "  2. Bisect the vLLM commits on the diverging cell if the other side kept the "
                      "recorded acceptance"]
    return lines


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_lines(report: RunReport) -> list[str]:
    """The Markdown section: a table of pairs, then a collapsible block per pair that is not SAME."""
    if not report.differentials:
        return []
    lines = ["### Differential pairs", "", summary(report), "",
             "| status | variant | hardware | axis | values | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {_ICON[p.status]} {p.status} | `{p.variant}` | {p.hardware} | `{p.axis}` | "
              f"{p.value_a} vs {p.value_b} | {_md(p.message)} |" for p in report.differentials]
    lines.append("")
    for pair in report.differentials:
        if pair.status == "SAME":
            continue
        lines += [f"<details><summary>{_ICON[pair.status]} <code>{_md(_subject(pair))}</code></summary>", "",
                  f"| status | metric | {pair.axis}={pair.value_a} | {pair.axis}={pair.value_b} | "
                  "adjusted p | detail |", "|---|---|---|---|---|---|"]
        lines += [f"| {m.status} | `{m.metric}` | {m.value_a:.4g} | {m.value_b:.4g} | "
                  f"{p_text(m.adjusted_p)} | {_md(m.detail)} |"
                  for m in pair.metrics]
        lines += ["", "</details>", ""]
    return lines


def junit_testcases(suite: ET.Element, report: RunReport) -> None:
    """One <testcase> per pair (classname fleet.<tier>.<hardware>.differential): DIVERGES a failure of
    type divergence (exit 1), INCONCLUSIVE one of type inconclusive (exit 4), SAME a pass."""
    for pair in report.differentials:
        case = ET.SubElement(suite, "testcase", name=pair.name,
                             classname=f"fleet.{report.tier}.{pair.hardware}.differential")
        if pair.status != "SAME":
            kind = "divergence" if pair.status == "DIVERGES" else "inconclusive"
            node = ET.SubElement(case, "failure", type=kind, message=pair.message)
            node.text = "\n".join(_metric_line(pair, m).strip() for m in pair.metrics
                                  if m.status != "SAME") + "\n"
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join([pair.message, *(_metric_line(pair, m) for m in pair.metrics)]) + "\n"


def junit_counts(report: RunReport) -> tuple[int, int]:
    """(test cases, failures) the pairs add to the JUnit totals."""
    return len(report.differentials), sum(1 for p in report.differentials if p.status != "SAME")


def html_section(report: RunReport) -> str:
    """The run page's section: a table of pairs with their verdicts and metric figures."""
    if not report.differentials:
        return ""
    rows = []
    for pair in report.differentials:
        figures = "<br>".join(
            f"{escape(m.metric)}: {m.value_a:.4g} vs {m.value_b:.4g} "
            f"({escape(m.status)}{'' if m.adjusted_p is None else f', adjusted p {p_text(m.adjusted_p)}'})"
            for m in pair.metrics if m.metric in ("acceptance_length", "match_rate") or m.status != "SAME")
        rows.append(f'<tr><td><span class="s {_BADGE[pair.status]}">{escape(pair.status)}</span></td>'
                    f"<td>{escape(pair.variant)}</td><td>{escape(pair.hardware)}</td>"
                    f"<td>{escape(pair.axis)}</td><td>{escape(pair.value_a)} vs {escape(pair.value_b)}</td>"
                    f"<td>{escape(pair.message)}</td>"
                    f"<td>{figures}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("status", "variant", "hardware", "axis", "values", "verdict",
                                             "figures"))
    return (f"<h2>Differential pairs</h2><p class=\"muted\">{escape(summary(report))}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
