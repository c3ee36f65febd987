"""The machine-readable report: the RunReport document itself, for CI systems and dashboards."""

from __future__ import annotations

from fleet.model import RunReport


def render_json(report: RunReport) -> str:
    """The RunReport as JSON (indent 2, UTF-8 characters kept), ending with a newline."""
    return report.model_dump_json(indent=2) + "\n"
