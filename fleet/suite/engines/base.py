"""The Engine port: what the suite needs from an inference engine, whichever engine it is.

Two engines implement it: `reference` (greedy speculative decoding over transformers on CPU, the local
default and CI) and `vllm` (the real engine, on GPUs). The runner never knows which one it drives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleet.errors import ConfigError, InfrastructureError
from fleet.model import Cell, Measurement, PrefixCacheCounters, SpecCounters


@dataclass(frozen=True)
class EngineRun:
    """One engine configuration's run over the workload's prompts."""

    measurement: Measurement
    counters: SpecCounters | None = None
    engine_counters: dict[str, Any] | None = None
    #: Provenance fields this engine knows (names as in fleet.model.Provenance; unknown ones go to extra).
    provenance: dict[str, Any] = field(default_factory=dict)
    #: The engine's prefix cache over the measured requests, where it reports one.
    prefix_cache: PrefixCacheCounters | None = None


class Unsupported(Exception):
    """The installed engine cannot run this variant: the cell is SKIPPED with this reason."""


class EngineFailure(InfrastructureError):
    """The engine failed to start or crashed: an infrastructure failure, retryable, with its log tail."""

    def __init__(self, what: str, *, reason: str, log_tail: str = "", cause: str | None = None,
                 fix: str | None = None) -> None:
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(what, cause=cause, fix=fix)


class EngineConfigError(ConfigError):
    """The cell asks the engine for something invalid (a missing model path, a bad option)."""


class Engine(Protocol):
    name: str

    def unsupported_reason(self, cell: Cell) -> str | None:
        """None when this engine can run the cell, else why not (the cell is then SKIPPED)."""
        ...

    def run_reference(self, cell: Cell, prompts: Sequence[str]) -> EngineRun:
        """Greedy decoding without speculation: the baseline for match rate and speedup."""
        ...

    def run_speculative(self, cell: Cell, prompts: Sequence[str], *, latency_only: bool = False) -> EngineRun:
        """Greedy decoding with the cell's speculative method, counting drafts as vLLM does.

        `latency_only`: a further engine start of a run measured over several (Workload.engine_starts),
        whose outputs and counters the runner does not use: an engine may skip what only they need (the
        batch) and time the single requests alone."""
        ...
