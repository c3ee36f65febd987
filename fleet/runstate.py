"""runs/<run-id>/run.json: what a run is, written before its first Job, so any controller can resume it.

The cells are kept by value (a later edit of jobs/ must not change a run in flight) together with the
render context, so a resumed run renders byte-identical Jobs and its retries land on the same pools.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field

from fleet.documents import read_document
from fleet.model import Cell
from fleet.model._base import Strict
from fleet.render import RenderContext

RUN_FILE = "run.json"


class RunState(Strict):
    schema_version: Literal[1] = 1
    run_id: str
    tier: str
    backend: str
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    kube: RenderContext | None = None
    cells: list[Cell] = Field(min_length=1)
    #: `fleet submit --max-runs`: `fleet resume` reruns and judges under the same budget (None: the default).
    max_runs: int | None = None


def write_run_state(run_dir: Path, state: RunState) -> Path:
    """Write run.json atomically (a half-written file would make the run unresumable)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(state.model_dump_json(indent=2) + "\n")
    partial.replace(path)
    return path


def read_run_state(run_dir: Path) -> RunState:
    return read_document(RunState, run_dir / RUN_FILE, what=f"run state ({RUN_FILE})",
                         fix="check the run id and --runs-dir (`ls runs/`)")
