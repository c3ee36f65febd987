"""The options several verbs share, defined once so that a flag means the same in every command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fleet.errors import ConfigError
from fleet.judge import METHODS, RULES
from fleet.report import FORMATS, Format

DEFAULT_DB = "runs/history.sqlite"

jobs_option = click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"),
                           show_default=True, help="Directory with hardware.yaml, variants.yaml and tiers.")
baselines_option = click.option("--baselines", "baselines_dir", type=click.Path(path_type=Path),
                                default=Path("baselines"), show_default=True,
                                help="Root of the baseline files: <hardware>/<variant>__<model>.json.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
hardware_option = click.option("--hardware", default=None, help="Only cells on this hardware pool.")
variant_option = click.option("--variant", default=None, help="Only cells of this variant.")
rule_option = click.option("--rule", type=click.Choice(RULES), default="auto", show_default=True,
                           help="auto: statistical tests where the baseline recorded a spread, the RFC's "
                                "expected ± tolerance_pct (harmful side only) elsewhere; rfc: the RFC "
                                "rule everywhere.")
error_control_option = click.option("--error-control", type=click.Choice(METHODS), default="holm",
                                    show_default=True,
                                    help="Across all cells x metrics: holm (family-wise) or bh (false "
                                         "discovery rate).")
format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                             help="Report on stdout: text (RFC layout, default), json, junit, markdown.")
report_dir_option = click.option("--report-dir", type=click.Path(path_type=Path), default=None,
                                 help="Also write every format there: report.txt, report.json, junit.xml, "
                                      "report.md.")
price_option = click.option("--price", "price_items", multiple=True, metavar="POOL=USD",
                            help="Price per GPU-hour of a pool, over jobs/hardware.yaml (repeatable).")
db_option = click.option("--db", default=DEFAULT_DB, show_default=True, envvar="FLEET_HISTORY_DB",
                         help="History database: a SQLite file, or a SQLAlchemy URL "
                              "(postgresql+psycopg://host/fleet) shared by a team.")


def output_format(as_json: bool, fmt: Format | None) -> Format:
    """The report format on stdout: --json is --format json; asking for two different ones is an error."""
    if as_json and fmt not in (None, "json"):
        raise ConfigError(f"--json and --format {fmt} ask for two formats on stdout", where="--json/--format",
                          fix="keep one (--report-dir writes all four formats to files)")
    return "json" if as_json else fmt or "text"


def _stacked(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function
    return apply


#: --alert-webhook, --report-url and --github-issue-repo, shared by submit, resume and merge.
notify_options = _stacked([
    click.option("--alert-webhook", default=None, envvar="FLEET_ALERT_WEBHOOK",
                 help="Slack-compatible incoming webhook, posted to when a cell FAILs."),
    click.option("--report-url", default=None, envvar="FLEET_REPORT_URL",
                 help="Where this run's HTML page is published, {run_id} filled in; alerts link to it."),
    click.option("--github-issue-repo", default=None, envvar="FLEET_GITHUB_REPO", metavar="OWNER/NAME",
                 help="On FAIL, open (or comment on) the tier's issue in this repository; the token "
                      "comes from FLEET_GITHUB_TOKEN or GITHUB_TOKEN, never from a flag."),
])

#: `fleet submit`'s options for --backend kube (ignored by the local backend).
kube_options = _stacked([
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
    click.option("--dataset-pvc", default="fleet-datasets", show_default=True,
                 help="kube: PVC mounted read-only at /var/lib/fleet/datasets for cells whose prompts live "
                      "there (docs/operating.md: Datasets)."),
    click.option("--kubeconfig", default=None,
                 help="kube: default in-cluster credentials, else $KUBECONFIG."),
    click.option("--context", "kube_context_name", default=None, help="kube: kubeconfig context."),
])
