"""`fleet submit` as one application step: plan the tier, check every input, run the cells on a backend,
rerun what the judge finds inconclusive, then judge, report, record and notify.

Every check that can fail on the user's input (flags, files, baselines, models, folders) runs before the
first cell, so a mistake costs no GPU time and leaves no run directory behind it.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.docker import DockerBackend
from fleet.backends.local import LocalBackend
from fleet.errors import ConfigError
from fleet.judge import Method, Rule
from fleet.plan.catalog import load_tier
from fleet.plan.cost import JobSpan
from fleet.plan.sharding import shard_cells
from fleet.report import Format
from fleet.run.common import counted, ensure_writable_dir, history_db_in, stderr
from fleet.run.controller import execute, make_rerun_check, new_run_id
from fleet.run.deliver import Concluded, Delivery, catalog_prices, conclude, github_target, job_span
from fleet.run.kube import DEFAULT_DATASET_PVC, dry_run_yaml, kube_context, run_kube, start_kube_run
from fleet.run.plan import BaselineSet, history_seconds, plan_cells, tier_rerun_budget
from fleet.run.preflight import check_models
from fleet.run.state import RUN_FILE, RunState, write_run_state


def discard_unstarted(run_dir: Path) -> None:
    """A run refused on the user's input before any cell started (a malformed kubeconfig, no credentials)
    leaves only its run.json: removed, so that nothing is left to resume and `fleet merge runs/nightly-*/`
    is not broken by a run with no report. Anything more in the folder (a cell's files) is kept."""
    if run_dir.is_dir() and all(entry.name == RUN_FILE for entry in run_dir.iterdir()):
        shutil.rmtree(run_dir)


@dataclass(frozen=True)
class KubeRequest:
    """`fleet submit`'s options for --backend kube."""

    dry_run: bool = False
    kubeconfig: str | None = None
    context_name: str | None = None
    namespace: str = "fleet"
    vllm_version: str = "latest"
    images: Sequence[str] = ()
    kueue: bool = False
    model_cache_pvc: str | None = None
    compile_cache_pvc: str | None = None
    dataset_pvc: str = DEFAULT_DATASET_PVC


@dataclass(frozen=True)
class SubmitRequest:
    """Everything `fleet submit` was asked, as values."""

    tier: str
    fmt: Format
    backend: str = "local"
    jobs_dir: Path = Path("jobs")
    baselines_dir: Path = Path("baselines")
    runs_dir: Path = Path("runs")
    parallel: int = 1
    max_runs: int | None = None
    hardware: str | None = None
    variant: str | None = None
    rule: Rule = "auto"
    error_control: Method = "holm"
    report_dir: Path | None = None
    #: None: <runs_dir>/history.sqlite; '' records nothing.
    history_db: str | None = None
    price_items: Sequence[str] = ()
    alert_webhook: str | None = None
    report_url: str | None = None
    github_issue_repo: str | None = None
    shard_id: int | None = None
    num_shards: int | None = None
    #: Run cells that have no baseline (judged NO_BASELINE) instead of refusing before any of them runs.
    allow_missing_baselines: bool = False
    kube: KubeRequest = field(default_factory=KubeRequest)


@dataclass(frozen=True)
class Progress:
    """Callbacks the caller shows progress with: an attempt started, an attempt ended."""

    started: Callable[[Attempt], None]
    ended: Callable[[AttemptOutcome, bool], None]


#: What a submit can end in: a judged run, the Jobs' YAML of a dry run, or nothing to run in a shard.
Submitted = Concluded | str | None


def submit(request: SubmitRequest, progress: Callable[[int], Progress]) -> Submitted:
    """Run the request's cells and conclude; `progress(cells)` makes the progress for that many cells."""
    cells = plan_cells(request.jobs_dir, request.tier, request.hardware, request.variant)
    history_db = history_db_in(request.runs_dir, request.history_db)
    max_runs = request.max_runs or tier_rerun_budget(request.jobs_dir, request.tier)
    whole_run = cells
    github = github_target(request.github_issue_repo)  # a missing token is a config error before any work
    shard_id, num_shards = request.shard_id, request.num_shards
    if (shard_id is None) != (num_shards is None):
        raise ConfigError("--shard-id and --num-shards go together", where="--shard-id/--num-shards",
                          fix="pass both, e.g. --shard-id 0 --num-shards 4, or neither")
    if shard_id is not None and num_shards is not None:
        cells = shard_cells(cells, shard_id, num_shards, history_seconds(history_db, request.tier))
        if not cells:
            stderr.print(f"shard {shard_id} of {num_shards} has no cell of tier {request.tier}: "
                         "nothing to run")
            return None
    run_id = new_run_id(request.tier)
    kube = request.kube
    context = (kube_context(load_tier(request.jobs_dir, request.tier), run_id, namespace=kube.namespace,
                            vllm_version=kube.vllm_version, images=kube.images, kueue=kube.kueue,
                            model_cache_pvc=kube.model_cache_pvc, compile_cache_pvc=kube.compile_cache_pvc,
                            dataset_pvc=kube.dataset_pvc)
               if request.backend == "kube" else None)
    if kube.dry_run:
        if context is None:
            raise ConfigError("--dry-run renders Kubernetes Jobs", where="--dry-run",
                              fix="add --backend kube")
        return dry_run_yaml(cells, context)
    if request.backend == "local":
        check_models(cells, request.jobs_dir)  # a kube cell's models live in the cluster's image or cache
    baselines = BaselineSet(request.baselines_dir)
    baselines.read_all(cells)
    prices = catalog_prices(request.jobs_dir, request.price_items)
    if request.report_dir is not None:  # before the cells run: a bad folder must not cost their GPU time
        ensure_writable_dir(request.report_dir, option="--report-dir")
    if not request.allow_missing_baselines:
        baselines.require_all(cells, request.tier)
    if context is not None:  # the last check before the run directory: credentials, read but not used
        from fleet.backends.kube.client import api_client_for  # the kube extra, only for --backend kube

        api_client_for(kubeconfig=kube.kubeconfig, context=kube.context_name)
    run_dir = request.runs_dir / run_id
    ensure_writable_dir(run_dir, option="--runs-dir")
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stderr.print(f"run {run_id}: {counted(len(cells), 'cell')} of tier {request.tier} on the "
                 f"{request.backend} backend -> {run_dir}")
    shown = progress(len(cells))
    spans: list[JobSpan] = []

    def ended(outcome: AttemptOutcome, will_retry: bool) -> None:
        shown.ended(outcome, will_retry)
        spans.append(job_span(outcome))

    family = whole_run if num_shards else None
    state = RunState(run_id=run_id, tier=request.tier, backend=request.backend, kube=context, cells=cells,
                     max_runs=max_runs, rule=request.rule, error_control=request.error_control, family=family)
    rerun = (make_rerun_check(cells, baselines, rule=request.rule, method=request.error_control,
                              family=whole_run, max_runs=max_runs)
             if max_runs > 1 else None)
    report_dirs = [run_dir, *([request.report_dir] if request.report_dir else [])]
    delivery = Delivery(request.fmt, report_dirs, prices, history_db or None, request.alert_webhook,
                        request.report_url, github)
    if context is not None:
        start_kube_run(state, run_dir)
        try:
            outcomes = run_kube(state, run_dir=run_dir, kubeconfig=kube.kubeconfig,
                                kube_context_name=kube.context_name, on_outcome=ended, rerun=rerun,
                                max_runs=max_runs)
        except ConfigError:
            discard_unstarted(run_dir)
            raise
    else:
        write_run_state(run_dir, state)
        local: LocalBackend | DockerBackend = (
            DockerBackend(run_dir, parallel=request.parallel, on_start=shown.started)
            if request.backend == "docker" else
            LocalBackend(run_dir, parallel=request.parallel, on_start=shown.started))
        try:
            outcomes = execute(cells, local, run_id=run_id, on_outcome=ended, rerun=rerun, max_runs=max_runs)
        except KeyboardInterrupt:
            local.cancel()
            raise
        finally:
            local.close()
    return conclude(outcomes, spans, state, run_dir=run_dir, started=started, baselines=baselines,
                    delivery=delivery)
