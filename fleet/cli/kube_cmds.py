"""The cluster verbs: `fleet resume RUN_ID` and `fleet images build`."""

from __future__ import annotations

from pathlib import Path

import click

from fleet.cli._options import notify_options, price_option
from fleet.plan.images import DEFAULT_REPOSITORY, WHEEL_INDEX_TEMPLATE, build_plan
from fleet.report import FORMATS, Format
from fleet.run.common import history_db_in
from fleet.run.deliver import Delivery, catalog_prices, github_target
from fleet.run.images import build_image
from fleet.run.kube import resume_run
from fleet.run.plan import BaselineSet


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
@click.option("--history-db", default=None, envvar="FLEET_HISTORY_DB",
              help="Record the run in this history, as fleet submit would have ('' skips it) "
                   "[default: <runs-dir>/history.sqlite].")
@price_option
@notify_options
def resume(run_id: str, runs_dir: Path, baselines_dir: Path, kubeconfig: str | None,
           kube_context_name: str | None, fmt: Format, jobs_dir: Path, history_db: str | None,
           price_items: tuple[str, ...], alert_webhook: str | None, report_url: str | None,
           github_issue_repo: str | None) -> None:
    """Finish a kube run after the controller stopped: adopt its Jobs, gather, retry, report, record and
    alert, judged with the rule, error control, family and rerun budget it was submitted with."""
    run_dir = runs_dir / run_id
    history = history_db_in(runs_dir, history_db) or None
    delivery = Delivery(fmt, [run_dir], catalog_prices(jobs_dir, price_items), history, alert_webhook,
                        report_url, github_target(github_issue_repo))
    done = resume_run(run_dir, BaselineSet(baselines_dir), delivery=delivery, kubeconfig=kubeconfig,
                      kube_context_name=kube_context_name)
    click.echo(done.stdout, nl=False)
    raise SystemExit(done.exit_code)


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
        build_image(plan, push=push)
