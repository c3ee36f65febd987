"""`fleet suite run`: what a Job's container (or a local subprocess) runs for one cell."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

import click

from fleet.suite.runner import run_cell_file

PR_SET_PDEATHSIG = 1


def exit_with_controller() -> None:
    """Under the local backend, die with the controller that started us, as a Job dies with its run.

    Without this a killed `fleet submit` leaves its suite processes computing for nobody. The local
    backend names itself in FLEET_CONTROLLER_PID; in a Kubernetes Job the variable is absent.
    """
    parent = os.environ.get("FLEET_CONTROLLER_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the controller died before the request took effect
        sys.exit(3)


@click.group()
def suite() -> None:
    """The spec-decode suite, as it runs inside a Job."""


@suite.command("run")
@click.option("--cell", "cell_path", required=True, type=click.Path(path_type=Path),
              help="The cell document (see `fleet schema cell`).")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Where to write the RunResult document.")
@click.option("--reference-cache", type=click.Path(path_type=Path), default=None,
              help="Directory shared by a run's cells: each model's non-speculative run happens once.")
def run(cell_path: Path, out_path: Path, reference_cache: Path | None) -> None:
    """Run one cell: the reference (or its cached copy), the speculative run, the metrics."""
    exit_with_controller()
    sys.exit(run_cell_file(cell_path, out_path, reference_cache))
