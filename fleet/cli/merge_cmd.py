"""`fleet merge`: the shards of a sharded run become one report, one verdict, one cost and one exit code.

Each shard judged its own cells; error control, though, must span the whole run, or N shards would
allow N times the false alarms of one run. So the merge judges again: every cell's measured results
(the shards' cells/<id>/result.attempt-*.json) against the baselines, Holm (or BH) over the union,
exactly as one unsharded run with the same results. Cells with nothing to judge (errors, skips) keep
their shard's verdict; a shard that kept only its report.json is joined as it stands, and the merge
says so. The cost is the union of the shards' Jobs, priced like `fleet submit` prices them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fleet.cli._common import stderr
from fleet.cli.history_cmds import catalog_prices, github_target, notify, notify_options, price_option
from fleet.cli.run_cmds import (
    baselines_option,
    emit_report,
    format_option,
    hardware_option,
    jobs_option,
    json_option,
    output_format,
    plan_cells,
    report_dir_option,
    variant_option,
)
from fleet.errors import ConfigError
from fleet.history.store import RunRecord, load_run_dir
from fleet.judge import ALPHA, Method, Rule
from fleet.model import CellVerdict, RunReport
from fleet.model.documents import read_document
from fleet.plan.cost import account, cost_document
from fleet.plan.sharding import merge_reports, rerun_budget
from fleet.report import FILE_NAMES, Format
from fleet.run.controller import CellOutcome, judge_run

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


def rejudge(shards: list[RunRecord], baselines_dir: Path) -> dict[str, CellVerdict]:
    """Every measured cell's verdict from the union of the shards' results, as one run would judge it."""
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
        return {}
    report, _ = judge_run(outcomes, baselines_root=baselines_dir, run_id="merge", tier=reports[0].tier,
                          backend="merge", started_at="", finished_at="", rule=rule,
                          alpha=alpha if alpha is not None else ALPHA, method=method, max_runs=max_runs)
    return {verdict.cell_id: verdict for verdict in report.cells if verdict.cell_id in measured}


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--expect-all-cells", is_flag=True,
              help="Every cell of the shards' tier (in --jobs) must be in a shard; a missing one is ERROR.")
@click.option("--verdicts-only", is_flag=True,
              help="Join the shards' verdicts as they are instead of judging their results again "
                   "(error control then holds per shard only).")
@jobs_option
@hardware_option
@variant_option
@baselines_option
@price_option
@json_option
@format_option
@report_dir_option
@notify_options
def merge(run_dirs: tuple[Path, ...], expect_all_cells: bool, verdicts_only: bool, jobs_dir: Path,
          hardware: str | None, variant: str | None,
          baselines_dir: Path, price_items: tuple[str, ...], as_json: bool, fmt: Format | None,
          report_dir: Path | None, alert_webhook: str | None, report_url: str | None,
          github_issue_repo: str | None) -> None:
    """Join a sharded run's shards (their run directories) into one report, verdict and exit code.

    With --expect-all-cells, the cells expected are the tier's, filtered by the --hardware and --variant
    the shards were submitted with.
    """
    github = github_target(github_issue_repo)
    unique: dict[Path, Path] = {}
    for path in run_dirs:
        unique.setdefault(path.resolve(), path)
    if len(unique) < len(run_dirs):  # overlapping globs: one shard named twice is one shard
        stderr.print(f"{len(run_dirs) - len(unique)} shard folder(s) given more than once: merged once")
        run_dirs = tuple(unique.values())
    shards = [read_shard(path) for path in run_dirs]
    reports = [shard.report for shard in shards]
    expected = plan_cells(jobs_dir, reports[0].tier, hardware, variant) if expect_all_cells else None
    rejudged: dict[str, CellVerdict] = {}
    if not verdicts_only:
        without = [str(path) for path, shard in zip(run_dirs, shards, strict=True) if not shard.results]
        if without:
            stderr.print(f"no result files in {', '.join(without)}: their verdicts are joined as they are "
                         "(error control per shard there)")
        if any(shard.results for shard in shards) and not baselines_dir.is_dir():
            # Judging again without the baselines would turn every shard's PASS into NO_BASELINE.
            raise ConfigError(f"baselines directory {baselines_dir} does not exist", where="--baselines",
                              fix="run from the repository root or pass --baselines DIR (the shards' "
                                  "baselines), or --verdicts-only to join the shards' verdicts as they are")
        rejudged = rejudge(shards, baselines_dir)
    report = merge_reports(reports, sources=[str(p) for p in run_dirs], expected_cells=expected,
                           rejudged=rejudged)
    spans = [span for shard in shards for span in shard.jobs]
    cost = account(spans, catalog_prices(jobs_dir, price_items)) if spans else None
    if cost is not None:
        report = report.model_copy(update={"cost": cost_document(cost)})
    emit_report(report, [], {}, output_format(as_json, fmt), [report_dir] if report_dir else [],
                cost)
    link = report_url.format(run_id=report.run_id) if report_url else None
    notify(report, webhook=alert_webhook, link=link, github=github)
    sys.exit(report.exit_code)

