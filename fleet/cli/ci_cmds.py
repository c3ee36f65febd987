"""`fleet ci`: print the CI pipeline that runs a tier in shards and merges their verdict."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from fleet.cli._options import jobs_option
from fleet.errors import ConfigError
from fleet.plan.catalog import load_tier
from fleet.plan.pipelines import CiOptions, buildkite_pipeline, github_workflow, vllm_test_area
from fleet.plan.vllm_ci import VLLM_QUEUES
from fleet.run.plan import plan_cells

num_shards_option = click.option("--num-shards", type=click.IntRange(min=1), default=4, show_default=True,
                                 help="Parallel jobs the tier's cells (each pool's, on Buildkite) are split "
                                      "across; never more than there are cells.")
tier_option = click.option("--tier", required=True, help="Tier the pipeline runs: nightly, weekly, ...")
install_option = click.option("--install", default=None,
                              help="Command a step runs before fleet ('' for none, e.g. an image that has "
                                   "fleet). [default: what the backend needs, e.g. pip install -e '.[kube]']")
soft_fail_option = click.option("--soft-fail", is_flag=True,
                                help="Every step soft-fails: the verdict is shown without failing the build "
                                     "(a regression always soft-fails its shard; the verdict step judges).")


@click.group()
def ci() -> None:
    """CI pipelines that run a tier in shards and merge their verdict."""


def _dump(document: object) -> None:
    click.echo(yaml.safe_dump(document, sort_keys=False, width=120), nl=False)


def _queues(items: tuple[str, ...]) -> dict[str, str]:
    queues: dict[str, str] = {}
    for item in items:
        pool, sep, queue = item.partition("=")
        if not sep or not pool or not queue:
            raise ConfigError(f"--queue {item!r} is not POOL=QUEUE", where="--queue",
                              fix="e.g. --queue l4=my_l4_queue")
        queues[pool] = queue
    return queues


@ci.command()
@tier_option
@num_shards_option
@jobs_option
@click.option("--slack-channel", default="#spec-decode-ci", show_default=True,
              help="Slack channel Buildkite notifies when the build fails.")
@click.option("--queue", "queue_items", multiple=True, metavar="POOL=QUEUE",
              help="Agent queue of a pool's steps (the merge runs on the cpu pool's). Defaults: "
                   + ", ".join(f"{pool}={queue}" for pool, queue in VLLM_QUEUES.items()) + " (vLLM's).")
@click.option("--backend", type=click.Choice(["kube", "local"]), default=None,
              help="kube: a pool's step drives its Jobs in the cluster; local: the step's agent runs its "
                   "cells on its own GPUs. [default: kube, or local for a CPU-only tier]")
@click.option("--image", default=None,
              help="Run every step in this image (Buildkite's Docker plugin); {vllm_version} is filled in.")
@install_option
@click.option("--vllm-version", default="$BUILDKITE_COMMIT", show_default=True,
              help="The vLLM build under test: the kube Jobs' image tag and --image's {vllm_version}.")
@soft_fail_option
@click.option("--if-changed/--always", "if_changed", default=None,
              help="Run the steps only when a file the variants depend on changed (Buildkite's "
                   "if_changed). [default: for a tier without a schedule]")
def buildkite(tier: str, num_shards: int, jobs_dir: Path, slack_channel: str, queue_items: tuple[str, ...],
              backend: str | None, image: str | None, install: str | None, vllm_version: str,
              soft_fail: bool, if_changed: bool | None) -> None:
    """Buildkite pipeline YAML (pipe it to `buildkite-agent pipeline upload`)."""
    cells = plan_cells(jobs_dir, tier, None, None)
    options = CiOptions(num_shards=num_shards, slack_channel=slack_channel, jobs_dir=str(jobs_dir),
                        queues=_queues(queue_items), backend=backend, image=image, install=install,
                        vllm_version=vllm_version, soft_fail=soft_fail, if_changed=if_changed)
    _dump(buildkite_pipeline(load_tier(jobs_dir, tier), cells, options))


@ci.command("vllm-test-area")
@tier_option
@num_shards_option
@jobs_option
@click.option("--fleet-repo", default=None,
              help="Repository URL of fleet, which each step clones into vLLM's image (jobs/ and baselines/ "
                   "with it).")
@click.option("--fleet-ref", default="main", show_default=True, help="Revision of --fleet-repo to run.")
@install_option
@soft_fail_option
def vllm_test_area_cmd(tier: str, num_shards: int, jobs_dir: Path, fleet_repo: str | None, fleet_ref: str,
                       install: str | None, soft_fail: bool) -> None:
    """A vLLM test-area file (for vLLM's .buildkite/test_areas/): a step per pool on vLLM's devices,
    running its cells on the step's GPU in vLLM's image of the commit."""
    cells = plan_cells(jobs_dir, tier, None, None)
    options = CiOptions(num_shards=num_shards, jobs_dir=str(jobs_dir), install=install, soft_fail=soft_fail,
                        fleet_repo=fleet_repo, fleet_ref=fleet_ref)
    _dump(vllm_test_area(load_tier(jobs_dir, tier), cells, options))


@ci.command()
@tier_option
@num_shards_option
@jobs_option
@click.option("--runs-on", default="ubuntu-latest", show_default=True,
              help="Runner label of the jobs (a self-hosted runner that can reach the cluster).")
def github(tier: str, num_shards: int, jobs_dir: Path, runs_on: str) -> None:
    """GitHub Actions workflow YAML (save it as .github/workflows/fleet-<tier>.yml)."""
    cells = plan_cells(jobs_dir, tier, None, None)
    options = CiOptions(num_shards=num_shards, runs_on=runs_on, jobs_dir=str(jobs_dir))
    _dump(github_workflow(load_tier(jobs_dir, tier), cells, options))
