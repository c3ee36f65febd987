"""A run on the cluster: its render context, its Jobs' YAML, and the drive from run.json to an outcome per
cell, shared by `fleet submit --backend kube` and `fleet resume`.

run.json is written before the first Job exists and a run is driven from run.json alone, so re-running
either after a crash adopts the run's Jobs instead of duplicating them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fleet.backends.base import AttemptOutcome
from fleet.errors import ConfigError
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.model import Cell, RunResult, Tier
from fleet.plan.cost import JobSpan
from fleet.plan.render import RenderContext, render_run, to_yaml
from fleet.run.common import counted, stderr
from fleet.run.controller import CellOutcome, RerunCheck, execute, make_rerun_check
from fleet.run.deliver import Concluded, Delivery, conclude, job_span
from fleet.run.plan import BaselineSet
from fleet.run.state import RunState, read_run_state, write_run_state

#: The PVC k8s/base deploys for the tiers' datasets (RenderContext's default).
DEFAULT_DATASET_PVC: str = RenderContext.model_fields["dataset_pvc"].default


def kube_context(tier: Tier, run_id: str, *, namespace: str = "fleet", vllm_version: str = "latest",
                 images: Sequence[str] = (), kueue: bool = False, model_cache_pvc: str | None = None,
                 compile_cache_pvc: str | None = None, dataset_pvc: str = DEFAULT_DATASET_PVC
                 ) -> RenderContext:
    """The render context of a run; `images` are VENDOR=IMAGE overrides (nvidia, amd, cpu)."""
    fields: dict[str, object] = {"run_id": run_id, "namespace": namespace, "vllm_version": vllm_version,
                                 "kueue": kueue or bool(tier.queue), "queue_name": tier.queue,
                                 "priority_class": tier.priority_class, "model_cache_pvc": model_cache_pvc,
                                 "compile_cache_pvc": compile_cache_pvc, "dataset_pvc": dataset_pvc}
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


def resume_run(run_dir: Path, baselines: BaselineSet, *, delivery: Delivery, kubeconfig: str | None = None,
               kube_context_name: str | None = None) -> Concluded:
    """Finish a kube run after its controller stopped: adopt its Jobs, gather, retry, report, record and
    alert, judged with the rule, error control, family and rerun budget it was submitted with."""
    state = read_run_state(run_dir)
    kube_context_of(state)  # a local run is refused before anything is said of resuming it
    stderr.print(f"resuming run {state.run_id}: {counted(len(state.cells), 'cell')} of tier {state.tier}")
    max_runs = state.max_runs or DEFAULT_MAX_RUNS  # a run started before run.json kept its budget
    rerun = make_rerun_check(state.cells, baselines, rule=state.rule, method=state.error_control,
                             family=state.family, max_runs=max_runs) if max_runs > 1 else None
    spans: list[JobSpan] = []
    outcomes = run_kube(state, run_dir=run_dir, kubeconfig=kubeconfig, kube_context_name=kube_context_name,
                        rerun=rerun, max_runs=max_runs, on_outcome=lambda o, _: spans.append(job_span(o)))
    return conclude(outcomes, spans, state, run_dir=run_dir, started=state.created_at, baselines=baselines,
                    delivery=delivery)
