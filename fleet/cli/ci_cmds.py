"""`fleet ci`: print the CI pipeline that runs a tier in shards and merges their verdict."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from fleet.cli.run_cmds import jobs_option, plan_cells
from fleet.plan.catalog import load_tier
from fleet.plan.pipelines import CiOptions, buildkite_pipeline, github_workflow

num_shards_option = click.option("--num-shards", type=click.IntRange(min=1), default=4, show_default=True,
                                 help="Parallel jobs the tier's cells are split across.")
tier_option = click.option("--tier", required=True, help="Tier the pipeline runs: nightly, weekly, ...")


@click.group()
def ci() -> None:
    """CI pipelines that run a tier in shards and merge their verdict."""


def _dump(document: object) -> None:
    click.echo(yaml.safe_dump(document, sort_keys=False, width=120), nl=False)


@ci.command()
@tier_option
@num_shards_option
@jobs_option
@click.option("--slack-channel", default="#spec-decode-ci", show_default=True,
              help="Slack channel Buildkite notifies when the build fails.")
@click.option("--agent-queue", default=None, help="Buildkite agent queue of the steps.")
def buildkite(tier: str, num_shards: int, jobs_dir: Path, slack_channel: str,
              agent_queue: str | None) -> None:
    """Buildkite pipeline YAML (pipe it to `buildkite-agent pipeline upload`)."""
    cells = plan_cells(jobs_dir, tier, None, None)
    options = CiOptions(num_shards=num_shards, slack_channel=slack_channel, agent_queue=agent_queue)
    _dump(buildkite_pipeline(load_tier(jobs_dir, tier), cells, options))


@ci.command()
@tier_option
@num_shards_option
@jobs_option
@click.option("--runs-on", default="ubuntu-latest", show_default=True,
              help="Runner label of the jobs (a self-hosted runner that can reach the cluster).")
def github(tier: str, num_shards: int, jobs_dir: Path, runs_on: str) -> None:
    """GitHub Actions workflow YAML (save it as .github/workflows/fleet-<tier>.yml)."""
    cells = plan_cells(jobs_dir, tier, None, None)
    options = CiOptions(num_shards=num_shards, runs_on=runs_on)
    _dump(github_workflow(load_tier(jobs_dir, tier), cells, options))
