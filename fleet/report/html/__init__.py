"""Static HTML reports: run pages, a trends page and an index, with inline SVG charts (see pages.py)."""

from fleet.report.html.pages import (
    baseline_band,
    bisection_table,
    render_index,
    render_run_page,
    render_trends_page,
    trend_table,
)
from fleet.report.html.svg import Band, Marker, position_bars, series_chart

__all__ = [
    "Band",
    "Marker",
    "baseline_band",
    "bisection_table",
    "position_bars",
    "render_index",
    "render_run_page",
    "render_trends_page",
    "series_chart",
    "trend_table",
]
