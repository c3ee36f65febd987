"""The cluster verbs: `fleet resume RUN_ID`, `fleet images build`, and the kube wiring `fleet submit` calls.

`submit --backend kube` and `resume` share one path: run.json is written before the first Job exists,
and a run is driven from run.json alone, so re-running either after a crash adopts the run's Jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from fleet.backends.base import AttemptOutcome
from fleet.backends.docker_build import run_build
from fleet.cli._common import counted, stderr
from fleet.cli.history_cmds import catalog_prices, github_target, job_span, notify_options, price_option
from fleet.errors import ConfigError
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.model import Cell, RunResult, Tier
from fleet.plan.cost import JobSpan
from fleet.plan.images import DEFAULT_REPOSITORY, WHEEL_INDEX_TEMPLATE, build_plan
from fleet.plan.render import RenderContext, render_run, to_yaml
from fleet.report import FORMATS, Format
from fleet.run.controller import CellOutcome, RerunCheck, execute, make_rerun_check
from fleet.run.state import RunState, read_run_state, write_run_state


def kube_context(tier: Tier, run_id: str, *, namespace: str = "fleet", vllm_version: str = "latest",
                 images: Sequence[str] = (), kueue: bool = False, model_cache_pvc: str | None = None,
                 compile_cache_pvc: str | None = None) -> RenderContext:
    """The render context of a run; `images` are VENDOR=IMAGE overrides (nvidia, amd, cpu)."""
    fields: dict[str, object] = {"run_id": run_id, "namespace": namespace, "vllm_version": vllm_version,
                                 "kueue": kueue or bool(tier.queue), "queue_name": tier.queue,
                                 "priority_class": tier.priority_class, "model_cache_pvc": model_cache_pvc,
                                 "compile_cache_pvc": compile_cache_pvc}
    if images:
        chosen: dict[str, str] = {}
        for item in images:
            vendor, sep, image = item.partition("=")
            if not sep or vendor not in ("nvidia", "amd", "cpu"):
                raise ConfigError(f"--image {item!r} is not VENDOR=IMAGE", where="--image",
                                  fix="e.g. --image nvidia=ghcr.io/acme/fleet-cuda:{vllm_version}")
            chosen[vendor] = image
        fields["image_overrides"] = chosen
    return RenderContext.model_validate(fields)


def dry_run_yaml(cells: Sequence[Cell], context: RenderContext) -> str:
    """What `fleet submit --backend kube --dry-run` prints: every attempt-1 Job, as YAML."""
    return to_yaml(render_run(list(cells), context))


def kube_context_of(state: RunState) -> RenderContext:
    """The render context a kube run's run.json keeps; a run of another backend cannot be driven here."""
    if state.kube is None:
        raise ConfigError(f"run {state.run_id} was not a kube run", where="run.json",
                          fix="resume only runs submitted with --backend kube")
    return state.kube


def start_kube_run(state: RunState, run_dir: Path) -> RunState:
    """Persist the run before any Job exists: from here on, `fleet resume` can finish it."""
    write_run_state(run_dir, state)
    return state


def run_kube(state: RunState, *, run_dir: Path, host: str | None = None, kubeconfig: str | None = None,
             kube_context_name: str | None = None,
             on_outcome: Callable[[AttemptOutcome, bool], None] | None = None,
             backend_options: Mapping[str, Any] | None = None, rerun: RerunCheck | None = None,
             max_runs: int = 1) -> list[CellOutcome]:
    """Drive the run in run.json to a final outcome per cell (new, half-done or finished alike).

    `backend_options` go to fleet.backends.kube.client.make_backend (timings, sleep and clock in tests).
    A cell whose Job of attempt n is adopted keeps the results its attempts before n left in the run
    directory.
    """
    try:  # the kubernetes client loads only for cluster runs
        from fleet.backends.kube.client import make_backend
    except ImportError as err:
        raise ConfigError(f"the kube backend is not available: {err}", where="--backend kube",
                          fix="pip install -e '.[kube]' (the kubernetes client), or use --backend local"
                          ) from err

    backend = make_backend(kube_context_of(state), run_dir=run_dir, host=host, kubeconfig=kubeconfig,
                           kube_context=kube_context_name, **(backend_options or {}))
    try:
        return execute(state.cells, backend, run_id=state.run_id, on_outcome=on_outcome, rerun=rerun,
                       max_runs=max_runs, earlier=lambda cell, number: earlier_results(run_dir, cell, number))
    except KeyboardInterrupt:
        backend.close()  # leave the Jobs running: `fleet resume` picks them up
        raise
    finally:
        backend.close()


def earlier_results(run_dir: Path, cell: Cell, before: int) -> list[RunResult]:
    """The results attempts 1..before-1 of a cell saved in the run directory (unreadable ones skipped:
    an attempt that left no valid result was an error, never a candidate)."""
    found = []
    for number in range(1, before):
        path = run_dir / "cells" / cell.id / f"result.attempt-{number}.json"
        try:
            found.append(RunResult.model_validate_json(path.read_bytes()))
        except (OSError, ValueError):
            continue
    return found


@click.command()
@click.argument("run_id")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--baselines", "baselines_dir", type=click.Path(path_type=Path), default=Path("baselines"),
              show_default=True)
@click.option("--kubeconfig", default=None, help="Default: in-cluster credentials, else $KUBECONFIG.")
@click.option("--context", "kube_context_name", default=None, help="kubeconfig context.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Report on stdout.")
@click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"), show_default=True,
              help="Directory with hardware.yaml (the pools' prices).")
@click.option("--history-db", default="runs/history.sqlite", show_default=True, envvar="FLEET_HISTORY_DB",
              help="Record the run in this history, as fleet submit would have ('' skips it).")
@price_option
@notify_options
def resume(run_id: str, runs_dir: Path, baselines_dir: Path, kubeconfig: str | None,
           kube_context_name: str | None, fmt: Format, jobs_dir: Path, history_db: str,
           price_items: tuple[str, ...], alert_webhook: str | None, report_url: str | None,
           github_issue_repo: str | None) -> None:
    """Finish a kube run after the controller stopped: adopt its Jobs, gather, retry, report, record and
    alert, judged with the rule, error control, family and rerun budget it was submitted with."""
    from fleet.cli.run_cmds import Delivery, conclude

    run_dir = runs_dir / run_id
    state = read_run_state(run_dir)
    kube_context_of(state)  # a local run is refused before anything is said of resuming it
    delivery = Delivery(fmt, [run_dir], catalog_prices(jobs_dir, price_items), history_db or None,
                        alert_webhook, report_url, github_target(github_issue_repo))
    stderr.print(f"resuming run {run_id}: {counted(len(state.cells), 'cell')} of tier {state.tier}")
    max_runs = state.max_runs or DEFAULT_MAX_RUNS  # a run started before run.json kept its budget
    rerun = make_rerun_check(state.cells, baselines_dir, rule=state.rule, method=state.error_control,
                             family=state.family, max_runs=max_runs) if max_runs > 1 else None
    spans: list[JobSpan] = []
    outcomes = run_kube(state, run_dir=run_dir, kubeconfig=kubeconfig, kube_context_name=kube_context_name,
                        rerun=rerun, max_runs=max_runs, on_outcome=lambda o, _: spans.append(job_span(o)))
    conclude(outcomes, spans, state, run_dir=run_dir, started=state.created_at, baselines_dir=baselines_dir,
             delivery=delivery)


@click.group()
def images() -> None:
    """fleet's container images: vLLM's official CUDA or ROCm image with the suite installed."""


@images.command("build")
@click.option("--vendor", type=click.Choice(["cuda", "rocm"]), required=True)
@click.option("--commit", default=None, help="vLLM commit: builds FROM that commit's image.")
@click.option("--vllm-tag", default=None, help="A tag of vLLM's image instead of a commit (e.g. v0.11.0).")
@click.option("--base", default=None, help="Override the base image repository.")
@click.option("--repository", default=DEFAULT_REPOSITORY, show_default=True,
              help="Where the image is tagged.")
@click.option("--push", is_flag=True, help="Push the image after building it.")
@click.option("--from-wheel", is_flag=True,
              help="With --commit: install the commit's wheel (wheels.vllm.ai/SHA, every main commit since "
                   "v0.5.3) over vLLM's latest release image, for commits whose CI image has expired.")
@click.option("--wheel-index", default=WHEEL_INDEX_TEMPLATE, show_default=True,
              help="With --from-wheel: the per-commit package index, with {sha}.")
@click.option("--print-only", is_flag=True, help="Print the build arguments; build nothing.")
def images_build(vendor: str, commit: str | None, vllm_tag: str | None, base: str | None, repository: str,
                 push: bool, from_wheel: bool, wheel_index: str, print_only: bool) -> None:
    """Build images/<vendor>/Dockerfile through the Docker engine (docker SDK)."""
    plan = build_plan(Path.cwd(), vendor=vendor, commit=commit, vllm_tag=vllm_tag, base=base,
                      repository=repository, from_wheel=from_wheel, wheel_index=wheel_index)
    click.echo(plan.describe())
    if not print_only:
        run_build(plan, push=push)


def kube_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`fleet submit`'s options for --backend kube (ignored by the local backend)."""
    options = [
        click.option("--dry-run", is_flag=True, help="kube: print the Jobs' YAML and submit nothing."),
        click.option("--namespace", default="fleet", show_default=True, help="kube: the namespace of k8s/."),
        click.option("--vllm-version", default="latest", show_default=True,
                     help="kube: fills {vllm_version} in the Jobs' image (a vLLM release or commit sha)."),
        click.option("--image", "images", multiple=True, metavar="VENDOR=IMAGE",
                     help="kube: the image nvidia, amd or cpu pools run, before a pool's own `image` and "
                          "fleet's default."),
        click.option("--kueue", is_flag=True, help="kube: label Jobs for Kueue (the tier's queue)."),
        click.option("--model-cache-pvc", default=None, help="kube: PVC holding the models."),
        click.option("--compile-cache-pvc", default=None,
                     help="kube: PVC for vLLM's compile cache, keyed by vLLM version and hardware."),
        click.option("--kubeconfig", default=None,
                     help="kube: default in-cluster credentials, else $KUBECONFIG."),
        click.option("--context", "kube_context_name", default=None, help="kube: kubeconfig context."),
    ]
    for option in reversed(options):
        function = option(function)
    return function
