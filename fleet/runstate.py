"""runs/<run-id>/run.json: what a run is, written before its first Job, so any controller can resume it.

The cells are kept by value (a later edit of jobs/ must not change a run in flight) together with the
render context, so a resumed run renders byte-identical Jobs and its retries land on the same pools.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from fleet.errors import ConfigError
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


def write_run_state(run_dir: Path, state: RunState) -> Path:
    """Write run.json atomically (a half-written file would make the run unresumable)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(state.model_dump_json(indent=2) + "\n")
    partial.replace(path)
    return path


def read_run_state(run_dir: Path) -> RunState:
    path = run_dir / RUN_FILE
    try:
        return RunState.model_validate_json(path.read_bytes())
    except FileNotFoundError as err:
        raise ConfigError(f"no {RUN_FILE} for this run", where=str(path),
                          fix="check the run id and --runs-dir (`ls runs/`)") from err
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{field}: {first['msg']}", where=str(path)) from err
