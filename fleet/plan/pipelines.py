"""CI pipelines that run a tier in shards and merge the verdict: Buildkite (vLLM's CI) and GitHub Actions.

vLLM's CI is Buildkite; forks and smaller projects use GitHub Actions. Both get the same shape: parallel
jobs each running `fleet submit --shard-id I --num-shards N`, their reports kept as artifacts, then one
merge job that runs `fleet merge` over them and publishes the markdown report. On Buildkite each GPU pool
of the tier is its own step on that pool's agent queue (vLLM's queue names unless told otherwise), so a
cell runs where its GPU is; vLLM's own test-area format (`.buildkite/test_areas/*.yaml`, turned into steps
by vllm-project/ci-infra's pipeline generator) is emitted from the same per-pool plan. The generators are
pure (a tier and its cells in, a document out); the step timeout comes from the tier's per-cell timeout
and the number of cells the fullest shard holds, and no step gets more shards than it has cells.
"""

from __future__ import annotations

import copy
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fleet.errors import ConfigError
from fleet.model import Cell, Tier
from fleet.plan.sharding import assign_shards, expected_costs
from fleet.plan.vllm_ci import (
    AGENT_LOST_RETRY,
    DOCKER_PLUGIN,
    VLLM_DEVICES,
    VLLM_QUEUES,
    dependency_globs,
    dependency_prefixes,
)

__all__ = ["CiOptions", "buildkite_pipeline", "github_workflow", "shard_timeout_minutes", "vllm_test_area"]

#: What every shard's run directory keeps as CI artifacts: its reports, and what `fleet merge` judges
#: again across shards (each cell's description and results) and costs (the Jobs' spans).
REPORT_GLOBS: tuple[str, ...] = ("runs/**/report.json", "runs/**/junit.xml", "runs/**/report.md",
                                 "runs/**/jobs.json", "runs/**/cells/**/cell.json",
                                 "runs/**/cells/**/result.attempt-*.json")
#: Time beyond the cells' own timeouts: image pulls, scheduling, the controller's own start.
SLACK_MINUTES = 15

#: fleet's exit status for a regression: a shard that finds one soft-fails, and the verdict step (which
#: judges every shard's results again) is the one that fails the build.
REGRESSION_EXIT = 1


@dataclass(frozen=True)
class CiOptions:
    num_shards: int = 1
    slack_channel: str = "#spec-decode-ci"
    runs_on: str = "ubuntu-latest"
    python_version: str = "3.11"
    #: The --jobs directory every generated `fleet submit` and `fleet merge` reads.
    jobs_dir: str = "jobs"
    #: Buildkite agent queue per pool, over VLLM_QUEUES; the merge step runs on the `cpu` pool's queue.
    queues: Mapping[str, str] = field(default_factory=dict)
    #: None: kube (the step drives the pool's Jobs) for GPU cells, local for a CPU-only tier.
    backend: str | None = None
    #: Buildkite: run every step in this image through the Docker plugin (`{vllm_version}` filled in).
    image: str | None = None
    #: What a step runs before fleet; None: what its backend needs; "" installs nothing (an image has it).
    install: str | None = None
    #: The vLLM build under test: the Jobs' image tag (kube) and the plugin image's `{vllm_version}`; a
    #: `$VARIABLE` is the build's (Buildkite fills the plugin's at upload, the shell a command's at run).
    vllm_version: str = "$BUILDKITE_COMMIT"
    #: Every step soft-fails: the build shows the verdict without failing (a check others don't gate on).
    soft_fail: bool = False
    #: Steps run only when a file the cells' variants depend on changed. None: for a tier without a
    #: schedule (per pull request); a scheduled tier runs whatever changed, as vLLM's nightly builds do.
    if_changed: bool | None = None
    #: vLLM test area: the fleet repository (and revision) a step clones and installs into vLLM's image.
    fleet_repo: str | None = None
    fleet_ref: str = "main"


def shard_timeout_minutes(cells: Sequence[Cell], num_shards: int) -> int:
    """Minutes the fullest shard may take when every one of its cells runs to its timeout."""
    if not cells:
        return SLACK_MINUTES
    costs = expected_costs(cells)
    fullest = max(sum(costs[cell_id] for cell_id in shard) for shard in assign_shards(costs, num_shards))
    return math.ceil(fullest / 60) + SLACK_MINUTES


def shard_count(cells: Sequence[Cell], num_shards: int) -> int:
    """Shards asked for, but never more than there are cells: an empty shard is a job that does nothing."""
    return max(1, min(num_shards, len(cells)))


#: GitHub-hosted runners stop a job after 6 hours; self-hosted runners allow days.
HOSTED_JOB_LIMIT_MINUTES = 360
_HOSTED_LABELS = ("ubuntu-", "windows-", "macos-")


def check_hosted_limit(cells: Sequence[Cell], options: CiOptions) -> None:
    """A shard that may outlast a GitHub-hosted runner's job limit is refused, with the fewest shards
    that fit (or a self-hosted runner) as the way out."""
    if not options.runs_on.startswith(_HOSTED_LABELS):
        return
    minutes = shard_timeout_minutes(cells, shard_count(cells, options.num_shards))
    if minutes <= HOSTED_JOB_LIMIT_MINUTES:
        return
    enough = next((n for n in range(options.num_shards + 1, len(cells) + 1)
                   if shard_timeout_minutes(cells, n) <= HOSTED_JOB_LIMIT_MINUTES), None)
    shards = f"--num-shards {enough}, " if enough else ""
    raise ConfigError(f"a shard may run {minutes} minutes, and GitHub-hosted runners ({options.runs_on}) "
                      f"stop a job at {HOSTED_JOB_LIMIT_MINUTES}", where="--num-shards/--runs-on",
                      fix=f"use {shards}or --runs-on a self-hosted runner's label")


def _backend(cells: Sequence[Cell], options: CiOptions) -> str:
    if options.backend is not None:
        return options.backend
    return "local" if all(cell.hardware.vendor == "cpu" for cell in cells) else "kube"


def _install(cells: Sequence[Cell], backend: str, options: CiOptions) -> str:
    """What a step installs: the kubernetes client to drive the cluster; the reference engine's torch
    (pinned to its CPU wheel, as the README installs it) to run CPU cells; fleet alone over the vLLM an
    image already has to run GPU cells on the agent."""
    if options.install is not None:
        return options.install
    if backend == "kube":
        return "pip install -e '.[kube]'"
    if all(cell.hardware.vendor == "cpu" for cell in cells):
        return "pip install torch==2.13.0 -e '.[local]'"
    return "pip install -e ."


def _pools(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    pools: dict[str, list[Cell]] = {}
    for cell in cells:
        pools.setdefault(cell.hardware.name, []).append(cell)
    return dict(sorted(pools.items()))


def _queue(pool: str, options: CiOptions) -> str:
    queue = options.queues.get(pool) or VLLM_QUEUES.get(pool)
    if queue is None:
        raise ConfigError(f"no Buildkite agent queue is known for pool {pool!r}", where="--queue",
                          fix=f"pass --queue {pool}=QUEUE (the queue whose agents have that pool's GPUs)")
    return queue


def _dependencies(cells: Sequence[Cell]) -> list[str]:
    return sorted({pattern for cell in cells for pattern in cell.variant.source_file_dependencies})


def _submit(tier: Tier, cells: Sequence[Cell], options: CiOptions, *, backend: str, shard: str, count: str,
            pool: str | None = None) -> str:
    parts = ["fleet submit", f"--tier {tier.name}", f"--jobs {shlex.quote(options.jobs_dir)}",
             f"--backend {backend}"]
    if pool is not None:
        parts.append(f"--hardware {pool}")
    if backend == "kube" and pool is not None:  # Buildkite: the Jobs run fleet's image of the commit,
        # queued by Kueue on the pool's ResourceFlavor as k8s/ deploys it
        parts.append(f"--vllm-version {options.vllm_version.replace('$', '$$')} --kueue")
    if count != "1":
        parts.append(f"--shard-id {shard} --num-shards {count}")
    if pool is not None:  # per-pool shards: one run folder each, joined by the merge step
        parts.append(f"--runs-dir runs/{pool}")
    return " ".join([*parts, "--format markdown"])


def _plugins(vendor: str, options: CiOptions) -> list[dict[str, Any]] | None:
    """The Docker plugin running the step in `options.image`, with the pool's GPUs and the Hugging Face
    credentials and cache passed in, as vLLM's GPU steps run."""
    if options.image is None:
        return None
    config: dict[str, Any] = {
        "image": options.image.replace("{vllm_version}", options.vllm_version),
        "always-pull": True, "propagate-environment": True,
        "environment": ["HF_TOKEN", "HF_HOME", "FLEET_HISTORY_DB"], "volumes": ["/dev/shm:/dev/shm"]}
    if vendor == "nvidia":
        config["gpus"] = "all"
    elif vendor == "amd":
        config["devices"] = ["/dev/kfd", "/dev/dri"]
        config["add-groups"] = ["video"]
    return [{DOCKER_PLUGIN: config}]


def _soft_fail(options: CiOptions) -> bool | list[dict[str, int]]:
    return True if options.soft_fail else [{"exit_status": REGRESSION_EXIT}]


def _pool_step(tier: Tier, pool: str, cells: Sequence[Cell], options: CiOptions,
               if_changed: dict[str, list[str]] | None) -> dict[str, Any]:
    backend = _backend(cells, options)
    shards = shard_count(cells, options.num_shards)
    shard_label = " (shard %n)" if shards > 1 else ""
    install = _install(cells, backend, options)
    step: dict[str, Any] = {
        "label": f":vllm: spec-decode {tier.name} on {pool}{shard_label}",
        "key": f"fleet-{tier.name}-{pool}",
        "agents": {"queue": _queue(pool, options)},
        "commands": [*([install] if install else []),
                     _submit(tier, cells, options, backend=backend, shard="$$BUILDKITE_PARALLEL_JOB",
                             count="$$BUILDKITE_PARALLEL_JOB_COUNT" if shards > 1 else "1", pool=pool)],
        "timeout_in_minutes": shard_timeout_minutes(cells, shards),
        "artifact_paths": list(REPORT_GLOBS),
        "soft_fail": _soft_fail(options),
        "retry": copy.deepcopy(dict(AGENT_LOST_RETRY)),
    }
    if shards > 1:
        step["parallelism"] = shards
    if if_changed is not None:
        step["if_changed"] = if_changed
    plugins = _plugins(cells[0].hardware.vendor, options)
    if plugins:
        step["plugins"] = plugins
    return step


def _gates_on_changes(tier: Tier, options: CiOptions) -> bool:
    return options.if_changed if options.if_changed is not None else tier.schedule is None


def buildkite_pipeline(tier: Tier, cells: Sequence[Cell], options: CiOptions) -> dict[str, Any]:
    """A Buildkite pipeline: a sharded step per GPU pool on its agent queue, a `wait`, the merge, a Slack
    notification. Where the tier gates on changes, each step carries `if_changed` (Buildkite's own key,
    applied at `buildkite-agent pipeline upload`) from its variants' source_file_dependencies."""
    pools = _pools(cells)
    gate = _gates_on_changes(tier, options)
    run_steps = [_pool_step(tier, pool, pool_cells, options,
                            dependency_globs(_dependencies(pool_cells)) if gate else None)
                 for pool, pool_cells in pools.items()]
    merge_install = options.install if options.install is not None else "pip install -e ."  # judging only
    merge_step: dict[str, Any] = {
        "label": f":vllm: spec-decode {tier.name} verdict",
        "key": f"fleet-{tier.name}-merge",
        "agents": {"queue": _queue("cpu", options)},
        "commands": [
            *([merge_install] if merge_install else []),
            "buildkite-agent artifact download 'runs/**' .",
            (f"fleet merge runs/*/*/ --jobs {shlex.quote(options.jobs_dir)} --expect-all-cells "
             "--report-dir merged --format markdown; code=$$?; "
             "buildkite-agent annotate --context fleet --style info < merged/report.md; "
             "buildkite-agent artifact upload 'merged/*'; exit $$code"),
        ],
        "timeout_in_minutes": 10,
        "retry": copy.deepcopy(dict(AGENT_LOST_RETRY)),
    }
    if options.soft_fail:
        merge_step["soft_fail"] = True
    if gate:
        merge_step["if_changed"] = dependency_globs(_dependencies(cells))
    plugins = _plugins("cpu", options)
    if plugins:
        merge_step["plugins"] = plugins
    return {
        "steps": [*run_steps, {"wait": None, "continue_on_failure": True}, merge_step],
        "notify": [{"slack": options.slack_channel, "if": 'build.state == "failed"'}],
    }


def vllm_test_area(tier: Tier, cells: Sequence[Cell], options: CiOptions) -> dict[str, Any]:
    """The tier as a vLLM test area (a file for vLLM's .buildkite/test_areas/, the format of e.g.
    spec_decode.yaml there): one step per pool on vLLM's `device`, after vLLM's `image-build`, each
    running its cells on the step's own GPU in vLLM's image of the commit (the local backend), gated by
    `source_file_dependencies` as path prefixes, which is all vLLM's generator matches. A scheduled
    tier's steps are `optional`: vLLM runs those in its nightly builds only."""
    steps: list[dict[str, Any]] = []
    local = replace(options, backend="local")
    setup = _fleet_checkout(options)
    for pool, pool_cells in _pools(cells).items():
        if pool not in VLLM_DEVICES:
            raise ConfigError(f"vLLM's CI has no device known to fleet for pool {pool!r}", where="--tier",
                              fix="use `fleet ci buildkite --queue POOL=QUEUE` for a pool of your own")
        shards = shard_count(pool_cells, options.num_shards)
        step: dict[str, Any] = {
            "label": f":vllm: fleet spec-decode {tier.name} on {pool}{' %N' if shards > 1 else ''}",
            "key": f"fleet-spec-decode-{tier.name}-{pool}",
            "timeout_in_minutes": shard_timeout_minutes(pool_cells, shards),
        }
        device = VLLM_DEVICES[pool]
        if device is not None:
            step["device"] = device
        if shards > 1:
            step["parallelism"] = shards
        if tier.schedule is not None:
            step["optional"] = True
        if options.soft_fail:
            step["soft_fail"] = True
        step["source_file_dependencies"] = dependency_prefixes(_dependencies(pool_cells))
        step["commands"] = [*setup,
                            _submit(tier, pool_cells, local, backend="local",
                                    shard="$$BUILDKITE_PARALLEL_JOB",
                                    count="$$BUILDKITE_PARALLEL_JOB_COUNT" if shards > 1 else "1", pool=pool)]
        steps.append(step)
    return {"group": f"fleet spec-decode {tier.name}", "depends_on": ["image-build"], "steps": steps}


#: Where a vLLM test-area step clones fleet, under vLLM's working directory.
FLEET_CHECKOUT = "fleet-src"


def _fleet_checkout(options: CiOptions) -> list[str]:
    """A vLLM step's commands that bring fleet (its jobs/ and baselines/ too) into vLLM's image of the
    commit: cloned, installed constrained to what the image has (as images/cuda installs it, so vLLM's
    own dependencies never change), then entered."""
    if options.install is not None:
        return [options.install] if options.install else []
    if options.fleet_repo is None:
        raise ConfigError("a vLLM test-area step needs fleet's repository to clone", where="--fleet-repo",
                          fix="pass --fleet-repo URL [--fleet-ref REF], or --install CMD")
    repo, ref, checkout = (shlex.quote(options.fleet_repo), shlex.quote(options.fleet_ref), FLEET_CHECKOUT)
    return [f"git clone --quiet {repo} {checkout} && git -C {checkout} checkout --quiet {ref}",
            "python3 -m pip freeze > fleet-constraints.txt && python3 -m pip install --constraint "
            f"fleet-constraints.txt ./{checkout}",
            f"cd {checkout}"]


def github_workflow(tier: Tier, cells: Sequence[Cell], options: CiOptions) -> dict[str, Any]:
    """A GitHub Actions workflow: scheduled from the tier's cron, a matrix of shards, then the merge."""
    check_hosted_limit(cells, options)
    triggers: dict[str, Any] = {"workflow_dispatch": {}}
    if tier.schedule:
        triggers = {"schedule": [{"cron": tier.schedule}], **triggers}
    backend = _backend(cells, options)
    install = _install(cells, backend, options)

    def setup() -> list[dict[str, Any]]:
        return [
            {"uses": "actions/checkout@v5"},
            {"uses": "actions/setup-python@v6", "with": {"python-version": options.python_version}},
            *([{"run": install}] if install else []),
        ]

    shards = shard_count(cells, options.num_shards)
    run_job = {
        "name": f"spec-decode {tier.name} shard ${{{{ matrix.shard }}}}",
        "runs-on": options.runs_on,
        "timeout-minutes": shard_timeout_minutes(cells, shards),
        "strategy": {"fail-fast": False, "matrix": {"shard": list(range(shards))}},
        "steps": [
            *setup(),
            {"name": "Run the shard",
             "run": _submit(tier, cells, options, backend=backend, shard="${{ matrix.shard }}",
                            count=str(shards))},
            {"name": "Keep the reports", "if": "always()", "uses": "actions/upload-artifact@v6",
             "with": {"name": "fleet-shard-${{ matrix.shard }}",
                      "path": "\n".join(glob.replace("**", "*") for glob in REPORT_GLOBS),
                      "if-no-files-found": "ignore"}},
        ],
    }
    merge_job = {
        "name": f"spec-decode {tier.name} verdict",
        "needs": "shards",
        "if": "always()",
        "runs-on": options.runs_on,
        "timeout-minutes": 10,
        "steps": [
            *setup(),
            {"uses": "actions/download-artifact@v7", "with": {"pattern": "fleet-shard-*", "path": "shards"}},
            {"name": "Merge the shards' verdicts", "shell": "bash",
             "env": {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}",
                     "FLEET_ALERT_WEBHOOK": "${{ secrets.FLEET_ALERT_WEBHOOK }}"},
             "run": (f"set -o pipefail; fleet merge shards/*/*/ --jobs {shlex.quote(options.jobs_dir)} "
                     "--expect-all-cells --format markdown --report-dir merged "
                     '--github-issue-repo "$GITHUB_REPOSITORY" | tee -a "$GITHUB_STEP_SUMMARY"')},
            {"if": "always()", "uses": "actions/upload-artifact@v6",
             "with": {"name": "fleet-report", "path": "merged/"}},
        ],
    }
    return {
        "name": f"fleet {tier.name}",
        "on": triggers,
        "permissions": {"contents": "read", "issues": "write"},
        "jobs": {"shards": run_job, "merge": merge_job},
    }
