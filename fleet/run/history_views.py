"""The history's answers for the verbs over many runs: `fleet history` (record and query), `fleet trends`
(the series change points are looked for in) and `fleet report --html` (the static site).

The CLI renders what these return; the database (fleet.history) is opened and closed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fleet.baselines.store import find_baseline
from fleet.errors import ConfigError
from fleet.history.store import HistoryStore, RunRow, load_run_dir
from fleet.judge.trends import SeriesPoint, trends
from fleet.plan.cost import account
from fleet.report.html import Band, baseline_band, render_index, render_run_page, render_trends_page
from fleet.run.common import ensure_writable_dir, existing_dir, stderr
from fleet.run.deliver import catalog_prices


@dataclass(frozen=True)
class SeriesFilter:
    """Which measurements: by cell, metric, pool, tier, time window or vLLM commit (None: any)."""

    cell_id: str | None = None
    metric: str | None = None
    hardware: str | None = None
    tier: str | None = None
    since: str | None = None
    until: str | None = None
    commit: str | None = None

    @property
    def narrowed(self) -> bool:
        """Whether it asks for measurements rather than the list of runs."""
        return any(v is not None for v in (self.cell_id, self.metric, self.hardware, self.commit, self.until))


@dataclass(frozen=True)
class HistoryAnswer:
    """What `fleet history` found: bisections, runs or measurements, as `kind` says."""

    kind: Literal["bisections", "runs", "series"]
    bisections: Sequence[dict[str, Any]] = ()
    runs: Sequence[RunRow] = ()
    points: Sequence[SeriesPoint] = ()


def query_history(db: str, *, imports: Sequence[Path], jobs_dir: Path, price_items: Sequence[str],
                  filters: SeriesFilter, list_runs: bool, list_bisections: bool) -> HistoryAnswer:
    """Record `imports` (run directories) first, then answer the query."""
    with HistoryStore.open(db, create=bool(imports)) as store:
        prices = catalog_prices(jobs_dir, price_items) if imports else {}
        for run_dir in imports:
            existing_dir(run_dir, option="--import", what="run")
            store.record_run(load_run_dir(run_dir, prices=prices))
            stderr.print(f"recorded {run_dir}")
        if list_bisections:
            return HistoryAnswer("bisections", bisections=store.bisections(
                [filters.cell_id] if filters.cell_id else None))
        if list_runs or not filters.narrowed:
            return HistoryAnswer("runs", runs=store.runs(since=filters.since, tier=filters.tier))
        return HistoryAnswer("series", points=_series(store, filters))


def trend_series(db: str, filters: SeriesFilter) -> list[SeriesPoint]:
    """The measurements change points are looked for in; the database must exist."""
    with HistoryStore.open(db, create=False) as store:
        return _series(store, filters)


def _series(store: HistoryStore, filters: SeriesFilter) -> list[SeriesPoint]:
    return store.series(cell_id=filters.cell_id, metric=filters.metric, hardware=filters.hardware,
                        tier=filters.tier, since=filters.since, until=filters.until, commit=filters.commit)


def write_site(html_dir: Path, run_dirs: Sequence[Path], *, db: str, run_ids: Sequence[str],
               since: str | None, baselines_dir: Path, jobs_dir: Path, price_items: Sequence[str]) -> int:
    """index.html, trends.html and a page per run into `html_dir`; returns the run pages written."""
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
    return len(written)


def _bands(points: Sequence[SeriesPoint], cells: dict[str, Any], root: Path) -> dict[tuple[str, str], Band]:
    bands: dict[tuple[str, str], Band] = {}
    for cell_id, cell in cells.items():
        baseline = find_baseline(root, cell)[0]
        for metric in {p.metric for p in points if p.cell_id == cell_id}:
            band = baseline_band(baseline, metric)
            if band is not None:
                bands[(cell_id, metric)] = band
    return bands
