"""`fleet merge`: the shards of a sharded run become one report, one verdict, one cost and one exit code.

How the shards are judged again as one run: fleet.run.rejudge.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleet.cli._options import (
    baselines_option,
    format_option,
    hardware_option,
    jobs_option,
    json_option,
    notify_options,
    output_format,
    price_option,
    report_dir_option,
    variant_option,
)
from fleet.report import Format
from fleet.run.rejudge import MergeRequest
from fleet.run.rejudge import merge as merge_shards


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--expect-all-cells", is_flag=True,
              help="Every cell of the shards' tier (in --jobs) must be in a shard; a missing one is ERROR.")
@click.option("--verdicts-only", is_flag=True,
              help="Join the shards' verdicts as they are instead of judging their results again "
                   "(error control then holds per shard only).")
@jobs_option
@hardware_option
@variant_option
@baselines_option
@price_option
@json_option
@format_option
@report_dir_option
@notify_options
def merge(run_dirs: tuple[Path, ...], expect_all_cells: bool, verdicts_only: bool, jobs_dir: Path,
          hardware: str | None, variant: str | None,
          baselines_dir: Path, price_items: tuple[str, ...], as_json: bool, fmt: Format | None,
          report_dir: Path | None, alert_webhook: str | None, report_url: str | None,
          github_issue_repo: str | None) -> None:
    """Join a sharded run's shards (their run directories) into one report, verdict and exit code.

    With --expect-all-cells, the cells expected are the tier's, filtered by the --hardware and --variant
    the shards were submitted with.
    """
    done = merge_shards(MergeRequest(
        run_dirs=run_dirs, fmt=output_format(as_json, fmt), expect_all_cells=expect_all_cells,
        verdicts_only=verdicts_only, jobs_dir=jobs_dir, hardware=hardware, variant=variant,
        baselines_dir=baselines_dir, price_items=price_items, report_dir=report_dir,
        alert_webhook=alert_webhook, report_url=report_url, github_issue_repo=github_issue_repo))
    click.echo(done.stdout, nl=False)
    sys.exit(done.exit_code)
