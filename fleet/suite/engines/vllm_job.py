"""What one vLLM child process is asked to do: a plain-JSON job built from a cell.

Kept apart from vllm.py (which runs the child) so the translation from a cell to vLLM's arguments is
read and tested in one place: model references resolved to local folders, the speculative_config for
the variant, the `LLM(...)` arguments and the measurement's shape (prompts, warm-up, single requests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleet.model import METHODS_NEEDING_DRAFT, Cell
from fleet.suite.engines.base import EngineConfigError
from fleet.suite.engines.vllm_config import (
    is_local_path,
    llm_arguments,
    single_prompt_count,
    speculative_config,
    split_engine_options,
)
from fleet.suite.model_refs import resolve_model
from fleet.suite.prompts import load_warmup_prompts


def _model_path(ref: str, field: str) -> str:
    """A bundled model's folder, a local path that must exist, or a hub id passed to vLLM unchanged."""
    path = resolve_model(ref)
    if is_local_path(path) and not Path(path).expanduser().exists():
        raise EngineConfigError(f"model path {path!r} does not exist", where=field,
                                fix="point it at a folder with config.json, or use a bundled: model")
    return path


def child_job(cell: Cell, prompts: Sequence[str], phase: str, *,
              latency_only: bool = False) -> dict[str, Any]:
    """Everything the child needs, as JSON: resolved model paths, LLM arguments, prompts, sampling, and
    whether to measure the batch (not for a latency-only start: fleet.suite.engines.base)."""
    spec: dict[str, Any] | None = None
    if phase == "speculative":
        draft_ref = cell.draft_model or cell.variant.draft_model
        if draft_ref is None and cell.variant.method in METHODS_NEEDING_DRAFT:
            raise EngineConfigError(
                f"variant {cell.variant.name!r} ({cell.variant.method}) has no draft model",
                where="cell.draft_model", fix="set draft_model in the tier entry or the variant")
        spec = speculative_config(cell, _model_path(draft_ref, "cell.draft_model") if draft_ref else None)
    fleet_options, _ = split_engine_options(cell.engine_options)
    return {
        "phase": phase,
        "model": _model_path(cell.model, "cell.model"),
        "llm_args": llm_arguments(cell, with_execution=phase == "speculative"),
        "speculative_config": spec,
        "prompts": list(prompts),
        "warmup_prompts": load_warmup_prompts(cell.workload),
        "max_tokens": cell.workload.max_tokens,
        "ignore_eos": bool(fleet_options.get("ignore_eos", True)),
        "single_prompts": single_prompt_count(cell, len(prompts)),
        "measure_batch": not latency_only,
    }

