"""Renderers of a RunReport: one module per output format, each a pure function to a string."""

from fleet.report.json_report import render_json
from fleet.report.text import render_text

__all__ = ["render_json", "render_text"]
