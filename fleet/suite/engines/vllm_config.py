"""What a cell asks of vLLM, and whether this vLLM can do it: pure decisions for the vLLM engine.

Methods and config keys come and go across the vLLM commits that bisection visits (medusa left in 0.33,
synthetic rejection sampling arrived around 0.2x), so the engine never hard-codes them: the child process
reports what the installed vLLM has (`Capabilities`), and a cell that asks for more is SKIPPED with the
reason. Building the `LLM(...)` arguments and classifying a crashed engine from its log are decisions too,
so they live here, tested without vLLM; vllm.py only does the I/O.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.model import Cell
from fleet.model.execution import option_conflicts
from fleet.suite.engines.base import EngineConfigError

#: Engine options that steer fleet's measurement; every other engine option is an `LLM(...)` argument.
FLEET_OPTIONS: dict[str, type] = {
    "single_prompts": int,  # how many measured prompts are also sent alone (concurrency 1); default 16
    "vllm_cache_root": str,  # shared compile cache root; keyed below by vLLM version and hardware
    "ignore_eos": bool,  # a SamplingParams flag: every request yields max_tokens tokens (default True)
}
DEFAULT_SINGLE_PROMPTS = 16

#: Arguments fleet passes to every engine: counters and request stats exist only with log stats on.
FIXED_LLM_ARGS: dict[str, Any] = {"disable_log_stats": False}

#: Python modules some methods import at engine start, which are not vLLM dependencies.
METHOD_MODULES: dict[str, str] = {"suffix": "arctic_inference"}

#: Marker the child prints once `LLM(...)` returned: a failure before it is a start-up failure.
READY_MARKER = "FLEET_VLLM_PHASE engine_ready"


def flatten_literal(annotation: Any) -> list[str]:
    """Every string of a (nested, possibly Optional) typing.Literal, as vLLM builds SpeculativeMethod."""
    found: list[str] = []
    for arg in typing.get_args(annotation):
        if isinstance(arg, str):
            found.append(arg)
        elif arg is not type(None):
            found.extend(flatten_literal(arg))
    return found


@dataclass(frozen=True)
class Capabilities:
    """What the installed vLLM offers, as the child process found it at run time."""

    vllm_version: str
    vllm_commit: str | None
    methods: frozenset[str]
    speculative_config_keys: frozenset[str]
    llm_args: frozenset[str]
    modules: Mapping[str, bool]


def parse_capabilities(raw: Mapping[str, Any]) -> Capabilities:
    """The probe's JSON (see vllm.py `probe_capabilities`) as a value; missing parts are empty."""
    return Capabilities(
        vllm_version=str(raw.get("vllm_version") or "unknown"),
        vllm_commit=raw.get("vllm_commit"),
        methods=frozenset(str(m) for m in raw.get("methods") or ()),
        speculative_config_keys=frozenset(str(k) for k in raw.get("speculative_config_keys") or ()),
        llm_args=frozenset(str(k) for k in raw.get("llm_args") or ()),
        modules={str(k): bool(v) for k, v in dict(raw.get("modules") or {}).items()},
    )


def split_engine_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fleet's own options, `LLM(...)` arguments) from a cell's engine_options."""
    fleet = {k: v for k, v in options.items() if k in FLEET_OPTIONS}
    llm = {k: v for k, v in options.items() if k not in FLEET_OPTIONS}
    return fleet, llm


def unsupported_reason(caps: Capabilities, cell: Cell) -> str | None:
    """Why this vLLM cannot run the cell (it is then SKIPPED), or None."""
    version = f"vLLM {caps.vllm_version}"
    method = cell.variant.method
    if method not in caps.methods:
        known = ", ".join(sorted(caps.methods)) or "none"
        return f"{version} has no speculative method {method!r} (it has: {known})"
    missing = sorted(set(cell.variant.options) - caps.speculative_config_keys)
    if missing and caps.speculative_config_keys:
        return f"{version}'s speculative_config has no key {', '.join(map(repr, missing))} (variant options)"
    _, llm_args = split_engine_options(cell.engine_options)
    missing = sorted(set(llm_args) - caps.llm_args)
    if missing and caps.llm_args:
        return f"{version}'s LLM(...) takes no argument {', '.join(map(repr, missing))} (cell engine_options)"
    missing = sorted(set(execution_arguments(cell)) - caps.llm_args)
    if missing and caps.llm_args:
        axes = ", ".join(f"{name}={value}" for name, value in cell.execution.items())
        return f"{version}'s LLM(...) takes no argument {', '.join(map(repr, missing))} (execution {axes})"
    module = METHOD_MODULES.get(method)
    if module is not None and caps.modules.get(module) is False:
        return f"method {method!r} needs the Python module {module!r}, which this image lacks"
    return None


def speculative_config(cell: Cell, draft_path: str | None) -> dict[str, Any]:
    """The `speculative_config` dict for the cell's variant, with the draft resolved to a local path."""
    variant = cell.variant
    config: dict[str, Any] = {"method": variant.method,
                              "num_speculative_tokens": variant.num_speculative_tokens}
    if draft_path is not None:
        config["model"] = draft_path
    config.update(variant.options)
    return config


def is_local_path(reference: str) -> bool:
    """A filesystem path rather than a Hugging Face id (`org/name`), which vLLM resolves itself."""
    return reference.startswith(("/", "./", "../", "~"))


#: vLLM's CUDAGraphMode member for each value of the `cudagraph` axis (vllm/config/compilation.py).
CUDAGRAPH_MODES: dict[str, str] = {"full": "FULL", "piecewise": "PIECEWISE", "none": "NONE"}
_ON_OFF: dict[str, bool] = {"on": True, "off": False}


def execution_arguments(cell: Cell) -> dict[str, Any]:
    """The `LLM(...)` arguments the cell's execution axes set (fleet.model.execution says why each exists).

    Every value is explicit, off included (prefix caching off is `enable_prefix_caching=False`), so no
    vLLM version's default decides. `cudagraph` sets `compilation_config.cudagraph_mode` (merged into
    the cell's own compilation_config) and `enforce_eager=False`, which would otherwise turn CUDA graphs
    off whatever the mode. An engine option that sets the same thing is an EngineConfigError.
    """
    _, llm = split_engine_options(cell.engine_options)
    conflicts = option_conflicts(list(cell.execution), llm, "vllm")
    if conflicts:
        what, fix = conflicts[0]
        raise EngineConfigError(what, where="cell.execution", fix=fix)
    args: dict[str, Any] = {}
    for name, value in cell.execution.items():
        if name == "cudagraph":
            compilation = dict(llm.get("compilation_config") or {})
            args["compilation_config"] = {**compilation, "cudagraph_mode": CUDAGRAPH_MODES[value]}
            args["enforce_eager"] = False
        elif name == "prefix_caching":
            args["enable_prefix_caching"] = _ON_OFF[value]
        elif name == "async_scheduling":
            args["async_scheduling"] = _ON_OFF[value]
    return args


def llm_arguments(cell: Cell, *, with_execution: bool = True) -> dict[str, Any]:
    """`LLM(...)` keyword arguments from the cell's engine options and (unless `with_execution` is
    False) its execution axes, with fleet's fixed ones on top.

    The non-speculative reference run is built without the axes: it depends on the model, prompts and
    engine options only (fleet.suite.runner.reference_key), so every cell of a tier entry shares one
    reference, and the match rates of two cells that differ in one axis are against the same outputs.
    """
    _, llm = split_engine_options(cell.engine_options)
    execution = execution_arguments(cell) if with_execution else {}
    return {**llm, **execution, **FIXED_LLM_ARGS}


def single_prompt_count(cell: Cell, measured: int) -> int:
    fleet, _ = split_engine_options(cell.engine_options)
    wanted = int(fleet.get("single_prompts", DEFAULT_SINGLE_PROMPTS))
    return max(0, min(wanted, measured))


def cache_root(base: str, vllm_version: str, hardware: str) -> str:
    """A compile-cache folder shared by every cell of one vLLM version on one hardware pool."""
    safe = re.sub(r"[^A-Za-z0-9.+_-]+", "-", f"{vllm_version}-{hardware}")
    return f"{base.rstrip('/')}/{safe}"


# --- engine logs -------------------------------------------------------------------------------------

_BACKEND_PATTERNS = (
    re.compile(r"Using (\w+) attention backend out of potential backends"),
    re.compile(r"Using (\w+) backend\."),
)
_OOM_PATTERNS = ("CUDA out of memory", "OutOfMemoryError", "No available memory for the cache blocks",
                 "Insufficient memory", "CUDA error: out of memory")


def attention_backends(log_text: str) -> list[str]:
    """The attention backends vLLM reported choosing, in order of first mention."""
    found: list[str] = []
    for line in log_text.splitlines():
        for pattern in _BACKEND_PATTERNS:
            match = pattern.search(line)
            if match and match.group(1) not in found:
                found.append(match.group(1))
    return found


def log_tail(text: str, lines: int = 40, max_chars: int = 6000) -> str:
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    return tail[-max_chars:]


@dataclass(frozen=True)
class FailureKind:
    reason: str
    what: str
    cause: str
    fix: str


def classify_failure(log_text: str, *, returncode: int | None, timed_out: bool, timeout_s: float,
                     phase: str) -> FailureKind:
    """Why a vLLM child process failed, from its exit and its log (an infrastructure failure)."""
    ready = READY_MARKER in log_text
    if timed_out:
        stage = "generating" if ready else "starting the engine"
        return FailureKind("timeout", f"vLLM {phase} run exceeded {timeout_s:g} s while {stage}",
                           "a hung engine, a slow compile or a too-small timeout",
                           "rerun; if it recurs raise the tier's timeout_s or look at the log tail")
    if any(pattern in log_text for pattern in _OOM_PATTERNS):
        return FailureKind("cuda_oom", f"vLLM {phase} run ran out of GPU memory",
                           "another process on the GPU, or a model too large for gpu_memory_utilization",
                           "check nvidia-smi for other processes; lower max_model_len or max_num_seqs")
    if returncode is not None and returncode < 0:
        return FailureKind("killed", f"vLLM {phase} run was killed by signal {-returncode}",
                           "the machine's OOM killer or a preemption", "rerun; check host memory")
    if not ready:
        return FailureKind("engine_start_failed", f"vLLM engine failed to start for the {phase} run "
                           f"(exit {returncode})", "see the log tail: model, config or CUDA set-up",
                           "fix what the log tail names, then rerun")
    return FailureKind("engine_crashed", f"vLLM {phase} run crashed after start (exit {returncode})",
                       "see the log tail", "rerun; if it recurs, report it with the log tail")

