"""CI pipelines that run a tier in shards and merge the verdict: Buildkite (vLLM's CI) and GitHub Actions.

vLLM's CI is Buildkite; forks and smaller projects use GitHub Actions. Both get the same shape: N
parallel jobs each running `fleet submit --shard-id I --num-shards N`, their reports kept as
artifacts, then one merge job that runs `fleet merge` over them and publishes the markdown report. The
generators are pure (a tier and its cells in, a document out) so that tests check the documents'
structure without a CI system; the step timeout comes from the tier's per-cell timeout and the number
of cells the fullest shard holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleet.errors import ConfigError
from fleet.model import Cell, Tier
from fleet.plan.sharding import assign_shards, expected_costs

__all__ = ["CiOptions", "buildkite_pipeline", "github_workflow", "shard_timeout_minutes"]

#: What every shard's run directory keeps as CI artifacts: its reports, and what `fleet merge` judges
#: again across shards (each cell's description and results) and costs (the Jobs' spans).
REPORT_GLOBS: tuple[str, ...] = ("runs/**/report.json", "runs/**/junit.xml", "runs/**/report.md",
                                 "runs/**/jobs.json", "runs/**/cells/**/cell.json",
                                 "runs/**/cells/**/result.attempt-*.json")
#: Time beyond the cells' own timeouts: image pulls, scheduling, the controller's own start.
SLACK_MINUTES = 15


@dataclass(frozen=True)
class CiOptions:
    num_shards: int = 1
    slack_channel: str = "#spec-decode-ci"
    runs_on: str = "ubuntu-latest"
    python_version: str = "3.11"
    agent_queue: str | None = None


def shard_timeout_minutes(cells: Sequence[Cell], num_shards: int) -> int:
    """Minutes the fullest shard may take when every one of its cells runs to its timeout."""
    if not cells:
        return SLACK_MINUTES
    costs = expected_costs(cells)
    fullest = max(sum(costs[cell_id] for cell_id in shard) for shard in assign_shards(costs, num_shards))
    return math.ceil(fullest / 60) + SLACK_MINUTES


#: GitHub-hosted runners stop a job after 6 hours; self-hosted runners allow days.
HOSTED_JOB_LIMIT_MINUTES = 360
_HOSTED_LABELS = ("ubuntu-", "windows-", "macos-")


def check_hosted_limit(cells: Sequence[Cell], options: CiOptions) -> None:
    """A shard that may outlast a GitHub-hosted runner's job limit is refused, with the fewest shards
    that fit (or a self-hosted runner) as the way out."""
    if not options.runs_on.startswith(_HOSTED_LABELS):
        return
    minutes = shard_timeout_minutes(cells, options.num_shards)
    if minutes <= HOSTED_JOB_LIMIT_MINUTES:
        return
    enough = next((n for n in range(options.num_shards + 1, len(cells) + 1)
                   if shard_timeout_minutes(cells, n) <= HOSTED_JOB_LIMIT_MINUTES), None)
    shards = f"--num-shards {enough}, " if enough else ""
    raise ConfigError(f"a shard may run {minutes} minutes, and GitHub-hosted runners ({options.runs_on}) "
                      f"stop a job at {HOSTED_JOB_LIMIT_MINUTES}", where="--num-shards/--runs-on",
                      fix=f"use {shards}or --runs-on a self-hosted runner's label")


def _backend(cells: Sequence[Cell]) -> str:
    return "local" if all(cell.hardware.vendor == "cpu" for cell in cells) else "kube"


def _install(cells: Sequence[Cell]) -> str:
    """What a shard's runner installs: the kubernetes client to drive the cluster, or the reference
    engine's torch (pinned to its CPU wheel, as the README installs it) to run a CPU tier itself."""
    if _backend(cells) == "kube":
        return "pip install -e '.[kube]'"
    return "pip install torch==2.13.0 -e '.[local]'"


def _dependencies(cells: Sequence[Cell]) -> list[str]:
    return sorted({pattern for cell in cells for pattern in cell.variant.source_file_dependencies})


def _submit(tier: Tier, cells: Sequence[Cell], shard: str, count: str) -> str:
    return (f"fleet submit --tier {tier.name} --backend {_backend(cells)} --shard-id {shard} "
            f"--num-shards {count} --format markdown")


def buildkite_pipeline(tier: Tier, cells: Sequence[Cell], options: CiOptions) -> dict[str, Any]:
    """A Buildkite pipeline: the sharded run (`parallelism`), a `wait`, the merge, a Slack notification.

    `source_file_dependencies` is vLLM's own step key (its pipeline generator runs a step only when a
    changed file matches); Buildkite itself does not read it.
    """
    run_step: dict[str, Any] = {
        "label": f":vllm: spec-decode {tier.name} (shard %n)",
        "key": f"fleet-{tier.name}",
        "command": _submit(tier, cells, "$$BUILDKITE_PARALLEL_JOB", "$$BUILDKITE_PARALLEL_JOB_COUNT"),
        "parallelism": options.num_shards,
        "timeout_in_minutes": shard_timeout_minutes(cells, options.num_shards),
        "artifact_paths": list(REPORT_GLOBS),
        "source_file_dependencies": _dependencies(cells),
    }
    merge_step: dict[str, Any] = {
        "label": f":vllm: spec-decode {tier.name} verdict",
        "key": f"fleet-{tier.name}-merge",
        "command": ("buildkite-agent artifact download 'runs/**' . && "
                    "{ fleet merge runs/*/ --expect-all-cells --report-dir merged --format markdown; "
                    "code=$$?; "
                    "buildkite-agent annotate --context fleet --style info < merged/report.md; "
                    "buildkite-agent artifact upload 'merged/*'; exit $$code; }"),
        "timeout_in_minutes": 10,
    }
    if options.agent_queue:
        for step in (run_step, merge_step):
            step["agents"] = {"queue": options.agent_queue}
    return {
        "steps": [run_step, {"wait": None, "continue_on_failure": True}, merge_step],
        "notify": [{"slack": options.slack_channel, "if": 'build.state == "failed"'}],
    }


def github_workflow(tier: Tier, cells: Sequence[Cell], options: CiOptions) -> dict[str, Any]:
    """A GitHub Actions workflow: scheduled from the tier's cron, a matrix of shards, then the merge."""
    check_hosted_limit(cells, options)
    triggers: dict[str, Any] = {"workflow_dispatch": {}}
    if tier.schedule:
        triggers = {"schedule": [{"cron": tier.schedule}], **triggers}

    def setup() -> list[dict[str, Any]]:
        return [
            {"uses": "actions/checkout@v4"},
            {"uses": "actions/setup-python@v5", "with": {"python-version": options.python_version}},
            {"run": _install(cells)},
        ]

    shards = list(range(options.num_shards))
    run_job = {
        "name": f"spec-decode {tier.name} shard ${{{{ matrix.shard }}}}",
        "runs-on": options.runs_on,
        "timeout-minutes": shard_timeout_minutes(cells, options.num_shards),
        "strategy": {"fail-fast": False, "matrix": {"shard": shards}},
        "steps": [
            *setup(),
            {"name": "Run the shard",
             "run": _submit(tier, cells, "${{ matrix.shard }}", str(options.num_shards))},
            {"name": "Keep the reports", "if": "always()", "uses": "actions/upload-artifact@v4",
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
            {"uses": "actions/download-artifact@v4", "with": {"pattern": "fleet-shard-*", "path": "shards"}},
            {"name": "Merge the shards' verdicts", "shell": "bash",
             "env": {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}",
                     "FLEET_ALERT_WEBHOOK": "${{ secrets.FLEET_ALERT_WEBHOOK }}"},
             "run": ('set -o pipefail; fleet merge shards/*/*/ --expect-all-cells --format markdown '
                     '--report-dir merged --github-issue-repo "$GITHUB_REPOSITORY" '
                     '| tee -a "$GITHUB_STEP_SUMMARY"')},
            {"if": "always()", "uses": "actions/upload-artifact@v4",
             "with": {"name": "fleet-report", "path": "merged/"}},
        ],
    }
    return {
        "name": f"fleet {tier.name}",
        "on": triggers,
        "permissions": {"contents": "read", "issues": "write"},
        "jobs": {"shards": run_job, "merge": merge_job},
    }
