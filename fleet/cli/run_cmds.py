"""The everyday verbs: plan a tier, submit it, judge results produced anywhere, print the schemas."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.local import LocalBackend
from fleet.baselines.store import baseline_json_schema, result_json_schema
from fleet.cli._common import counted, ensure_writable_dir, existing_dir, stderr
from fleet.cli.history_cmds import (
    catalog_prices,
    github_target,
    job_span,
    notify_options,
    price_option,
    record_and_alert,
)
from fleet.cli.kube_cmds import dry_run_yaml, kube_context, kube_options, run_kube, start_kube_run
from fleet.errors import ConfigError
from fleet.history.store import HistoryStore
from fleet.judge import METHODS, RULES, Method, Rule
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.model import Baseline, Cell, RunReport, RunResult
from fleet.model.documents import read_document
from fleet.notify.github import GitHubTarget
from fleet.plan.catalog import list_tiers, load_catalog, load_tier
from fleet.plan.cost import CostSummary, JobSpan, account, cost_document, render_cost_text
from fleet.plan.matrix import expand, filter_cells
from fleet.plan.sharding import recorded_seconds, shard_cells
from fleet.report import FILE_NAMES, FORMATS, Format, render
from fleet.run.controller import (
    CellOutcome,
    execute,
    judge_run,
    make_rerun_check,
    new_run_id,
    outcomes_from_files,
)
from fleet.run.preflight import check_baselines, check_models
from fleet.run.state import RunState, write_run_state

jobs_option = click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"),
                           show_default=True, help="Directory with hardware.yaml, variants.yaml and tiers.")
baselines_option = click.option("--baselines", "baselines_dir", type=click.Path(path_type=Path),
                                default=Path("baselines"), show_default=True,
                                help="Root of the baseline files: <hardware>/<variant>__<model>.json.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
hardware_option = click.option("--hardware", default=None, help="Only cells on this hardware pool.")
rule_option = click.option("--rule", type=click.Choice(RULES), default="auto", show_default=True,
                           help="auto: statistical tests where the baseline recorded a spread, the RFC's "
                                "±tolerance_pct elsewhere; rfc: the RFC rule everywhere.")
error_control_option = click.option("--error-control", type=click.Choice(METHODS), default="holm",
                                    show_default=True,
                                    help="Across all cells x metrics: holm (family-wise) or bh (false "
                                         "discovery rate).")
format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                             help="Report on stdout: text (RFC layout, default), json, junit, markdown.")
report_dir_option = click.option("--report-dir", type=click.Path(path_type=Path), default=None,
                                 help="Also write every format there: report.txt, report.json, junit.xml, "
                                      "report.md.")
variant_option = click.option("--variant", default=None, help="Only cells of this variant.")


def plan_cells(jobs_dir: Path, tier: str, hardware: str | None, variant: str | None) -> list[Cell]:
    existing_dir(jobs_dir, option="--jobs", what="jobs")
    catalog = load_catalog(jobs_dir)
    tier_model = load_tier(jobs_dir, tier)
    cells = expand(tier_model, catalog, tier_path=str(jobs_dir / f"{tier}.yaml"))
    selected = filter_cells(cells, hardware=hardware, variant=variant)
    if not selected:
        asked = " ".join(f"--{name} {value}" for name, value in (("hardware", hardware), ("variant", variant))
                         if value is not None)
        raise ConfigError(f"no cell of tier {tier!r} matches {asked}",
                          fix=f"run `fleet plan --tier {tier}` to see its cells")
    check_models(selected, jobs_dir, paths=False)  # a misspelt bundled: name, on every backend
    return selected


@click.command()
@click.option("--tier", required=True, help="Tier to expand: smoke, nightly, weekly, local, ...")
@jobs_option
@hardware_option
@variant_option
@json_option
def plan(tier: str, jobs_dir: Path, hardware: str | None, variant: str | None, as_json: bool) -> None:
    """List the cells a tier expands to, without running anything."""
    cells = plan_cells(jobs_dir, tier, hardware, variant)
    if as_json:
        click.echo(json.dumps([cell.model_dump(mode="json") for cell in cells], indent=2))
        return
    for cell in cells:
        draft = f" draft={cell.draft_model}" if cell.draft_model else ""
        spec = cell.variant
        click.echo(f"{cell.id}  [{cell.engine}] {spec.method} k={spec.num_speculative_tokens} "
                   f"model={cell.model}{draft} on {cell.hardware.name} "
                   f"({cell.workload.num_prompts} prompts x {cell.workload.max_tokens} tokens)")
    click.echo(f"{counted(len(cells), 'cell')} in tier {tier}")


class Progress:
    """Progress on stderr while cells run: which cell started, how each attempt ended."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started_cells = 0
        self.measured: dict[str, int] = {}  # runs each cell measured
        self.last_measured: set[str] = set()  # cells whose last attempt measured: a next one is a rerun

    def started(self, attempt: Attempt) -> None:
        cell = attempt.cell.id
        if attempt.number == 1:
            self.started_cells += 1
            stderr.print(f"[{self.started_cells}/{self.total}] running {cell} ...")
        elif cell in self.last_measured:
            stderr.print(f"      rerunning {cell} (run {self.measured[cell] + 1}: the judge found it "
                         "inconclusive) ...")
        else:
            stderr.print(f"      retrying {cell} (attempt {attempt.number}) ...")

    def ended(self, outcome: AttemptOutcome, will_retry: bool) -> None:
        took = outcome.finished_at - outcome.started_at
        error = outcome.error
        if error is not None:
            verdict = f"{error.category} failure: {error.reason}: {error.message}"
            verdict += " - retrying" if will_retry else ""
        elif outcome.result is not None and outcome.result.status == "skipped":
            verdict = f"skipped: {outcome.result.skip_reason}"
        else:
            verdict = "measured"
        if error is None and outcome.result is not None and outcome.result.status == "ok":
            self.measured[outcome.cell_id] = self.measured.get(outcome.cell_id, 0) + 1
            self.last_measured.add(outcome.cell_id)
        else:
            self.last_measured.discard(outcome.cell_id)
        stderr.print(f"    {outcome.cell_id}: {verdict} ({took:.1f} s)")


def emit_report(report: RunReport, outcomes: list[CellOutcome], baselines: dict[str, Baseline],
                fmt: Format, report_dirs: list[Path], cost: CostSummary | None = None) -> None:
    results = {o.cell.id: o.result for o in outcomes if o.result is not None}

    def rendered(each: Format) -> str:
        text = render(report, each, results, baselines)
        if cost is not None and each in ("text", "markdown"):
            text += "\n" + render_cost_text(cost)
        return text

    for directory in report_dirs:
        ensure_writable_dir(directory, option="--report-dir")
        for each in FORMATS:
            (directory / FILE_NAMES[each]).write_text(rendered(each))
    click.echo(rendered(fmt), nl=False)


@click.command()
@click.option("--tier", required=True, help="Tier to run: local (CPU, bundled models), smoke, nightly, ...")
@click.option("--backend", type=click.Choice(["local", "kube"]), default="local", show_default=True,
              help="Where cells run: local subprocesses on this machine, or Kubernetes Jobs.")
@jobs_option
@baselines_option
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Each run writes runs/<run-id>/: cells, results, logs, reports.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cells run at once by the local backend (1 keeps latencies honest).")
@click.option("--max-runs", type=click.IntRange(min=1, max=20), default=None,
              help="Runs of a cell the judge finds INCONCLUSIVE may take (1: never rerun). "
                   f"[default: the tier's max_runs, else {DEFAULT_MAX_RUNS}]")
@hardware_option
@variant_option
@rule_option
@error_control_option
@json_option
@format_option
@report_dir_option
@click.option("--history-db", default="runs/history.sqlite", show_default=True, envvar="FLEET_HISTORY_DB",
              help="Record the run in this history (SQLite file or SQLAlchemy URL); '' skips it.")
@price_option
@notify_options
@click.option("--shard-id", type=click.IntRange(min=0), default=None,
              help="Run only this shard (0-based) of the tier's cells; needs --num-shards.")
@click.option("--num-shards", type=click.IntRange(min=1), default=None,
              help="Split the cells into this many shards, balanced by expected GPU time; join the shards' "
                   "run directories with `fleet merge`.")
@kube_options
def submit(tier: str, backend: str, jobs_dir: Path, baselines_dir: Path, runs_dir: Path, parallel: int,
           max_runs: int | None, hardware: str | None, variant: str | None, rule: Rule,
           error_control: Method, as_json: bool, fmt: Format | None, report_dir: Path | None, history_db: str,
           price_items: tuple[str, ...], alert_webhook: str | None, report_url: str | None,
           github_issue_repo: str | None,
           shard_id: int | None, num_shards: int | None,
           dry_run: bool, kubeconfig: str | None, kube_context_name: str | None, **kube: Any) -> None:
    """Run a tier's cells, judge every metric against its hardware's baseline, report."""
    output_format(as_json, fmt)  # a contradiction in the flags costs no cell
    cells = plan_cells(jobs_dir, tier, hardware, variant)
    if max_runs is None:
        max_runs = tier_rerun_budget(jobs_dir, tier)
    whole_run = cells
    github = github_target(github_issue_repo)  # a missing token is a config error before any work
    if (shard_id is None) != (num_shards is None):
        raise ConfigError("--shard-id and --num-shards go together", where="--shard-id/--num-shards",
                          fix="pass both, e.g. --shard-id 0 --num-shards 4, or neither")
    if shard_id is not None and num_shards is not None:
        cells = shard_cells(cells, shard_id, num_shards, history_seconds(history_db, tier))
        if not cells:
            stderr.print(f"shard {shard_id} of {num_shards} has no cell of tier {tier}: nothing to run")
            sys.exit(0)
    run_id = new_run_id(tier)
    context = kube_context(load_tier(jobs_dir, tier), run_id, **kube) if backend == "kube" else None
    if dry_run:
        if context is None:
            raise ConfigError("--dry-run renders Kubernetes Jobs", where="--dry-run",
                              fix="add --backend kube")
        click.echo(dry_run_yaml(cells, context), nl=False)
        return
    if backend == "local":
        check_models(cells, jobs_dir)  # a kube cell's models live in the cluster's image or cache, not here
    check_baselines(cells, baselines_dir)
    prices = catalog_prices(jobs_dir, price_items)
    if report_dir is not None:  # before the cells run: a bad folder must not cost their GPU time
        ensure_writable_dir(report_dir, option="--report-dir")
    run_dir = runs_dir / run_id
    ensure_writable_dir(run_dir, option="--runs-dir")
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stderr.print(f"run {run_id}: {counted(len(cells), 'cell')} of tier {tier} on the {backend} backend "
                 f"-> {run_dir}")
    progress = Progress(len(cells))
    spans: list[JobSpan] = []

    def ended(outcome: AttemptOutcome, will_retry: bool) -> None:
        progress.ended(outcome, will_retry)
        spans.append(job_span(outcome))

    family = whole_run if num_shards else None
    state = RunState(run_id=run_id, tier=tier, backend=backend, kube=context, cells=cells, max_runs=max_runs,
                     rule=rule, error_control=error_control, family=family)
    rerun = (make_rerun_check(cells, baselines_dir, rule=rule, method=error_control, family=whole_run,
                              max_runs=max_runs)
             if max_runs > 1 else None)
    delivery = Delivery(output_format(as_json, fmt), [run_dir, *([report_dir] if report_dir else [])], prices,
                        history_db or None, alert_webhook, report_url, github)
    if context is not None:
        start_kube_run(state, run_dir)
        outcomes = run_kube(state, run_dir=run_dir, kubeconfig=kubeconfig,
                            kube_context_name=kube_context_name, on_outcome=ended, rerun=rerun,
                            max_runs=max_runs)
    else:
        write_run_state(run_dir, state)
        local = LocalBackend(run_dir, parallel=parallel, on_start=progress.started)
        try:
            outcomes = execute(cells, local, run_id=run_id, on_outcome=ended, rerun=rerun, max_runs=max_runs)
        except KeyboardInterrupt:
            local.cancel()
            raise
    conclude(outcomes, spans, state, run_dir=run_dir, started=started, baselines_dir=baselines_dir,
             delivery=delivery)


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


def conclude(outcomes: list[CellOutcome], spans: list[JobSpan], state: RunState, *, run_dir: Path,
             started: str, baselines_dir: Path, delivery: Delivery) -> NoReturn:
    """Judge a run's outcomes as its run.json says (rule, error control, family, budget), cost it, report,
    record and alert, and exit with the verdict's code: the end of fleet submit and fleet resume alike."""
    finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report, baselines = judge_run(outcomes, baselines_root=baselines_dir, run_id=state.run_id,
                                  tier=state.tier, backend=state.backend, started_at=started,
                                  finished_at=finished, rule=state.rule, method=state.error_control,
                                  family=state.family, max_runs=state.max_runs or DEFAULT_MAX_RUNS)
    cost = account(spans, delivery.prices)
    report = report.model_copy(update={"cost": cost_document(cost)})
    emit_report(report, outcomes, baselines, delivery.fmt, delivery.report_dirs, cost)
    link = delivery.report_url.format(run_id=state.run_id) if delivery.report_url else None
    record_and_alert(run_dir, report, spans, prices=delivery.prices, db=delivery.history_db,
                     webhook=delivery.webhook, link=link, github=delivery.github)
    sys.exit(report.exit_code)


def history_seconds(history_db: str, tier: str, last_runs: int = 20) -> dict[str, float]:
    """Each cell's recorded seconds over the tier's last runs; empty when there is no history yet."""
    if not history_db or ("://" not in history_db and not Path(history_db).is_file()):
        return {}
    with HistoryStore.open(history_db) as store:
        runs = store.runs(tier=tier)[-last_runs:]
        return recorded_seconds(span for run in runs for span in store.jobs(run.run_id))


def output_format(as_json: bool, fmt: Format | None) -> Format:
    """The report format on stdout: --json is --format json; asking for two different ones is an error."""
    if as_json and fmt not in (None, "json"):
        raise ConfigError(f"--json and --format {fmt} ask for two formats on stdout", where="--json/--format",
                          fix="keep one (--report-dir writes all four formats to files)")
    return "json" if as_json else fmt or "text"


def tier_rerun_budget(jobs_dir: Path, tier: str) -> int:
    """The runs a cell of this tier may take: the tier file's max_runs, else DEFAULT_MAX_RUNS."""
    return load_tier(jobs_dir, tier).max_runs or DEFAULT_MAX_RUNS


def files_rerun_budget(jobs_dir: Path, tiers: Sequence[str]) -> int:
    """The rerun budget result files of these tiers were made under, as far as the tier files say: the
    tiers' own (DEFAULT_MAX_RUNS for a tier with no file here, made elsewhere). Tiers with different
    budgets cannot be judged as one run without being told which."""
    known = set(list_tiers(jobs_dir)) if jobs_dir.is_dir() else set()
    budgets = {tier: tier_rerun_budget(jobs_dir, tier) if tier in known else DEFAULT_MAX_RUNS
               for tier in tiers}
    if len(set(budgets.values())) > 1:
        listed = ", ".join(f"{tier} {budget}" for tier, budget in sorted(budgets.items()))
        raise ConfigError(f"the results come from tiers with different rerun budgets ({listed})",
                          where="--max-runs", fix="pass --max-runs N, or judge each tier's results apart")
    return next(iter(budgets.values()), DEFAULT_MAX_RUNS)


def read_result(path: Path) -> RunResult:
    return read_document(RunResult, path, what="result", schema="result")


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@baselines_option
@rule_option
@error_control_option
@json_option
@format_option
@report_dir_option
@jobs_option
@click.option("--max-runs", type=click.IntRange(min=1, max=20), default=None,
              help="The rerun budget the files were made under: a loop that could stop at any of runs "
                   "3..N splits its false-alarm budget over those looks; 1 for runs made all at once. "
                   f"[default: the results' tier's max_runs in --jobs, else {DEFAULT_MAX_RUNS}]")
def judge(results: tuple[Path, ...], baselines_dir: Path, rule: Rule, error_control: Method, as_json: bool,
          fmt: Format | None, report_dir: Path | None, jobs_dir: Path, max_runs: int | None) -> None:
    """Judge RunResult files produced anywhere against the baselines.

    Several files of one cell are judged together as its candidate runs (reruns).
    """
    documents = [(path, read_result(path)) for path in results]
    outcomes = outcomes_from_files(documents)
    tiers = sorted({doc.cell.tier for _, doc in documents})
    if max_runs is None:
        max_runs = files_rerun_budget(jobs_dir, tiers)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report, baselines = judge_run(outcomes, baselines_root=baselines_dir, run_id="judge",
                                  tier=",".join(tiers), backend="files", started_at=now, finished_at=now,
                                  rule=rule, method=error_control, max_runs=max_runs)
    emit_report(report, outcomes, baselines, output_format(as_json, fmt),
                [report_dir] if report_dir else [])
    sys.exit(report.exit_code)


@click.command()
@click.argument("document", type=click.Choice(["baseline", "result", "cell", "report"]))
def schema(document: str) -> None:
    """Print the JSON Schema of a fleet document."""
    schemas = {
        "baseline": baseline_json_schema,
        "result": result_json_schema,
        "cell": Cell.model_json_schema,
        "report": RunReport.model_json_schema,
    }
    click.echo(json.dumps(schemas[document](), indent=2))
