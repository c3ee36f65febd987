"""One cell, end to end: prompts, the (cached) non-speculative run, the speculative run(s), one RunResult.

This is what `fleet suite run --cell CELL.json --out RESULT.json` executes, in a Job's container or a
local subprocess. Every outcome is a document: ok, skipped (the engine cannot run the variant), or an
error whose category decides the exit code (2 config, 3 infrastructure) and whether it is retried.
The non-speculative run depends only on the model, prompts, length, hardware and engine version, so
it is computed once and shared by every variant of a model through a JSON cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from fleet.errors import ConfigError, ExitCode
from fleet.model import Cell, EngineStart, Measurement, PrefixCacheCounters, ResultError, RunResult
from fleet.model._base import Strict
from fleet.suite.derive import derive_metrics, median_over_starts, start_latency
from fleet.suite.engines import get_engine
from fleet.suite.engines.base import Engine, EngineFailure, Unsupported
from fleet.suite.prompts import load_prompts
from fleet.suite.provenance import build_provenance, fleet_version, utc_now

LOG_TAIL_LINES = 40


def write_json_atomically(path: Path, text: str) -> None:
    """Readers never see half a file: write a temporary file beside it, then rename it over."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def reference_key(cell: Cell, prompts: list[str], engine_version: str) -> str:
    """What the non-speculative output depends on; the variant is deliberately absent."""
    fields: dict[str, Any] = {
        "engine": cell.engine,
        "engine_version": engine_version,
        "engine_options": cell.engine_options,
        "model": cell.model,
        "prompts": cell.workload.prompts,
        "prompts_sha256": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
        "num_prompts": cell.workload.num_prompts,
        "max_tokens": cell.workload.max_tokens,
        "hardware": cell.hardware.name,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class CachedReference(Strict):
    """A reference run as the cache keeps it: the measurement and what the engine said about itself
    (e.g. vLLM's async scheduling and model runner for the non-speculative engine)."""

    measurement: Measurement
    provenance: dict[str, Any] = Field(default_factory=dict)


def _cached_reference(path: Path) -> CachedReference | None:
    try:
        return CachedReference.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, unreadable or an older layout: recompute and overwrite


def _reference_run(
    cell: Cell, prompts: list[str], engine: Engine, cache: Path | None
) -> tuple[Measurement, dict[str, Any]]:
    version = str(getattr(engine, "version", None) or fleet_version())
    entry = cache / f"{reference_key(cell, prompts, version)}.json" if cache is not None else None
    if entry is not None and (hit := _cached_reference(entry)) is not None:
        return hit.measurement.model_copy(update={"reused_from": str(entry)}), hit.provenance
    run = engine.run_reference(cell, prompts)
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        cached = CachedReference(measurement=run.measurement, provenance=run.provenance)
        write_json_atomically(entry, cached.model_dump_json())
    return run.measurement, run.provenance


class PrefixCacheNotHit(ConfigError):
    """A prefix-caching cell whose engine found nothing in the cache: it tested nothing of the cache."""


def check_prefix_cache(cell: Cell, counters: PrefixCacheCounters | None) -> None:
    """A cell with prefix_caching=on must show prefix-cache hits over its measured prompts, or its
    verdict would say "caching on agrees with caching off" of a run that never used the cache."""
    if cell.execution.get("prefix_caching") != "on":
        return
    if counters is None:
        raise PrefixCacheNotHit(
            "prefix_caching=on, but the engine reported no prefix-cache counters",
            where=f"cell {cell.id}", cause="this engine version exposes no vllm:prefix_cache_* metrics",
            fix="run the cell on an engine that reports them, or drop the prefix_caching axis")
    if counters.hits == 0:
        raise PrefixCacheNotHit(
            f"prefix_caching=on, but the prefix cache hit 0 of {counters.queries} prompt tokens "
            "over the measured prompts", where=f"cell {cell.id}: workload.prompts ({cell.workload.prompts})",
            cause="the workload's prompts share no prefix of a full KV block (16 tokens), or the engine "
                  "did not turn the cache on",
            fix="use a shared-prefix workload (bundled:tiny-stdlib/shared-prefix), and check "
                "enable_prefix_caching in the result's provenance")


def _measure(cell: Cell, prompts: list[str], engine: Engine, cache: Path | None, started: str) -> RunResult:
    reference, reference_provenance = _reference_run(cell, prompts, engine, cache)
    speculative = engine.run_speculative(cell, prompts)
    check_prefix_cache(cell, speculative.prefix_cache)
    metrics, match = derive_metrics(reference, speculative.measurement, speculative.counters)
    starts: list[EngineStart] = []
    if cell.workload.engine_starts > 1:
        # Latency is what moves between engine starts; the counters and the outputs are judged on their
        # counts, so the first start's stand for the run.
        starts = [EngineStart(metrics=start_latency(metrics),
                              engine_start_s=speculative.measurement.engine_start_s)]
        for _ in range(cell.workload.engine_starts - 1):
            again = engine.run_speculative(cell, prompts, latency_only=True)
            measured, _ = derive_metrics(reference, again.measurement, again.counters)
            starts.append(EngineStart(metrics=start_latency(measured),
                                      engine_start_s=again.measurement.engine_start_s))
        metrics.update(median_over_starts([start.metrics for start in starts]))
    fields = {**reference_provenance, **speculative.provenance}
    provenance = build_provenance(engine.name, fields, started_at=started, finished_at=utc_now())
    return RunResult(
        cell=cell, status="ok", provenance=provenance, counters=speculative.counters,
        engine_counters=speculative.engine_counters, metrics=metrics, match=match,
        reference=reference, speculative=speculative.measurement, starts=starts,
        prefix_cache=speculative.prefix_cache,
    )


def run_suite(cell: Cell, *, engine: Engine, reference_cache: Path | None) -> RunResult:
    """Run one cell; engine errors propagate (run_cell_file turns them into error documents)."""
    started = utc_now()
    prompts = load_prompts(cell.workload)
    reason = engine.unsupported_reason(cell)
    if reason is None:
        try:
            return _measure(cell, prompts, engine, reference_cache, started)
        except Unsupported as err:  # found out at run time (e.g. a method missing from this vLLM build)
            reason = str(err) or "the engine cannot run this variant"
    provenance = build_provenance(engine.name, {}, started_at=started, finished_at=utc_now())
    return RunResult(cell=cell, status="skipped", skip_reason=reason, provenance=provenance)


def read_cell(cell_path: Path) -> Cell:
    try:
        text = cell_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the cell file: {err}", where=str(cell_path),
                          fix="pass the cell.json that `fleet` rendered") from err
    try:
        return Cell.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise ConfigError(f"invalid cell: {location}: {first['msg']} ({err.error_count()} error(s))",
                          where=str(cell_path), fix="regenerate the cell, or fix the field") from err


def _check_writable(out_path: Path) -> None:
    folder = out_path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the result into {folder}", where=str(out_path),
                          cause="the folder does not exist or is not writable",
                          fix="create the folder or pass another --out")


def _error_result(cell: Cell, engine_name: str, error: ResultError, started: str) -> RunResult:
    provenance = build_provenance(engine_name, {}, started_at=started, finished_at=utc_now())
    return RunResult(cell=cell, status="error", error=error, provenance=provenance)


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def run_cell_file(
    cell_path: Path,
    out_path: Path,
    reference_cache: Path | None,
    *,
    engine_factory: Callable[[str], Engine] = get_engine,
) -> int:
    """Run the cell in `cell_path`, write its RunResult to `out_path`; the process exit code.

    An invalid cell or an unwritable output raises ConfigError and writes nothing. Failures after
    that are written as error documents (and printed as one line on stderr): 2 for configuration
    (a missing model path, a bad option, a bad prompt file), 3 for infrastructure (the engine crashed).
    `engine_factory` is the seam where tests put a fake Engine.
    """
    cell = read_cell(cell_path)
    _check_writable(out_path)
    started = utc_now()
    error: ResultError
    try:
        engine = engine_factory(cell.engine)
        result = run_suite(cell, engine=engine, reference_cache=reference_cache)
    except ConfigError as err:  # EngineConfigError included
        error = ResultError(category="config", reason=type(err).__name__, message=err.line(),
                            exit_code=int(ExitCode.CONFIG))
    except ImportError as err:
        message = (f"config error: engine {cell.engine!r} is not installed here: {err} — "
                   "next: pip install 'fleet[local]' (reference) or use an image with vLLM")
        error = ResultError(category="config", reason="engine_not_installed", message=message,
                            log_tail=_tail(traceback.format_exc()), exit_code=int(ExitCode.CONFIG))
    except EngineFailure as err:
        error = ResultError(category="infrastructure", reason=err.reason, message=err.line(),
                            log_tail=err.log_tail or _tail(traceback.format_exc()),
                            exit_code=int(ExitCode.INFRASTRUCTURE))
    except Exception as err:
        message = f"infrastructure error: the engine crashed: {type(err).__name__}: {err}"
        error = ResultError(category="infrastructure", reason="engine_crash", message=message,
                            log_tail=_tail(traceback.format_exc()), exit_code=int(ExitCode.INFRASTRUCTURE))
    else:
        write_json_atomically(out_path, result.model_dump_json(indent=2))
        return int(ExitCode.PASS)
    document = _error_result(cell, cell.engine, error, started)
    write_json_atomically(out_path, document.model_dump_json(indent=2))
    print(error.message, file=sys.stderr)
    return error.exit_code or int(ExitCode.INFRASTRUCTURE)
