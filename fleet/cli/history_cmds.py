"""The verbs over many runs: `history` (record and query), `trends` (change points), `report --html`
(static pages with charts) and `select` (the cells a change touches).

The database is `--db` (default runs/history.sqlite, or FLEET_HISTORY_DB): a SQLite file, or a
SQLAlchemy URL to a team's shared server database. `fleet submit` records every run into it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from fleet.backends.base import AttemptOutcome
from fleet.baselines.store import find_baseline
from fleet.cli._common import Moment, check_window, counted, ensure_writable_dir, existing_dir, stderr
from fleet.errors import ConfigError, FleetError
from fleet.history.store import HistoryStore, load_run_dir, save_jobs
from fleet.judge.change_place import PLACE_CREDIBILITY
from fleet.judge.trends import SeriesPoint, Settings, Trend, trends
from fleet.judge.verdicts import bisect_command
from fleet.model import RunReport
from fleet.notify.github import GitHubTarget, open_or_update, target_from
from fleet.notify.slack import send, should_alert, slack_payload
from fleet.plan.catalog import list_tiers, load_catalog, load_tier
from fleet.plan.cost import JobSpan, account, cost_document, parse_price_overrides, prices_for
from fleet.plan.matrix import expand
from fleet.plan.select import parse_changed_files, select
from fleet.report import render
from fleet.report.html import Band, baseline_band, render_index, render_run_page, render_trends_page

DEFAULT_DB = "runs/history.sqlite"

db_option = click.option("--db", default=DEFAULT_DB, show_default=True, envvar="FLEET_HISTORY_DB",
                         help="History database: a SQLite file, or a SQLAlchemy URL "
                              "(postgresql+psycopg://host/fleet) shared by a team.")
jobs_option = click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"),
                           show_default=True, help="Directory with hardware.yaml, variants.yaml and tiers.")
price_option = click.option("--price", "price_items", multiple=True, metavar="POOL=USD",
                            help="Price per GPU-hour of a pool, over jobs/hardware.yaml (repeatable).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")


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


def job_span(outcome: AttemptOutcome, purpose: str = "run") -> JobSpan:
    """The accounting view of one attempt: its pool, GPUs requested and wall span ("bisect" for a
    bisection's runs, so a cell's regular cost and what hunting its culprit cost stay apart)."""
    cell = outcome.attempt.cell
    return JobSpan(cell.id, cell.hardware.name, cell.hardware.gpu_count, outcome.started_at,
                   outcome.finished_at, outcome.attempt.number, purpose)


def catalog_prices(jobs_dir: Path, price_items: Sequence[str]) -> dict[str, float]:
    """jobs/hardware.yaml's price per GPU-hour of each pool, with `--price POOL=USD` over it."""
    overrides = parse_price_overrides(price_items)
    if not jobs_dir.is_dir():
        return overrides
    return prices_for(load_catalog(jobs_dir).hardware.values(), overrides)


def record_and_alert(run_dir: Path, report: RunReport, spans: Sequence[JobSpan], *,
                     prices: Mapping[str, float], db: str | None, webhook: str | None,
                     link: str | None, github: GitHubTarget | None = None) -> None:
    """After `fleet submit` wrote its reports: keep the Jobs' spans and the cost beside them, record
    the run in the history, and alert on FAIL. Neither the history nor the webhook may hide the
    verdict: their failures are printed, and the run's exit code stays the judge's."""
    save_jobs(run_dir, spans)
    (run_dir / "cost.json").write_text(json.dumps(cost_document(account(spans, prices)), indent=2) + "\n")
    if db:
        try:
            with HistoryStore.open(db) as store:
                store.record_run(load_run_dir(run_dir, prices=prices, link=link))
        except FleetError as err:
            stderr.print(f"run not recorded in the history: {err.line()}")
    notify(report, webhook=webhook, link=link, github=github)


def notify(report: RunReport, *, webhook: str | None, link: str | None, github: GitHubTarget | None) -> None:
    """On FAIL: the chat webhook and the tier's GitHub issue. A failed delivery is printed, never raised:
    the run's exit code stays the judge's."""
    if not should_alert(report):
        return
    if webhook:
        try:
            send(webhook, slack_payload(report, link))
        except FleetError as err:
            stderr.print(f"alert not sent: {err.line()}")
    if github is not None:
        try:
            done = open_or_update(github, report, render(report, "markdown"), link)
            stderr.print(f"GitHub issue #{done.number} {done.action}: {done.url}")
        except FleetError as err:
            stderr.print(f"GitHub issue not updated: {err.line()}")


def notify_options(function: Any) -> Any:
    """--alert-webhook, --report-url and --github-issue-repo, shared by submit and merge."""
    for option in reversed([
        click.option("--alert-webhook", default=None, envvar="FLEET_ALERT_WEBHOOK",
                     help="Slack-compatible incoming webhook, posted to when a cell FAILs."),
        click.option("--report-url", default=None, envvar="FLEET_REPORT_URL",
                     help="Where this run's HTML page is published, {run_id} filled in; alerts link to it."),
        click.option("--github-issue-repo", default=None, envvar="FLEET_GITHUB_REPO", metavar="OWNER/NAME",
                     help="On FAIL, open (or comment on) the tier's issue in this repository; the token "
                          "comes from FLEET_GITHUB_TOKEN or GITHUB_TOKEN, never from a flag."),
    ]):
        function = option(function)
    return function


def github_target(repo: str | None) -> GitHubTarget | None:
    return target_from(repo, os.environ)


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
    with HistoryStore.open(db, create=bool(imports)) as store:
        prices = catalog_prices(jobs_dir, price_items) if imports else {}
        for run_dir in imports:
            existing_dir(run_dir, option="--import", what="run")
            store.record_run(load_run_dir(run_dir, prices=prices))
            stderr.print(f"recorded {run_dir}")
        if list_bisections:
            found = store.bisections([cell_id] if cell_id else None)
            if as_json:
                click.echo(json.dumps(found, indent=2))
                return
            for b in found:
                answer = b["last_commit"] or "-"
                click.echo(f"{b['bisection_id']}  {b['cell_id']}  {b['metric']}  {b['status']}"
                           f"{' verified' if b['verified'] else ''}  {str(answer)[:12]}  "
                           f"{b['gpu_hours'] or 0:.3f} GPU-h ${b['cost_usd'] or 0:,.2f}")
            click.echo(f"{len(found)} bisections")
            return
        filtered = any(v is not None for v in (cell_id, metric, hardware, commit, until))
        if list_runs or not filtered:
            rows = store.runs(since=since, tier=tier)
            if as_json:
                click.echo(json.dumps([row.__dict__ for row in rows], indent=2))
                return
            for row in rows:
                cost = f"{row.gpu_hours or 0:.3f} GPU-h ${row.cost_usd or 0:,.2f}"
                click.echo(f"{row.run_id}  {row.tier}  {row.status}  {row.started_at}  {cost}")
            click.echo(counted(len(rows), "run"))
            return
        points = store.series(cell_id=cell_id, metric=metric, hardware=hardware, tier=tier, since=since,
                              until=until, commit=commit)
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
    with HistoryStore.open(db, create=False) as store:
        points = store.series(cell_id=cell_id, metric=metric, hardware=hardware, tier=tier, since=since,
                              until=until, commit=commit)
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
            command = bisect_command(t.surely_before.commit, t.surely_after.commit, t.cell_id)
            click.echo(f"  to find the commit: {command} --metric {t.metric}")
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
    ensure_writable_dir(html_dir, option="--html")
    with HistoryStore.open(db, create=bool(run_dirs)) as store:
        prices = catalog_prices(jobs_dir, price_items) if run_dirs else {}
        for run_dir in run_dirs:
            existing_dir(run_dir, option="RUN_DIR", what="run")
            store.record_run(load_run_dir(run_dir, prices=prices))
        runs = store.runs()
        if not runs:
            raise ConfigError("the history has no run yet", where=db,
                              fix="pass run directories (fleet report --html DIR runs/<run-id>) or run "
                                  "`fleet history --import runs/<run-id>`")
        chosen = [r for r in runs if r.run_id in run_ids] if run_ids else runs[-50:]
        unknown = sorted(set(run_ids) - {r.run_id for r in runs})
        if unknown:  # before anything is written
            raise ConfigError(f"no run {', '.join(unknown)} in the history", where=f"--run / {db}",
                              fix="list the recorded runs with `fleet history --runs`")
        written: set[str] = set()
        all_bisections = store.bisections()
        for row in chosen:
            run_report = store.report(row.run_id)
            assert run_report is not None
            cells = store.cells(row.run_id)
            baselines = {cid: b for cid, cell in cells.items()
                         if (b := find_baseline(baselines_dir, cell)[0]) is not None}
            cost = account(store.jobs(row.run_id), store.prices(row.run_id))
            cell_ids = {c.cell_id for c in run_report.cells}
            page = render_run_page(run_report, store.results(row.run_id), baselines, cost,
                                   [b for b in all_bisections if b["cell_id"] in cell_ids])
            name = f"run-{row.run_id}.html"
            (html_dir / name).write_text(page)
            written.add(name)
        points = store.series(since=since)
        latest = store.cells()
    found = trends(points)
    (html_dir / "trends.html").write_text(render_trends_page(
        points, found, _bands(points, latest, baselines_dir),
        subtitle=f"{len(points)} measurements from {len(runs)} runs" + (f" since {since}" if since else ""),
        bisections=all_bisections))
    (html_dir / "index.html").write_text(render_index(runs, pages=written))
    click.echo(f"wrote {len(written)} run pages, trends.html and index.html to {html_dir}")


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


def _bands(points: Sequence[SeriesPoint], cells: dict[str, Any], root: Path) -> dict[tuple[str, str], Band]:
    bands: dict[tuple[str, str], Band] = {}
    for cell_id, cell in cells.items():
        baseline = find_baseline(root, cell)[0]
        for metric in {p.metric for p in points if p.cell_id == cell_id}:
            band = baseline_band(baseline, metric)
            if band is not None:
                bands[(cell_id, metric)] = band
    return bands


def _commit(point: SeriesPoint) -> str:
    return f"{point.commit[:12]} ({point.at})" if point.commit else f"run {point.run_id} ({point.at})"
