"""Checks made before any cell runs, so that a bad input costs nothing and writes nothing.

Every model the reference engine will load from this machine must exist (and every baseline the run
will be judged against is read and validated: fleet.run.plan.BaselineSet.read_all): discovering either
after an hour of GPU time, or with half a run directory written, is what this avoids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fleet.errors import ConfigError
from fleet.model import Cell
from fleet.suite.model_refs import BUNDLED_PREFIX, resolve_model


def _local_model_ref(ref: str) -> bool:
    return ref.startswith((BUNDLED_PREFIX, "/", "./", "../", "~"))


def check_models(cells: Sequence[Cell], jobs_dir: Path = Path("jobs"), *, paths: bool = True) -> None:
    """Bundled names and local paths must exist here; Hugging Face ids are the engine's business.
    `paths=False` checks the bundled names alone: they name models inside fleet, the same here as in a
    Job's image, where a local path may be the cluster's and not this machine's."""
    for cell in cells:
        for field, ref in (("model", cell.model), ("draft_model", cell.draft_model)):
            if ref is None or not (paths or ref.startswith(BUNDLED_PREFIX)):
                continue
            where = f"{(jobs_dir / cell.tier).as_posix()}.yaml: cell {cell.id}: {field}"
            try:
                resolved = resolve_model(ref)
            except ConfigError as err:
                raise ConfigError(err.what, where=where, cause=err.cause, fix=err.fix) from err
            if _local_model_ref(ref) and not (Path(resolved).expanduser() / "config.json").is_file():
                raise ConfigError(f"no model at {resolved} (no config.json there)", where=where,
                                  fix="point it at a Hugging Face model folder, or use a bundled: model")
