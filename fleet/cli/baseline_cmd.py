"""`fleet baseline record`: measure each cell N times and write reviewed baseline files."""

from __future__ import annotations

import difflib
import shlex
import sys
from pathlib import Path

import click

from fleet.baselines.record import record_baseline
from fleet.baselines.store import baseline_path, baseline_to_json, save_baseline
from fleet.cli._common import ensure_writable_dir, stderr
from fleet.cli._options import baselines_option, hardware_option, jobs_option, variant_option
from fleet.cli._progress import cell_progress
from fleet.errors import ConfigError
from fleet.model import Cell, RunResult, model_slug
from fleet.run.plan import plan_cells, read_result
from fleet.run.preflight import check_models
from fleet.run.record import measure_replicates


@click.group()
def baseline() -> None:
    """Record and review baselines."""


def _targets(cells: list[Cell], root: Path, update: bool) -> dict[str, Path]:
    paths = {cell.id: baseline_path(root, cell.hardware.name, cell.variant.name, model_slug(cell.model))
             for cell in cells}
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not update:
        raise ConfigError(f"{len(existing)} baseline file(s) exist, e.g. {existing[0]}",
                          cause="recording would overwrite reviewed baselines",
                          fix="pass --update to replace them (the diff is printed for review)")
    return paths


def _diff(path: Path, new_text: str) -> str:
    old = path.read_text().splitlines(keepends=True) if path.exists() else []
    return "".join(difflib.unified_diff(old, new_text.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


@baseline.command("record")
@click.option("--tier", required=True)
@click.option("--runs", "replicates", type=click.IntRange(min=2), default=5, show_default=True,
              help="Replicates per cell, each a separate run (separate engine processes).")
@click.option("--update", is_flag=True, help="Overwrite existing baseline files.")
@jobs_option
@baselines_option
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@hardware_option
@variant_option
def record(tier: str, replicates: int, update: bool, jobs_dir: Path, baselines_dir: Path, runs_dir: Path,
           hardware: str | None, variant: str | None) -> None:
    """Run each cell of a tier N times and write baselines/<hardware>/<variant>__<model>.json."""
    cells = plan_cells(jobs_dir, tier, hardware, variant)
    check_models(cells, jobs_dir)
    targets = _targets(cells, baselines_dir, update)
    ensure_writable_dir(runs_dir, option="--runs-dir")
    for path in targets.values():
        ensure_writable_dir(path.parent, option="--baselines")
    collected = measure_replicates(cells, replicates, tier=tier, runs_dir=runs_dir, progress=cell_progress)
    if not isinstance(collected, dict):
        sys.exit(int(collected))
    options = ["--tier", tier, "--runs", str(replicates)]
    options += ["--hardware", hardware] if hardware else []
    options += ["--variant", variant] if variant else []
    command = shlex.join(["fleet", "baseline", "record", *options])
    _write(cells, collected, targets, command, baselines_dir)


def _write(cells: list[Cell], collected: dict[str, list[RunResult]], targets: dict[str, Path], command: str,
           baselines_dir: Path, note: str = "") -> None:
    written = 0
    for cell in cells:
        results = collected[cell.id]
        if any(result.status == "skipped" for result in results):
            stderr.print(f"{cell.id}: skipped ({results[0].skip_reason}); no baseline")
            continue
        document = record_baseline(results, command=command, note=note)
        path = targets[cell.id]
        # The diff shows exactly the text save_baseline writes, so the review is of the real file.
        click.echo(_diff(path, baseline_to_json(document)) or f"{path}: unchanged")
        save_baseline(path, document)
        written += 1
    stderr.print(f"wrote {written} baseline file(s) under {baselines_dir}; review the diff above")


@baseline.command("from-results")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--update", is_flag=True, help="Overwrite existing baseline files.")
@click.option("--note", default="", help="How the results were measured, for reviewers (added to notes).")
@baselines_option
def from_results(results: tuple[Path, ...], update: bool, note: str, baselines_dir: Path) -> None:
    """Write baselines from RunResult files measured elsewhere (Jobs on a GPU pool, evidence/): >= 2 per cell.

    Each file must be a successful run of its cell; the files of one cell are its replicates.
    """
    collected: dict[str, list[RunResult]] = {}
    cells: dict[str, Cell] = {}
    for path in results:
        document = read_result(path)
        if document.status != "ok":
            raise ConfigError(f"a result of status {document.status!r} cannot be a baseline replicate",
                              where=str(path),
                              fix="record from successful runs only")
        cells.setdefault(document.cell.id, document.cell)
        if document.cell != cells[document.cell.id]:
            raise ConfigError(f"cell {document.cell.id} differs from the other files of that cell",
                              where=str(path), cause="replicates of different configurations")
        collected.setdefault(document.cell.id, []).append(document)
    for cell_id, replicates in collected.items():
        if len(replicates) < 2:
            raise ConfigError(f"only one result for cell {cell_id}", cause="a spread needs replicates",
                              fix="pass at least two results of every cell")
    targets = _targets(list(cells.values()), baselines_dir, update)
    for path in targets.values():
        ensure_writable_dir(path.parent, option="--baselines")
    command = shlex.join(["fleet", "baseline", "from-results", *(str(path) for path in results)])
    _write(list(cells.values()), collected, targets, command, baselines_dir, note)
