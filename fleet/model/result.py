"""RunResult: the one versioned document the suite writes for a cell, and everything downstream reads.

It keeps the raw material (counters as the engine reported them, per-request timings, generated token
ids) beside the derived metrics, so a verdict can always be re-derived and audited from the file alone.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fleet.model._base import Strict
from fleet.model.catalog import Cell
from fleet.model.metrics import metric_info

SCHEMA_VERSION = 1


class SpecCounters(Strict):
    """vLLM's four speculative-decoding counters, with vLLM's definitions (vllm/v1/spec_decode/metrics.py).

    num_drafts counts (request, step) pairs that proposed at least one token; accepted_per_position[i]
    counts drafts whose token i was accepted.
    """

    num_drafts: int = Field(ge=0)
    num_draft_tokens: int = Field(ge=0)
    num_accepted_tokens: int = Field(ge=0)
    accepted_per_position: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SpecCounters:
        if self.num_accepted_tokens > self.num_draft_tokens:
            raise ValueError("num_accepted_tokens exceeds num_draft_tokens")
        if self.accepted_per_position and sum(self.accepted_per_position) != self.num_accepted_tokens:
            raise ValueError("accepted_per_position does not sum to num_accepted_tokens")
        return self


class RequestTiming(Strict):
    """One request's latencies in seconds, as measured by the engine or the client."""

    prompt_index: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    ttft_s: float = Field(ge=0)
    tpot_s: float | None = Field(default=None, ge=0)
    e2e_s: float = Field(ge=0)


class Measurement(Strict):
    """One engine configuration's run over the workload: outputs and timings."""

    token_ids: list[list[int]]
    texts: list[str] | None = None
    timings: list[RequestTiming] = Field(default_factory=list)
    batch_timings: list[RequestTiming] = Field(default_factory=list)
    batch_wall_s: float | None = Field(default=None, ge=0)
    engine_start_s: float | None = Field(default=None, ge=0)
    reused_from: str | None = None


class PrefixCacheCounters(Strict):
    """The engine's prefix cache over the measured requests, in prompt tokens (vLLM's
    vllm:prefix_cache_queries / vllm:prefix_cache_hits deltas): a prefix-caching cell whose hits are 0
    tested nothing of the cache."""

    queries: int = Field(ge=0)
    hits: int = Field(ge=0)

    @model_validator(mode="after")
    def _hits_within_queries(self) -> PrefixCacheCounters:
        if self.hits > self.queries:
            raise ValueError("prefix-cache hits exceed queries")
        return self

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.queries if self.queries else None


class MatchSummary(Strict):
    """Speculative vs non-speculative greedy outputs, prompt by prompt."""

    num_prompts: int = Field(ge=0)
    exact_token_matches: int = Field(ge=0)
    exact_text_matches: int | None = Field(default=None, ge=0)
    first_divergence: list[int | None] = Field(default_factory=list)

    @model_validator(mode="after")
    def _within_prompts(self) -> MatchSummary:
        if self.exact_token_matches > self.num_prompts:
            raise ValueError("exact_token_matches exceeds num_prompts")
        return self


#: The largest a latency (ms) or a throughput (tokens/s) may read before it is a broken measurement, not
#: a slow one: 1e9 ms is eleven days for one request of a test tier, 1e9 tokens/s beyond any machine;
#: a value like 1e300 would otherwise pass every check and turn a report's arithmetic into inf.
ABSURD = 1e9
#: A speedup over no speculation beyond this is a broken timer (k draft tokens can at most give k + 1).
ABSURD_SPEEDUP = 1e3


def metric_problem(name: str, value: float) -> str | None:
    """Why a measured metric's value is impossible, or None: non-finite everywhere; by the registry's
    unit, a ratio outside [0, 1], an acceptance length below 1 (every draft step yields at least the
    target's own token), a negative or absurd latency, throughput or speedup."""
    if not math.isfinite(value):
        return "not a finite number"
    info = metric_info(name)
    if info is None:
        return None
    if info.unit == "ratio" and not 0.0 <= value <= 1.0:
        return "a ratio outside [0, 1]"
    if name == "acceptance_length" and not 1.0 <= value <= 65.0:
        return "an acceptance length is 1 + accepted tokens per draft: between 1 and 1 + k (k <= 64)"
    if name == "speedup" and not 0.0 < value <= ABSURD_SPEEDUP:
        return f"a speedup must be above 0 and at most {ABSURD_SPEEDUP:g}"
    if info.kind == "latency" and name != "speedup" and not 0.0 <= value <= ABSURD:
        return f"a latency or throughput must be between 0 and {ABSURD:g} {info.unit}"
    return None


class Provenance(Strict):
    """Where and with what a result was produced; enough to tell two environments apart."""

    fleet_version: str
    engine: str
    engine_version: str | None = None
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    vllm_version: str | None = None
    vllm_commit: str | None = None
    cuda: str | None = None
    rocm: str | None = None
    gpu_name: str | None = None
    gpu_count: int | None = None
    driver: str | None = None
    attention_backend: str | None = None
    dtype: str | None = None
    async_scheduling: bool | None = None
    async_scheduling_reference: bool | None = None
    model_runner: str | None = None
    hostname: str | None = None
    platform: str | None = None
    cpu_threads: int | None = None
    image: str | None = None
    image_digest: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ResultError(Strict):
    """Why a cell produced no measurement; the category decides whether the controller retries."""

    category: Literal["config", "infrastructure"]
    reason: str
    message: str
    log_tail: str = ""
    exit_code: int | None = None


class EngineStart(Strict):
    """One engine start of a run measured over several (Workload.engine_starts): its latency metrics, of
    which the run's are the median."""

    metrics: dict[str, float]
    engine_start_s: float | None = Field(default=None, ge=0)


class RunResult(Strict):
    schema_version: Literal[1] = 1
    cell: Cell
    status: Literal["ok", "skipped", "error"]
    skip_reason: str | None = None
    error: ResultError | None = None
    provenance: Provenance
    counters: SpecCounters | None = None
    engine_counters: dict[str, Any] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    match: MatchSummary | None = None
    reference: Measurement | None = None
    speculative: Measurement | None = None
    #: Every speculative engine start's latency where the workload asks for more than one; `speculative`,
    #: `counters` and `match` are the first start's.
    starts: list[EngineStart] = Field(default_factory=list)
    #: The speculative run's prefix cache, where the engine reports one.
    prefix_cache: PrefixCacheCounters | None = None

    @field_validator("metrics")
    @classmethod
    def _possible(cls, metrics: dict[str, float]) -> dict[str, float]:
        # A NaN or 1e300 once crashed the text report and passed in Markdown; refused here, at the edge.
        for name, value in metrics.items():
            problem = metric_problem(name, value)
            if problem is not None:
                raise ValueError(f"{name} = {value!r} is impossible ({problem})")
        return metrics

    @model_validator(mode="after")
    def _status_fields(self) -> RunResult:
        if self.status == "error" and self.error is None:
            raise ValueError("status 'error' needs an 'error' object")
        if self.status == "skipped" and not self.skip_reason:
            raise ValueError("status 'skipped' needs a 'skip_reason'")
        if self.status == "ok" and self.error is not None:
            raise ValueError("status 'ok' cannot carry an 'error'")
        return self
