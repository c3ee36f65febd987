"""Judging again what ran elsewhere: result files from anywhere (`fleet judge`) and the shards of a sharded
run (`fleet merge`), judged as one run would have judged them.

Each shard judged its own cells; error control, though, must span the whole run, or N shards would
allow N times the false alarms of one run. So the merge judges again: every cell's measured results
(the shards' cells/<id>/result.attempt-*.json) against the baselines, Holm (or BH) over the union,
exactly as one unsharded run with the same results. Cells with nothing to judge (errors, skips) keep
their shard's verdict; a shard that kept only its report.json is joined as it stands, and the merge
says so. The cost is the union of the shards' Jobs, priced like `fleet submit` prices them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError
from fleet.history.store import RunRecord, load_run_dir
from fleet.judge import ALPHA, Method, Rule
from fleet.judge.verdicts import with_differentials
from fleet.model import CellVerdict, DifferentialVerdict, RunReport
from fleet.model.documents import read_document
from fleet.plan.cost import account, cost_document
from fleet.plan.sharding import merge_reports, rerun_budget
from fleet.report import FILE_NAMES, Format
from fleet.run.common import stderr
from fleet.run.controller import CellOutcome, judge_run, outcomes_from_files
from fleet.run.deliver import (
    Concluded,
    catalog_prices,
    github_target,
    notify,
    outcome_report,
    write_reports,
)
from fleet.run.plan import BaselineSet, files_rerun_budget, plan_cells, read_result


def judge_files(results: Sequence[Path], baselines_dir: Path, *, rule: Rule, method: Method, fmt: Format,
                report_dirs: Sequence[Path], jobs_dir: Path, max_runs: int | None) -> Concluded:
    """RunResult files produced anywhere, judged against the baselines; several files of one cell are
    judged together as its candidate runs (reruns), and cells that differ in one execution axis against
    each other (the report's differentials). A folder stands for its result files (result_files)."""
    documents = [(path, read_result(path)) for path in result_files(results)]
    outcomes = outcomes_from_files(documents)
    tiers = sorted({doc.cell.tier for _, doc in documents})
    if max_runs is None:
        max_runs = files_rerun_budget(jobs_dir, tiers)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report, baselines = judge_run(outcomes, baselines=BaselineSet(baselines_dir), run_id="judge",
                                  tier=",".join(tiers), backend="files", started_at=now, finished_at=now,
                                  rule=rule, method=method, max_runs=max_runs)
    return Concluded(report, outcome_report(report, outcomes, baselines, fmt, report_dirs))


def result_files(paths: Sequence[Path]) -> list[Path]:
    """The files among `paths`, a folder replaced by its results: a run directory's
    cells/*/result.attempt-*.json (every attempt, as `fleet submit` judged them), else its *.json."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = (sorted(path.glob("cells/*/result.attempt-*.json"), key=_attempt_order)
                 if (path / "cells").is_dir() else sorted(path.glob("*.json")))
        if not found:
            raise ConfigError(f"no result files in {path}", where=str(path),
                              fix="pass RunResult files, or a run directory `fleet submit` wrote")
        files += found
    return files


def _attempt_order(path: Path) -> tuple[str, int]:
    digits = path.name.removeprefix("result.attempt-").removesuffix(".json")
    return path.parent.name, int(digits) if digits.isdigit() else 0


#: Verdicts that came from judging measurements, so that the merge judges them again.
JUDGED = ("PASS", "FAIL", "INCONCLUSIVE")


def read_report(run_dir: Path) -> RunReport:
    path = run_dir / FILE_NAMES["json"] if run_dir.is_dir() else run_dir
    return read_document(RunReport, path, what="report", schema="report",
                         fix="pass a run directory that has report.json, or the report.json itself")


def read_shard(path: Path) -> RunRecord:
    """A shard's run directory with its results and Jobs, or only its report (a report.json given)."""
    if path.is_dir() and (path / "cells").is_dir():
        read_report(path)  # the clear error for a broken report.json, before load_run_dir's
        return load_run_dir(path)
    return RunRecord(read_report(path), {}, {})


def setting(name: str, values: list[Any]) -> Any:
    """The one value every shard used for a judging setting; shards judged differently cannot merge."""
    distinct = set(values)
    if len(distinct) != 1:
        raise ConfigError(f"the shards were judged with different {name}: {sorted(map(str, distinct))}",
                          fix="merge the shards of one `fleet submit --num-shards` invocation")
    return values[0]


def rejudge(shards: list[RunRecord], baselines_dir: Path) -> tuple[dict[str, CellVerdict],
                                                                    list[DifferentialVerdict]]:
    """Every measured cell's verdict from the union of the shards' results, as one run would judge it,
    and the union's differential pairs (a pair split over two shards is judged here only)."""
    reports = [shard.report for shard in shards]
    rule: Rule = setting("rules", [r.rule or "auto" for r in reports])
    method: Method = setting("error control", [r.error_control or "holm" for r in reports])
    alpha: float | None = setting("alpha", [r.alpha for r in reports])
    max_runs: int = setting("rerun budgets (--max-runs)", [rerun_budget(r) for r in reports])
    outcomes, measured = [], set()
    for shard in shards:
        for verdict in shard.report.cells:
            cell = shard.cells.get(verdict.cell_id)
            if cell is None:
                continue
            results = list(shard.results.get(verdict.cell_id, ()))
            ok = tuple(result for result in results if result.status == "ok")
            if ok and verdict.status in JUDGED:
                measured.add(verdict.cell_id)
            # Unmeasured cells are judged too (their verdicts are not used) so that their baselines
            # join the pooled spreads exactly as in one unsharded run.
            outcomes.append(CellOutcome(cell, ok[-1] if ok else (results[-1] if results else None),
                                        None if ok else verdict.error,
                                        Path(verdict.result_path) if verdict.result_path else None,
                                        verdict.attempts, 0.0, 0.0, ok))
    if not measured:
        return {}, []
    report, _ = judge_run(outcomes, baselines=BaselineSet(baselines_dir), run_id="merge",
                          tier=reports[0].tier, backend="merge", started_at="", finished_at="", rule=rule,
                          alpha=alpha if alpha is not None else ALPHA, method=method, max_runs=max_runs)
    return ({verdict.cell_id: verdict for verdict in report.cells if verdict.cell_id in measured},
            report.differentials)


@dataclass(frozen=True)
class MergeRequest:
    """What `fleet merge` was asked, as values."""

    run_dirs: Sequence[Path]
    fmt: Format
    expect_all_cells: bool = False
    verdicts_only: bool = False
    jobs_dir: Path = Path("jobs")
    hardware: str | None = None
    variant: str | None = None
    baselines_dir: Path = Path("baselines")
    price_items: Sequence[str] = ()
    report_dir: Path | None = None
    alert_webhook: str | None = None
    report_url: str | None = None
    github_issue_repo: str | None = None


def merge(request: MergeRequest) -> Concluded:
    """Join a sharded run's shards (their run directories) into one report, verdict and exit code."""
    github = github_target(request.github_issue_repo)  # a missing token is a config error before any work
    run_dirs = list(request.run_dirs)
    unique: dict[Path, Path] = {}
    for path in run_dirs:
        unique.setdefault(path.resolve(), path)
    if len(unique) < len(run_dirs):  # overlapping globs: one shard named twice is one shard
        stderr.print(f"{len(run_dirs) - len(unique)} shard folder(s) given more than once: merged once")
        run_dirs = list(unique.values())
    shards = [read_shard(path) for path in run_dirs]
    reports = [shard.report for shard in shards]
    expected = (plan_cells(request.jobs_dir, reports[0].tier, request.hardware, request.variant)
                if request.expect_all_cells else None)
    rejudged: dict[str, CellVerdict] = {}
    # Verdicts only: the shards' own pairs (a pair split over two shards has none).
    differentials = [pair for report in reports for pair in report.differentials]
    if not request.verdicts_only:
        without = [str(path) for path, shard in zip(run_dirs, shards, strict=True) if not shard.results]
        if without:
            stderr.print(f"no result files in {', '.join(without)}: their verdicts are joined as they are "
                         "(error control per shard there)")
        if any(shard.results for shard in shards) and not request.baselines_dir.is_dir():
            # Judging again without the baselines would turn every shard's PASS into NO_BASELINE.
            raise ConfigError(f"baselines directory {request.baselines_dir} does not exist",
                              where="--baselines",
                              fix="run from the repository root or pass --baselines DIR (the shards' "
                                  "baselines), or --verdicts-only to join the shards' verdicts as they are")
        rejudged, differentials = rejudge(shards, request.baselines_dir)
    report = with_differentials(merge_reports(reports, sources=[str(p) for p in run_dirs],
                                              expected_cells=expected, rejudged=rejudged), differentials)
    spans = [span for shard in shards for span in shard.jobs]
    cost = account(spans, catalog_prices(request.jobs_dir, request.price_items)) if spans else None
    if cost is not None:
        report = report.model_copy(update={"cost": cost_document(cost)})
    report_dirs = [request.report_dir] if request.report_dir else []
    text = write_reports(report, {}, {}, request.fmt, report_dirs, cost)
    link = request.report_url.format(run_id=report.run_id) if request.report_url else None
    notify(report, webhook=request.alert_webhook, link=link, github=github)
    return Concluded(report, text)
