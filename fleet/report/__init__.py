"""Renderers of a RunReport: one module per output format, each a pure function to a string."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from fleet.model import Baseline, RunReport, RunResult
from fleet.report.json_report import render_json
from fleet.report.junit import render_junit
from fleet.report.markdown import render_markdown
from fleet.report.text import render_text

Format = Literal["text", "json", "junit", "markdown"]
FORMATS: tuple[Format, ...] = ("text", "json", "junit", "markdown")
#: File name each format is written to in a report directory.
FILE_NAMES: dict[Format, str] = {"text": "report.txt", "json": "report.json", "junit": "junit.xml",
                                 "markdown": "report.md"}


def render(report: RunReport, fmt: Format, results: Mapping[str, RunResult] | None = None,
           baselines: Mapping[str, Baseline] | None = None) -> str:
    """One report in one format; `results` and `baselines` (by cell id) feed the text form's details."""
    if fmt == "text":
        return render_text(report, results or {}, baselines or {})
    if fmt == "json":
        return render_json(report)
    if fmt == "junit":
        return render_junit(report)
    return render_markdown(report)


__all__ = ["FILE_NAMES", "FORMATS", "Format", "render", "render_json", "render_junit", "render_markdown",
           "render_text"]
