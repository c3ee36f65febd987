"""The verbs over many runs: `history` (record and query), `trends` (change points), `report --html`
(static pages with charts) and `select` (the cells a change touches).

The database is `--db` (default runs/history.sqlite, or FLEET_HISTORY_DB): a SQLite file, or a
SQLAlchemy URL to a team's shared server database. `fleet submit` records every run into it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from fleet.cli._common import Moment, check_window, counted, existing_dir, stderr
from fleet.cli._options import db_option, jobs_option, json_option, price_option
from fleet.judge.change_place import PLACE_CREDIBILITY
from fleet.judge.trends import SeriesPoint, Settings, Trend, trends
from fleet.judge.verdicts import bisect_command
from fleet.plan.catalog import list_tiers, load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.select import parse_changed_files, select
from fleet.run.history_views import SeriesFilter, query_history, trend_series, write_site


def series_filters(function: Any) -> Any:
    for option in reversed([
        click.option("--cell", "cell_id", default=None, help="Only this cell id."),
        click.option("--metric", default=None, help="Only this metric (e.g. acceptance_length)."),
        click.option("--hardware", default=None, help="Only cells on this hardware pool."),
        click.option("--tier", default=None, help="Only runs of this tier."),
        click.option("--since", type=Moment(), default=None,
                     help="From this date or time (ISO 8601, e.g. 2026-11-01; UTC unless it says)."),
        click.option("--until", type=Moment(end=True), default=None,
                     help="Up to this date (that day included) or time (ISO 8601)."),
        click.option("--commit", default=None, help="Only measurements of this vLLM commit (a prefix)."),
    ]):
        function = option(function)
    return function


@click.command()
@db_option
@click.option("--import", "imports", multiple=True, type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Record a run directory (runs/<run-id>) first; recording twice replaces it.")
@series_filters
@click.option("--runs", "list_runs", is_flag=True, help="List runs with their status and cost.")
@click.option("--bisections", "list_bisections", is_flag=True,
              help="List bisections with their answer and GPU cost (of --cell, if given).")
@jobs_option
@price_option
@json_option
def history(db: str, imports: tuple[Path, ...], cell_id: str | None, metric: str | None,
            hardware: str | None, tier: str | None, since: str | None, until: str | None,
            commit: str | None, list_runs: bool, list_bisections: bool, jobs_dir: Path,
            price_items: tuple[str, ...], as_json: bool) -> None:
    """Record runs, and query measurements by cell, metric, pool, date or vLLM commit."""
    check_window(since, until)
    filters = SeriesFilter(cell_id, metric, hardware, tier, since, until, commit)
    answer = query_history(db, imports=imports, jobs_dir=jobs_dir, price_items=price_items, filters=filters,
                           list_runs=list_runs, list_bisections=list_bisections)
    if answer.kind == "bisections":
        if as_json:
            click.echo(json.dumps(list(answer.bisections), indent=2))
            return
        for b in answer.bisections:
            found = b["last_commit"] or "-"
            click.echo(f"{b['bisection_id']}  {b['cell_id']}  {b['metric']}  {b['status']}"
                       f"{' verified' if b['verified'] else ''}  {str(found)[:12]}  "
                       f"{b['gpu_hours'] or 0:.3f} GPU-h ${b['cost_usd'] or 0:,.2f}")
        click.echo(f"{len(answer.bisections)} bisections")
        return
    if answer.kind == "runs":
        if as_json:
            click.echo(json.dumps([row.__dict__ for row in answer.runs], indent=2))
            return
        for row in answer.runs:
            cost = f"{row.gpu_hours or 0:.3f} GPU-h ${row.cost_usd or 0:,.2f}"
            click.echo(f"{row.run_id}  {row.tier}  {row.status}  {row.started_at}  {cost}")
        click.echo(counted(len(answer.runs), "run"))
        return
    points = answer.points
    if as_json:
        click.echo(json.dumps([p.__dict__ for p in points], indent=2))
        return
    for p in points:
        click.echo(f"{p.at}  {p.commit or '-':12.12}  {p.cell_id}  {p.metric}  {p.value:.6g}  ({p.run_id})")
    click.echo(f"{len(points)} measurements")


@click.command(name="trends")
@db_option
@series_filters
@click.option("--min-segment", type=click.IntRange(min=2), default=Settings.min_segment, show_default=True,
              help="Runs needed on each side of a change (a shorter spike is never one).")
@click.option("--max-pvalue", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=Settings.max_pvalue, show_default=True, help="t-test threshold of a change point.")
@click.option("--min-change-pct", type=click.FloatRange(min=0), default=Settings.min_relative_change * 100,
              show_default=True, help="Smaller mean shifts are not reported.")
@json_option
def trends_cmd(db: str, cell_id: str | None, metric: str | None, hardware: str | None, tier: str | None,
               since: str | None, until: str | None, commit: str | None, min_segment: int,
               max_pvalue: float, min_change_pct: float, as_json: bool) -> None:
    """List change points in every cell's metric history: size, confidence, the commits around them.

    Kind is regression, improvement, change, or host: latency that got worse where the same cell's
    non-speculative reference did too (a slower node or lease, not speculative decoding).
    """
    check_window(since, until)
    settings = Settings(min_segment, max_pvalue, min_change_pct / 100)
    points = trend_series(db, SeriesFilter(cell_id, metric, hardware, tier, since, until, commit))
    found = trends(points, settings)
    if as_json:
        click.echo(json.dumps([trend_document(t) for t in found], indent=2))
        return
    for t in found:
        c = t.change
        click.echo(f"{t.kind:11} {t.cell_id}  {t.metric}  {c.relative_change:+.2%} "
                   f"({c.mean_before:.4g} -> {c.mean_after:.4g}), confidence {c.confidence:.5f}, "
                   f"between {_commit(t.before)} and {_commit(t.after)} "
                   f"({c.points_before} runs before, {c.points_after} after); "
                   f"{PLACE_CREDIBILITY:.0%} sure it lies after {_commit(t.surely_before)} and by "
                   f"{_commit(t.surely_after)}: bisect between those")
        # Runs of one commit on both sides: the change is not the code's, there is nothing to bisect.
        if t.kind == "regression" and t.surely_before.commit and t.surely_after.commit and \
                t.surely_before.commit != t.surely_after.commit:
            command = bisect_command(t.surely_before.commit, t.surely_after.commit, t.cell_id, t.metric)
            click.echo(f"  to find the commit: {command}")
    series_count = len({(p.cell_id, p.metric) for p in points})
    click.echo(f"{counted(len(found), 'change point')} in {series_count} series "
               f"({counted(len(points), 'measurement')})")


def trend_document(t: Trend) -> dict[str, Any]:
    c = t.change
    return {"cell_id": t.cell_id, "metric": t.metric, "hardware": t.hardware, "kind": t.kind,
            "relative_change": c.relative_change, "mean_before": c.mean_before, "mean_after": c.mean_after,
            "p_value": c.p_value, "confidence": c.confidence, "points_before": c.points_before,
            "points_after": c.points_after, "before": t.before.__dict__, "after": t.after.__dict__,
            "credibility": PLACE_CREDIBILITY, "surely_before": t.surely_before.__dict__,
            "surely_after": t.surely_after.__dict__}


@click.command()
@click.option("--html", "html_dir", type=click.Path(path_type=Path), required=True,
              help="Write index.html, trends.html and run-<id>.html here.")
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@db_option
@click.option("--run", "run_ids", multiple=True, help="Only these runs' pages (default: the last 50).")
@click.option("--since", type=Moment(), default=None, help="Trends from this date or time (ISO 8601).")
@click.option("--baselines", "baselines_dir", type=click.Path(path_type=Path), default=Path("baselines"),
              show_default=True, help="Baseline files, for the bands drawn on the charts.")
@jobs_option
@price_option
def report(html_dir: Path, run_dirs: tuple[Path, ...], db: str, run_ids: tuple[str, ...],
           since: str | None, baselines_dir: Path, jobs_dir: Path, price_items: tuple[str, ...]) -> None:
    """Static HTML pages with charts: each run, the trends, and an index. Open offline."""
    written = write_site(html_dir, run_dirs, db=db, run_ids=run_ids, since=since, baselines_dir=baselines_dir,
                         jobs_dir=jobs_dir, price_items=price_items)
    click.echo(f"wrote {written} run pages, trends.html and index.html to {html_dir}")


@click.command(name="select")
@click.option("--changed-files", "changed_source", required=True, type=click.File("r"), metavar="FILE|-",
              help="Changed vLLM paths, one a line (`git diff --name-only main...`); - reads stdin.")
@click.option("--tier", "tiers", multiple=True, help="Only cells of these tiers (default: every tier).")
@jobs_option
@json_option
def select_cmd(changed_source: Any, tiers: tuple[str, ...], jobs_dir: Path, as_json: bool) -> None:
    """Print the cells a change touches, from each variant's source_file_dependencies."""
    existing_dir(jobs_dir, option="--jobs", what="jobs")
    changed = parse_changed_files(changed_source.read())
    catalog = load_catalog(jobs_dir)
    cells = []
    for name in tiers or list_tiers(jobs_dir):
        cells += expand(load_tier(jobs_dir, name), catalog, tier_path=str(jobs_dir / f"{name}.yaml"))
    chosen = select(cells, changed)
    if as_json:
        click.echo(json.dumps([{"cell": s.cell.id, "tier": s.cell.tier,
                                "because": [{"path": p, "pattern": q} for p, q in s.because]}
                               for s in chosen], indent=2))
    else:
        for selection in chosen:
            path, pattern = selection.because[0]
            more = f" (+{len(selection.because) - 1} more)" if len(selection.because) > 1 else ""
            click.echo(f"{selection.cell.tier}\t{selection.cell.id}\t{path} matches {pattern}{more}")
    stderr.print(f"{len(chosen)} of {counted(len(cells), 'cell')} touched by "
                 f"{counted(len(changed), 'changed file')}")
    sys.stdout.flush()


def _commit(point: SeriesPoint) -> str:
    return f"{point.commit[:12]} ({point.at})" if point.commit else f"run {point.run_id} ({point.at})"
