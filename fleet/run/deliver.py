"""Where a finished run's verdict goes: the report files in every format, the Jobs' spans and the cost,
the history, and on FAIL the chat webhook and the tier's GitHub issue.

Neither the history nor a notification may hide the verdict: their failures are printed, and the run's
exit code stays the judge's. The end of `fleet submit`, `fleet resume` and `fleet merge` alike.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.backends.base import AttemptOutcome
from fleet.errors import FleetError
from fleet.history.store import HistoryStore, load_run_dir, save_jobs
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.model import Baseline, RunReport, RunResult
from fleet.notify.github import GitHubTarget, open_or_update, target_from
from fleet.notify.slack import send, should_alert, slack_payload
from fleet.plan.catalog import load_catalog
from fleet.plan.cost import (
    CostSummary,
    JobSpan,
    account,
    cost_document,
    parse_price_overrides,
    prices_for,
    render_cost_text,
)
from fleet.report import FILE_NAMES, FORMATS, Format, render
from fleet.run.common import ensure_writable_dir, stderr
from fleet.run.controller import CellOutcome, judge_run
from fleet.run.plan import BaselineSet
from fleet.run.state import RunState


@dataclass(frozen=True)
class Delivery:
    """Where a finished run's verdict goes: stdout's format, report folders, the cost's prices, the
    history, the alerts."""

    fmt: Format
    report_dirs: list[Path]
    prices: Mapping[str, float]
    history_db: str | None
    webhook: str | None
    report_url: str | None
    github: GitHubTarget | None


@dataclass(frozen=True)
class Concluded:
    """A judged run: its report, the text stdout shows, and the exit code the verdict decides."""

    report: RunReport
    stdout: str

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


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


def github_target(repo: str | None) -> GitHubTarget | None:
    """The tier's issue tracker; a missing token is a config error before any work."""
    return target_from(repo, os.environ)


def write_reports(report: RunReport, results: Mapping[str, RunResult], baselines: Mapping[str, Baseline],
                  fmt: Format, report_dirs: Sequence[Path], cost: CostSummary | None = None) -> str:
    """Every format into each report folder; returns the report in `fmt`, for stdout."""

    def rendered(each: Format) -> str:
        text = render(report, each, results, baselines)
        if cost is not None and each in ("text", "markdown"):
            text += "\n" + render_cost_text(cost)
        return text

    for directory in report_dirs:
        ensure_writable_dir(directory, option="--report-dir")
        for each in FORMATS:
            (directory / FILE_NAMES[each]).write_text(rendered(each))
    return rendered(fmt)


def outcome_report(report: RunReport, outcomes: Sequence[CellOutcome], baselines: Mapping[str, Baseline],
                   fmt: Format, report_dirs: Sequence[Path], cost: CostSummary | None = None) -> str:
    """write_reports for a run's outcomes: each cell's chosen result beside its verdict."""
    results = {o.cell.id: o.result for o in outcomes if o.result is not None}
    return write_reports(report, results, baselines, fmt, report_dirs, cost)


def conclude(outcomes: list[CellOutcome], spans: list[JobSpan], state: RunState, *, run_dir: Path,
             started: str, baselines: BaselineSet, delivery: Delivery) -> Concluded:
    """Judge a run's outcomes as its run.json says (rule, error control, family, budget), cost it, report,
    record and alert: the end of fleet submit and fleet resume alike."""
    finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report, found = judge_run(outcomes, baselines=baselines, run_id=state.run_id,
                              tier=state.tier, backend=state.backend, started_at=started,
                              finished_at=finished, rule=state.rule, method=state.error_control,
                              family=state.family, max_runs=state.max_runs or DEFAULT_MAX_RUNS)
    cost = account(spans, delivery.prices)
    report = report.model_copy(update={"cost": cost_document(cost)})
    text = outcome_report(report, outcomes, found, delivery.fmt, delivery.report_dirs, cost)
    link = delivery.report_url.format(run_id=state.run_id) if delivery.report_url else None
    record_and_alert(run_dir, report, spans, prices=delivery.prices, db=delivery.history_db,
                     webhook=delivery.webhook, link=link, github=delivery.github)
    return Concluded(report, text)


def record_and_alert(run_dir: Path, report: RunReport, spans: Sequence[JobSpan], *,
                     prices: Mapping[str, float], db: str | None, webhook: str | None,
                     link: str | None, github: GitHubTarget | None = None) -> None:
    """After the reports are written: keep the Jobs' spans and the cost beside them, record the run in
    the history, and alert on FAIL."""
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
    """On FAIL: the chat webhook and the tier's GitHub issue. A failed delivery is printed, never raised."""
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
