"""Static HTML pages: one per run (verdicts, per-position acceptance, cost, bisections), a trends page
(every metric's series over runs with its baseline band and change points) and an index.

Maintainers would rather look at a chart than a table. The pages are self-contained: inline CSS and
SVG, no script, no font or CDN, and a Content-Security-Policy that forbids loading anything, so a page
that works in CI works offline, and any attempt to fetch something shows up as a console error (the
browser test checks there is none). Every value is HTML-escaped. Pure: documents in, markup out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from fleet.judge.change_place import PLACE_CREDIBILITY
from fleet.judge.trends import SeriesPoint, Trend
from fleet.model import Baseline, CellVerdict, RunReport, RunResult
from fleet.plan.cost import CostLine, CostSummary
from fleet.report import differential
from fleet.report.html.svg import Band, Marker, position_bars, series_chart
from fleet.report.limits import limit_text
from fleet.report.text import troubleshooting_link

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_POSITION = "acceptance_rate_pos_"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;
color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0 12px;width:100%}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#666}
.s{font-weight:600;padding:1px 6px;border-radius:3px;color:#fff;white-space:nowrap}
.PASS{background:#2e7d32}.FAIL{background:#c62828}.INCONCLUSIVE{background:#ef6c00}
.ERROR{background:#6a1b9a}.NO_BASELINE,.SKIPPED{background:#757575}
.regression{color:#c62828;font-weight:600}.improvement{color:#2e7d32;font-weight:600}.host{color:#8d6e00}
svg{max-width:100%;height:auto;display:block;margin:4px 0 14px}nav a{margin-right:14px}
"""


def render_run_page(report: RunReport, results: Mapping[str, Sequence[RunResult]],
                    baselines: Mapping[str, Baseline], cost: CostSummary | None = None,
                    bisections: Sequence[Mapping[str, Any]] = ()) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in _count(c.status for c in report.cells).items())
    body = [f"<h1>Run {escape(report.run_id)} {_badge(report.status)}</h1>",
            f'<p class="muted">tier {escape(report.tier)} · backend {escape(report.backend)} · '
            f"{escape(report.started_at)} to {escape(report.finished_at)} · {escape(counts)}</p>",
            '<nav><a href="index.html">all runs</a><a href="trends.html">trends</a></nav>',
            "<h2>Verdicts</h2>", _verdict_table(report, cost), differential.html_section(report)]
    for verdict in report.cells:
        body.append(_cell_section(verdict, _latest_ok(results.get(verdict.cell_id, ())),
                                  baselines.get(verdict.cell_id)))
    if cost is not None:
        body += ["<h2>GPU time and cost</h2>", _cost_table(cost)]
    if bisections:
        body += ["<h2>Bisections</h2>", bisection_table(bisections)]
    return _page(f"fleet run {report.run_id}", "".join(body))


def render_trends_page(points: Sequence[SeriesPoint], found: Sequence[Trend],
                       bands: Mapping[tuple[str, str], Band], *, subtitle: str = "",
                       bisections: Sequence[Mapping[str, Any]] = ()) -> str:
    body = ["<h1>Trends and change points</h1>",
            f'<p class="muted">{escape(subtitle)}</p>' if subtitle else "",
            '<nav><a href="index.html">all runs</a></nav>', "<h2>Change points</h2>", trend_table(found)]
    if bisections:
        body += ["<h2>Bisections</h2>", bisection_table(bisections)]
    series: dict[tuple[str, str], list[SeriesPoint]] = {}
    for point in points:
        series.setdefault((point.cell_id, point.metric), []).append(point)
    changed = {(t.cell_id, t.metric) for t in found}
    body.append("<h2>Series</h2>")
    current_cell = None
    for key in sorted(series, key=lambda k: (k[0], k not in changed, k[1])):
        cell_id, metric = key
        if cell_id != current_cell:
            body.append(f"<h3>{escape(cell_id)}</h3>")
            current_cell = cell_id
        members = series[key]
        markers = [Marker(t.change.index, f"{t.change.relative_change:+.1%}")
                   for t in found if (t.cell_id, t.metric) == key]
        body.append(series_chart([p.value for p in members], [_point_label(p) for p in members],
                                 title=metric, band=bands.get(key), markers=markers))
    if not series:
        body.append('<p class="muted">No measurements recorded yet.</p>')
    return _page("fleet trends", "".join(body))


def render_index(runs: Sequence[Any], *, pages: set[str]) -> str:
    """Runs newest first; `runs` are history RunRows; a run links to its page when one was written."""
    rows = []
    for run in sorted(runs, key=lambda r: (r.started_at, r.run_id), reverse=True):
        name = f"run-{run.run_id}.html"
        title = f'<a href="{escape(name)}">{escape(run.run_id)}</a>' if name in pages else escape(run.run_id)
        rows.append(f"<tr><td>{title}</td><td>{escape(run.tier)}</td><td>{_badge(run.status)}</td>"
                    f"<td>{escape(run.started_at)}</td><td class=n>{_hours(run.gpu_hours)}</td>"
                    f"<td class=n>{_dollars(run.cost_usd)}</td></tr>")
    table = _table(["run", "tier", "status", "started", "GPU-h", "cost"], rows)
    return _page("fleet runs", '<h1>fleet runs</h1><nav><a href="trends.html">trends</a></nav>' + table)


def trend_table(found: Sequence[Trend]) -> str:
    if not found:
        return '<p class="muted">No change point in the selected history.</p>'
    rows = []
    for t in found:
        c = t.change
        rows.append(
            f"<tr><td>{escape(t.cell_id)}</td><td>{escape(t.metric)}</td>"
            f'<td class="{escape(t.kind)}">{escape(t.kind)}</td><td class=n>{c.relative_change:+.2%}</td>'
            f"<td class=n>{c.mean_before:.4g} → {c.mean_after:.4g}</td><td class=n>{c.confidence:.5f}</td>"
            f"<td>{escape(_commit(t.before.commit))} → {escape(_commit(t.after.commit))}</td>"
            f"<td>{escape(_commit(t.surely_before.commit))} .. {escape(_commit(t.surely_after.commit))}</td>"
            f"<td>{escape(t.before.at)} → {escape(t.after.at)}</td>"
            f"<td>{escape(t.before.run_id)} → {escape(t.after.run_id)}</td>"
            f"<td class=n>{c.points_before} | {c.points_after}</td></tr>")
    return _table(["cell", "metric", "kind", "size", "mean", "confidence", "vLLM commits",
                   f"to bisect ({PLACE_CREDIBILITY:.0%} sure)", "when", "runs", "points"], rows)


def bisection_table(bisections: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for b in bisections:
        culprit = b.get("first_commit") or ""
        if b.get("last_commit") and b.get("last_commit") != culprit:
            culprit = f"{culprit} .. {b['last_commit']}"
        rows.append(
            f"<tr><td>{escape(str(b['cell_id']))}</td><td>{escape(str(b['metric']))}</td>"
            f"<td>{escape(str(b['good_commit']))} .. {escape(str(b['bad_commit']))}</td>"
            f"<td>{escape(str(b['status']))}</td><td>{escape(culprit)}</td>"
            f"<td>{'yes' if b.get('verified') else 'no'}</td><td>{escape(str(b.get('reason', '')))}</td>"
            f"<td class=n>{_hours(b.get('gpu_hours'))}</td>"
            f"<td class=n>{_dollars(b.get('cost_usd'))}</td></tr>")
    return _table(["cell", "metric", "good .. bad", "status", "culprit", "verified", "reason", "GPU-h",
                   "cost"], rows)


# --- internals ----------------------------------------------------------------------------------


def _verdict_table(report: RunReport, cost: CostSummary | None) -> str:
    rows = []
    for cell in report.cells:
        line = cost.per_cell.get(cell.cell_id) if cost else None
        rows.append(f'<tr><td><a href="#{escape(cell.cell_id)}">{escape(cell.cell_id)}</a></td>'
                    f"<td>{escape(cell.hardware)}</td><td>{_badge(cell.status)}</td>"
                    f"<td class=n>{cell.attempts}</td>"
                    f"<td class=n>{_hours(line.gpu_hours if line else None)}</td>"
                    f"<td class=n>{_dollars(line.cost_usd if line else None)}</td>"
                    f"<td>{escape(cell.message)}</td></tr>")
    return _table(["cell", "hardware", "status", "attempts", "GPU-h", "cost", "message"], rows)


def _cell_section(verdict: CellVerdict, result: RunResult | None, baseline: Baseline | None) -> str:
    parts = [f'<h3 id="{escape(verdict.cell_id)}">{escape(verdict.cell_id)} {_badge(verdict.status)}</h3>']
    if verdict.error is not None:
        parts.append(f"<p>{escape(verdict.error.category)} error ({escape(verdict.error.reason)}): "
                     f"{escape(verdict.error.message)}</p>"
                     f"<p>What to do: <code>{escape(troubleshooting_link(verdict.error.reason))}</code> in "
                     "fleet's repository</p>")
    rows = [f"<tr><td>{escape(m.metric)}</td><td>{_badge(m.status)}</td><td class=n>{_opt(m.observed)}</td>"
            f"<td class=n>{_opt(m.expected)}</td><td class=n>[{_opt(m.lo)}, {_opt(m.hi)}]</td>"
            f"<td>{escape(limit_text(m))}</td>"
            f"<td class=n>{_opt(m.p_value)}</td><td>{escape(m.rule)}</td><td>{escape(m.detail)}</td></tr>"
            for m in verdict.metrics]
    if rows:
        headers = ["metric", "status", "observed", "expected", "bounds", "bounds are", "p", "rule", "detail"]
        parts.append(_table(headers, rows))
    if result is not None:
        positions = sorted((int(k.removeprefix(_POSITION)), v) for k, v in result.metrics.items()
                           if k.startswith(_POSITION) and k.removeprefix(_POSITION).isdigit())
        if positions:
            bands = [baseline_band(baseline, f"{_POSITION}{index}") for index, _ in positions]
            parts.append(position_bars([v for _, v in positions], bands,
                                       title="acceptance rate per draft position (bars: this run; "
                                             "green: the baseline's RFC range, expected ± tolerance_pct)"))
    return "".join(parts)


def baseline_band(baseline: Baseline | None, metric: str) -> Band | None:
    """The baseline's RFC range (expected ± tolerance_pct) for one metric, or None when it names none."""
    entry = baseline.baselines.get(metric) if baseline else None
    return Band(entry.expected, entry.lo, entry.hi) if entry else None


def _cost_table(cost: CostSummary) -> str:
    rows = [_cost_row("total", cost.total)]
    rows += [_cost_row(f"pool {name} ({_price(cost.prices.get(name))})", line)
             for name, line in cost.per_hardware.items()]
    return _table(["scope", "jobs", "wall h", "GPU-h", "cost", "unpriced GPU-h"], rows)


def _cost_row(scope: str, line: CostLine) -> str:
    return (f"<tr><td>{escape(scope)}</td><td class=n>{line.jobs}</td><td class=n>{line.wall_hours:.3f}</td>"
            f"<td class=n>{line.gpu_hours:.3f}</td><td class=n>{_dollars(line.cost_usd)}</td>"
            f"<td class=n>{line.unpriced_gpu_hours:.3f}</td></tr>")


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n")


def _table(headers: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _badge(status: str) -> str:
    return f'<span class="s {escape(status)}">{escape(status.replace("_", " "))}</span>'


def _latest_ok(results: Sequence[RunResult]) -> RunResult | None:
    return next((r for r in reversed(results) if r.status == "ok"), None)


def _count(statuses: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def _point_label(point: SeriesPoint) -> str:
    return f"{point.at[:16]} {_commit(point.commit)}".strip()


def _commit(commit: str | None) -> str:
    return commit[:12] if commit else "(no commit)"


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _hours(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _dollars(value: float | None) -> str:
    return "" if value is None else f"${value:,.2f}"


def _price(value: float | None) -> str:
    return "no price" if value is None else f"${value:.2f}/GPU-h"
