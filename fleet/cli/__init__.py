"""fleet's command line: parse, call the core, render, exit with the code the outcome decides.

Exit codes: 0 every cell passed, 1 a regression was found, 2 a usage or configuration error,
3 an infrastructure failure that retries could not clear.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from typing import Any

import click

from fleet.cli import baseline_cmd as baseline_cmd
from fleet.cli import bisect_cmd as bisect_cmd
from fleet.cli import ci_cmds as ci_cmds
from fleet.cli import docs_cmd as docs_cmd
from fleet.cli import history_cmds as history_cmds
from fleet.cli import kube_cmds as kube_cmds
from fleet.cli import merge_cmd as merge_cmd
from fleet.cli import run_cmds as run_cmds
from fleet.cli import suite_cmd as suite_cmd
from fleet.cli._common import fleet_version
from fleet.errors import ExitCode, FleetError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "FLEET"})
@click.version_option(fleet_version(), prog_name="fleet")
def cli() -> None:
    """Catch speculative-decoding regressions in vLLM across a fleet of GPUs."""


cli.add_command(run_cmds.plan)
cli.add_command(run_cmds.submit)
cli.add_command(run_cmds.judge)
cli.add_command(merge_cmd.merge)
cli.add_command(run_cmds.schema)
cli.add_command(suite_cmd.suite)
cli.add_command(baseline_cmd.baseline)
cli.add_command(bisect_cmd.bisect)
cli.add_command(history_cmds.history)
cli.add_command(history_cmds.trends_cmd)
cli.add_command(history_cmds.report)
cli.add_command(history_cmds.select_cmd)
cli.add_command(kube_cmds.resume)
cli.add_command(kube_cmds.images)
cli.add_command(ci_cmds.ci)
cli.add_command(docs_cmd.docs)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the Ctrl-C path: children stopped, "aborted", exit 3


def main(argv: list[str] | None = None) -> Any:
    # CI systems cancel a job with SIGTERM: it must stop the cells' processes and say so as Ctrl-C does,
    # not die with 143 and engines left holding the GPU.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _main(argv: list[str] | None) -> Any:
    try:
        return cli.main(args=argv, prog_name="fleet", standalone_mode=False)
    except FleetError as err:
        click.echo(err.line(), err=True)
        sys.exit(int(err.exit_code))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(int(ExitCode.INFRASTRUCTURE))
    except click.UsageError as err:  # one line, as every other error: what, where, what next
        where = err.ctx.command_path if err.ctx is not None else "fleet"
        message = " ".join(err.format_message().split())
        click.echo(f"usage error: {where}: {message} — next: see `{where} --help`", err=True)
        sys.exit(int(ExitCode.CONFIG))
    except click.ClickException as err:
        err.show()
        sys.exit(int(ExitCode.CONFIG))
    except SystemExit:
        raise
    except Exception:  # a bug in fleet: never let Python's exit 1 pose as "regression found"
        traceback.print_exc()
        click.echo("internal error: this is a bug in fleet; please report it with the traceback above",
                   err=True)
        sys.exit(int(ExitCode.INFRASTRUCTURE))
