"""Execution axes (issue 30): how the engine executes, as matrix axes whose values must not change acceptance.

Under greedy decoding a drafter's acceptance must not depend on how the engine executes the same
models, so cells that differ in one of these axes only are compared with each other, without a recorded
baseline. Each axis exists because a real speculative-decoding regression hid in a setting CI did not run:

- `cudagraph` (full | piecewise | none): vLLM #49010 (acceptance cut under FULL CUDA graphs) and #54997
  (0 % acceptance in a CUDA-graph mode). vLLM: `compilation_config={"cudagraph_mode": "FULL" |
  "PIECEWISE" | "NONE"}` (vllm/config/compilation.py, CUDAGraphMode; a string is parsed as
  `CUDAGraphMode[value.upper()]`). `none` is `cudagraph_mode=NONE`, not `enforce_eager=True`: enforce_eager
  also turns torch.compile off, so a `none` cell would differ from a `full` one in two things at once.
- `prefix_caching` (off | on): vLLM #47930, where tokens restored from the prefix cache give the drafter
  no hidden states and acceptance length falls to about 1.0 (upstream's spec-decode tests turn prefix
  caching off). vLLM: `enable_prefix_caching=False | True`, both set explicitly so that no vLLM version's
  default decides. A cell with it on must really hit the cache (fleet.suite.runner checks the counters).
- `async_scheduling` (off | on): the scheduler plans step n+1 while step n runs, so the drafter works from
  a state one step behind; vLLM 0.26.0 keeps it off by default for draft_model (vLLM #38929).
  vLLM: `async_scheduling=False | True`.

Pure: the vocabulary, the expansion of a tier entry's axes into combinations, the spelling of a
combination in a cell id, and which engine options an axis owns (setting both is a ConfigError).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

#: Every axis and its values, in the order cell ids spell them.
AXES: dict[str, tuple[str, ...]] = {
    "cudagraph": ("full", "piecewise", "none"),
    "prefix_caching": ("off", "on"),
    "async_scheduling": ("off", "on"),
}

#: Axes each engine can vary. The reference engine runs transformers on CPU: no CUDA graphs, no scheduler.
ENGINE_AXES: dict[str, frozenset[str]] = {
    "vllm": frozenset(AXES),
    "reference": frozenset({"prefix_caching"}),
}

#: vLLM engine options (LLM(...) arguments) an axis sets itself: an entry that sets one too asks for two
#: things at once. `compilation_config.cudagraph_mode` is checked inside the dict.
VLLM_OWNED_OPTIONS: dict[str, tuple[str, ...]] = {
    "cudagraph": ("enforce_eager",),
    "prefix_caching": ("enable_prefix_caching",),
    "async_scheduling": ("async_scheduling",),
}

#: Separates the axes from the rest of a cell id; `=` and `,` are legal in file names everywhere.
ID_SEPARATOR = "__"


def axis_order(name: str) -> tuple[int, str]:
    names = list(AXES)
    return (names.index(name), name) if name in AXES else (len(names), name)


def execution_id(execution: Mapping[str, str]) -> str:
    """`cudagraph=full,prefix_caching=on`: the axes in AXES order; empty for a cell without axes."""
    return ",".join(f"{name}={execution[name]}" for name in sorted(execution, key=axis_order))


def axes_problems(axes: Mapping[str, Sequence[str]], engine: str) -> list[tuple[str, str]]:
    """(what, fix) for each unknown axis or value, empty or repeated value list, or axis the engine lacks."""
    problems: list[tuple[str, str]] = []
    known = ", ".join(AXES)
    for name, values in axes.items():
        if name not in AXES:
            problems.append((f"unknown execution axis {name!r} (known: {known})",
                             "use one of the known axes, or add it to fleet/model/execution.py"))
            continue
        allowed = AXES[name]
        if not values:
            problems.append((f"execution axis {name!r} has no values",
                             f"list at least one of {', '.join(allowed)}, or remove the axis"))
        for value in values:
            if value not in allowed:
                problems.append((f"unknown value {value!r} of execution axis {name!r} "
                                 f"(known: {', '.join(allowed)})", f"use one of {', '.join(allowed)}"))
        if len(set(values)) != len(values):
            problems.append((f"execution axis {name!r} repeats a value ({', '.join(values)})",
                             "list each value once"))
        if name not in ENGINE_AXES.get(engine, frozenset()):
            reason = "the reference engine has no CUDA graphs and no scheduler" if engine == "reference" \
                else f"engine {engine!r} has no such setting"
            problems.append((f"execution axis {name!r} cannot run on engine {engine!r}: {reason}",
                             "remove the axis, or run the tier with engine 'vllm'"))
    return problems


def option_conflicts(axes: Sequence[str], engine_options: Mapping[str, object],
                     engine: str) -> list[tuple[str, str]]:
    """(what, fix) where an axis and the engine options set the same thing (vLLM engine only)."""
    if engine != "vllm":
        return []
    problems: list[tuple[str, str]] = []
    for name in axes:
        for option in VLLM_OWNED_OPTIONS.get(name, ()):
            if option in engine_options:
                problems.append((f"execution axis {name!r} sets {option} itself, but engine_options sets "
                                 f"{option}={engine_options[option]!r} too",
                                 f"remove {option} from engine_options (the axis decides it per cell)"))
        compilation = engine_options.get("compilation_config")
        if name == "cudagraph" and isinstance(compilation, Mapping) and "cudagraph_mode" in compilation:
            problems.append(("execution axis 'cudagraph' sets compilation_config.cudagraph_mode itself, but "
                             f"engine_options sets it to {compilation['cudagraph_mode']!r} too",
                             "remove cudagraph_mode from engine_options.compilation_config"))
    return problems


def combinations(axes: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """One dict per combination of the axes' values (AXES order, values as written); [{}] for none."""
    names = sorted(axes, key=axis_order)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(axes[name] for name in names))]
