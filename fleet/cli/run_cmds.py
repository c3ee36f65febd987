"""The everyday verbs: plan a tier, submit it, judge results produced anywhere, print the schemas."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from fleet.baselines.store import baseline_json_schema, result_json_schema
from fleet.cli._common import counted
from fleet.cli._options import (
    baselines_option,
    error_control_option,
    format_option,
    hardware_option,
    jobs_option,
    json_option,
    kube_options,
    notify_options,
    output_format,
    price_option,
    report_dir_option,
    rule_option,
    variant_option,
)
from fleet.cli._progress import cell_progress
from fleet.judge import Method, Rule
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.model import Cell, RunReport
from fleet.report import Format
from fleet.run.plan import plan_cells
from fleet.run.rejudge import judge_files
from fleet.run.submit import KubeRequest, SubmitRequest
from fleet.run.submit import submit as submit_run


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
        axes = "".join(f" {name}={value}" for name, value in cell.execution.items())
        click.echo(f"{cell.id}  [{cell.engine}] {spec.method} k={spec.num_speculative_tokens} "
                   f"model={cell.model}{draft} on {cell.hardware.name} "
                   f"({cell.workload.num_prompts} prompts x {cell.workload.max_tokens} tokens)"
                   + (f" axes:{axes}" if axes else ""))
    click.echo(f"{counted(len(cells), 'cell')} in tier {tier}")


@click.command()
@click.option("--tier", required=True, help="Tier to run: local (CPU, bundled models), smoke, nightly, ...")
@click.option("--backend", type=click.Choice(["local", "kube", "docker"]), default="local", show_default=True,
              help="Where cells run: local subprocesses on this machine, Kubernetes Jobs, or containers of "
                   "fleet's image on this machine's Docker engine.")
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
@click.option("--history-db", default=None, envvar="FLEET_HISTORY_DB",
              help="Record the run in this history (SQLite file or SQLAlchemy URL); '' skips it "
                   "[default: <runs-dir>/history.sqlite].")
@price_option
@notify_options
@click.option("--shard-id", type=click.IntRange(min=0), default=None,
              help="Run only this shard (0-based) of the tier's cells; needs --num-shards.")
@click.option("--num-shards", type=click.IntRange(min=1), default=None,
              help="Split the cells into this many shards, balanced by expected GPU time; join the shards' "
                   "run directories with `fleet merge`.")
@click.option("--allow-missing-baselines", is_flag=True,
              help="Run cells that have no baseline (each ends NO_BASELINE) instead of refusing before any "
                   "runs.")
@kube_options
def submit(tier: str, backend: str, jobs_dir: Path, baselines_dir: Path, runs_dir: Path, parallel: int,
           max_runs: int | None, hardware: str | None, variant: str | None, rule: Rule,
           error_control: Method, as_json: bool, fmt: Format | None, report_dir: Path | None,
           history_db: str | None,
           price_items: tuple[str, ...], alert_webhook: str | None, report_url: str | None,
           github_issue_repo: str | None, shard_id: int | None, num_shards: int | None,
           dry_run: bool, kubeconfig: str | None, kube_context_name: str | None, namespace: str,
           vllm_version: str, images: tuple[str, ...], kueue: bool, model_cache_pvc: str | None,
           compile_cache_pvc: str | None, dataset_pvc: str, allow_missing_baselines: bool) -> None:
    """Run a tier's cells, judge every metric against its hardware's baseline, report."""
    kube = KubeRequest(dry_run=dry_run, kubeconfig=kubeconfig, context_name=kube_context_name,
                       namespace=namespace, vllm_version=vllm_version, images=images, kueue=kueue,
                       model_cache_pvc=model_cache_pvc, compile_cache_pvc=compile_cache_pvc,
                       dataset_pvc=dataset_pvc)
    request = SubmitRequest(
        tier=tier, fmt=output_format(as_json, fmt), backend=backend, jobs_dir=jobs_dir,
        baselines_dir=baselines_dir, runs_dir=runs_dir, parallel=parallel, max_runs=max_runs,
        hardware=hardware, variant=variant, rule=rule, error_control=error_control, report_dir=report_dir,
        history_db=history_db, price_items=price_items, alert_webhook=alert_webhook, report_url=report_url,
        github_issue_repo=github_issue_repo, shard_id=shard_id, num_shards=num_shards,
        allow_missing_baselines=allow_missing_baselines, kube=kube)
    done = submit_run(request, cell_progress)
    if done is None:  # a shard with no cell
        sys.exit(0)
    if isinstance(done, str):  # --dry-run: the Jobs' YAML
        click.echo(done, nl=False)
        return
    click.echo(done.stdout, nl=False)
    sys.exit(done.exit_code)


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
    done = judge_files(results, baselines_dir, rule=rule, method=error_control,
                       fmt=output_format(as_json, fmt), report_dirs=[report_dir] if report_dir else [],
                       jobs_dir=jobs_dir, max_runs=max_runs)
    click.echo(done.stdout, nl=False)
    sys.exit(done.exit_code)


@click.command()
@click.argument("document", type=click.Choice(["baseline", "result", "cell", "report"]))
def schema(document: str) -> None:
    """Print the JSON Schema of a fleet document."""
    schemas: dict[str, Any] = {
        "baseline": baseline_json_schema,
        "result": result_json_schema,
        "cell": Cell.model_json_schema,
        "report": RunReport.model_json_schema,
    }
    click.echo(json.dumps(schemas[document](), indent=2))
