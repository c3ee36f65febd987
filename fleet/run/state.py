"""runs/<run-id>/run.json: what a run is, written before its first Job, so any controller can resume it.

The cells are kept by value (a later edit of jobs/ must not change a run in flight) together with the
render context, so a resumed run renders byte-identical Jobs and its retries land on the same pools.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from fleet.judge.multiple import Method
from fleet.model import Cell
from fleet.model._base import Strict
from fleet.model.documents import read_document
from fleet.plan.render import RenderContext

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
    #: How the run is judged (`--rule`, `--error-control`), and for one shard of a run the whole run's
    #: cells, its error-control family: `fleet resume` judges exactly as the submit would have.
    rule: Literal["auto", "rfc"] = "auto"
    error_control: Method = "holm"
    family: list[Cell] | None = None

    @model_validator(mode="before")
    @classmethod
    def _renders_as_it_did(cls, data: Any) -> Any:
        """A run.json written before pools could name their Jobs' image (2026-11-29) renders as it did then:
        its `--image` choices were kept in `kube.images` (now `image_overrides`), and its cells carry the
        pools' old `image`, vLLM's own image, which rendering ignored and must still ignore."""
        kube = data.get("kube") if isinstance(data, dict) else None
        if not isinstance(kube, dict) or "image_overrides" in kube:
            return data
        defaults = RenderContext(run_id="-").images
        given = {vendor: image for vendor, image in (kube.get("images") or {}).items()
                 if defaults.get(vendor) != image}
        cells = [{**cell, "hardware": {k: v for k, v in cell["hardware"].items() if k != "image"}}
                 if isinstance(cell, dict) and isinstance(cell.get("hardware"), dict) else cell
                 for cell in data.get("cells") or []]
        return {**data, "kube": {**kube, "image_overrides": given}, "cells": cells}


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
