"""`fleet suite run`: what a Job's container (or a local subprocess) runs for one cell."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleet.suite.runner import run_cell_file


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
    sys.exit(run_cell_file(cell_path, out_path, reference_cache))
