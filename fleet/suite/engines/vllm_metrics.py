"""Reading vLLM's own numbers without importing vLLM: metric snapshots and per-request stats.

The vLLM engine's child process turns what vLLM hands back (`LLM.get_metrics()`, `RequestOutput.metrics`)
into plain JSON with `snapshot_entry` / `request_stats`; everything else here turns that JSON into fleet's
values. It lives apart from the engine so that CI, which has neither a GPU nor vLLM, tests it on snapshots
captured from real H200 runs (tests/fixtures/vllm/).

Definitions follow vLLM (vllm/v1/spec_decode/metrics.py, vllm/v1/metrics/stats.py):
- the four spec-decode counters are cumulative per engine, so a measurement is the difference of two
  snapshots, summed over every label set (one per engine / model name);
- TTFT is `first_token_latency`; decode time is `last_token_ts - first_token_ts` (both on the engine core's
  monotonic clock); TPOT is decode time / (generated tokens - 1). `arrival_time` is on the frontend's
  wall clock and is never subtracted from a `*_ts` value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fleet.model import PrefixCacheCounters, RequestTiming, SpecCounters

NUM_DRAFTS = "vllm:spec_decode_num_drafts"
NUM_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
NUM_ACCEPTED_TOKENS = "vllm:spec_decode_num_accepted_tokens"
ACCEPTED_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos"
SPEC_DECODE_PREFIX = "vllm:spec_decode_"
#: vLLM's prefix-cache counters, in prompt tokens (vllm/v1/metrics/loggers.py: "Prefix cache queries, in
#: terms of number of queried tokens" / "hits, in terms of number of cached tokens"). Exact names only:
#: the deprecated vllm:gpu_prefix_cache_* duplicates and the KV connector's external_prefix_cache_* are
#: other counters.
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits"

#: Fields of vLLM's RequestStateStats that the timings need (others are kept when present).
_STATS_FIELDS = ("num_generation_tokens", "arrival_time", "queued_ts", "scheduled_ts", "first_token_ts",
                 "last_token_ts", "first_token_latency", "num_preemptions", "is_corrupted")


class CounterReset(ValueError):
    """A counter went down between two snapshots: they came from different engines, or vLLM reset it."""


class MissingRequestStats(ValueError):
    """A RequestOutput carried no `metrics`: log stats were disabled, or the vLLM predates ~0.11."""


def canonical_name(name: str) -> str:
    """vLLM spells its metrics `vllm:x`; Prometheus text and some versions say `vllm_x` or add `_total`."""
    if name.startswith("vllm_"):
        name = "vllm:" + name[len("vllm_"):]
    if name.endswith("_total"):
        name = name[: -len("_total")]
    return name


def snapshot_entry(metric: object) -> dict[str, Any]:
    """One metric of vllm.v1.metrics.reader (Counter, Vector, Gauge, Histogram) as plain JSON, duck-typed."""
    entry: dict[str, Any] = {
        "name": str(getattr(metric, "name", "")),
        "kind": type(metric).__name__.lower(),
        "labels": {str(k): str(v) for k, v in dict(getattr(metric, "labels", {}) or {}).items()},
    }
    for field in ("value", "values", "count", "sum", "buckets"):
        if hasattr(metric, field):
            value = getattr(metric, field)
            if field == "values":
                value = [int(v) for v in value]
            elif field == "buckets":
                value = {str(k): v for k, v in dict(value).items()}
            entry[field] = value
    return entry


def spec_entries(snapshot: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Only the spec-decode metrics of a snapshot, for the raw record kept in a RunResult."""
    return [dict(entry) for entry in snapshot
            if canonical_name(str(entry["name"])).startswith(SPEC_DECODE_PREFIX)]


@dataclass(frozen=True)
class SpecTotals:
    """The spec-decode counters of one snapshot, summed over label sets."""

    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int
    accepted_per_position: tuple[int, ...]
    label_sets: int

    def as_dict(self) -> dict[str, Any]:
        return {"num_drafts": self.num_drafts, "num_draft_tokens": self.num_draft_tokens,
                "num_accepted_tokens": self.num_accepted_tokens,
                "accepted_per_position": list(self.accepted_per_position), "label_sets": self.label_sets}


def _add_vector(total: list[int], values: Sequence[int]) -> None:
    if len(values) > len(total):
        total.extend([0] * (len(values) - len(total)))
    for position, value in enumerate(values):
        total[position] += int(value)


def _label_key(labels: Mapping[str, str], *, without: str | None = None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != without))


def spec_totals(snapshot: Iterable[Mapping[str, Any]]) -> SpecTotals | None:
    """Sum the four counters over every label set; None when the snapshot has no spec-decode metric.

    The per-position counter comes either as vLLM's reader `Vector` (one list per label set) or, from
    Prometheus text or a reader that does not special-case it, as one counter per `position` label.
    """
    scalars = {NUM_DRAFTS: 0, NUM_DRAFT_TOKENS: 0, NUM_ACCEPTED_TOKENS: 0}
    per_position: list[int] = []
    label_sets: set[tuple[tuple[str, str], ...]] = set()
    seen = False
    for entry in snapshot:
        name = canonical_name(str(entry["name"]))
        labels = dict(entry.get("labels") or {})
        if name in scalars:
            scalars[name] += int(entry["value"])
            label_sets.add(_label_key(labels))
            seen = True
        elif name == ACCEPTED_PER_POS:
            seen = True
            if "values" in entry:
                _add_vector(per_position, entry["values"])
            else:
                position = int(labels["position"])
                _add_vector(per_position, [0] * position + [int(entry["value"])])
    if not seen:
        return None
    return SpecTotals(num_drafts=scalars[NUM_DRAFTS], num_draft_tokens=scalars[NUM_DRAFT_TOKENS],
                      num_accepted_tokens=scalars[NUM_ACCEPTED_TOKENS],
                      accepted_per_position=tuple(per_position), label_sets=len(label_sets))


def spec_delta(before: SpecTotals | None, after: SpecTotals | None) -> SpecCounters | None:
    """What the engine counted between two snapshots of the same engine; None without speculation."""
    if after is None:
        return None
    if before is None:
        before = SpecTotals(0, 0, 0, (), after.label_sets)
    width = max(len(before.accepted_per_position), len(after.accepted_per_position))
    pos_before = list(before.accepted_per_position) + [0] * (width - len(before.accepted_per_position))
    pos_after = list(after.accepted_per_position) + [0] * (width - len(after.accepted_per_position))
    delta = {
        "num_drafts": after.num_drafts - before.num_drafts,
        "num_draft_tokens": after.num_draft_tokens - before.num_draft_tokens,
        "num_accepted_tokens": after.num_accepted_tokens - before.num_accepted_tokens,
    }
    per_position = [a - b for a, b in zip(pos_after, pos_before, strict=True)]
    if min([*delta.values(), *per_position], default=0) < 0:
        raise CounterReset(f"a spec-decode counter decreased between snapshots: {delta}, per position "
                           f"{per_position}")
    return SpecCounters(accepted_per_position=per_position, **delta)


def snapshot_delta(before: Iterable[Mapping[str, Any]],
                   after: Iterable[Mapping[str, Any]]) -> SpecCounters | None:
    return spec_delta(spec_totals(before), spec_totals(after))


def prefix_cache_entries(snapshot: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Only the two prefix-cache counters of a snapshot, for the raw record kept in a RunResult."""
    names = (PREFIX_CACHE_QUERIES, PREFIX_CACHE_HITS)
    return [dict(entry) for entry in snapshot if canonical_name(str(entry["name"])) in names]


def prefix_cache_totals(snapshot: Iterable[Mapping[str, Any]]) -> tuple[int, int] | None:
    """(queries, hits) summed over label sets; None when the snapshot has neither counter."""
    totals = {PREFIX_CACHE_QUERIES: 0, PREFIX_CACHE_HITS: 0}
    seen = False
    for entry in snapshot:
        name = canonical_name(str(entry["name"]))
        if name in totals:
            totals[name] += int(entry["value"])
            seen = True
    return (totals[PREFIX_CACHE_QUERIES], totals[PREFIX_CACHE_HITS]) if seen else None


def prefix_cache_delta(before: Iterable[Mapping[str, Any]],
                       after: Iterable[Mapping[str, Any]]) -> PrefixCacheCounters | None:
    """The prefix cache over the window between two snapshots of one engine, read as the spec-decode
    counters are; None when this vLLM exposes no prefix-cache counter."""
    end = prefix_cache_totals(after)
    if end is None:
        return None
    start = prefix_cache_totals(before) or (0, 0)
    queries, hits = end[0] - start[0], end[1] - start[1]
    if queries < 0 or hits < 0:
        raise CounterReset(f"a prefix-cache counter decreased between snapshots: queries {queries}, "
                           f"hits {hits}")
    return PrefixCacheCounters(queries=queries, hits=hits)


def prometheus_text_entries(text: str) -> list[dict[str, Any]]:
    """Counter samples from Prometheus text exposition (what vLLM serves on /metrics), as snapshot entries.

    Only counters are read: `_total` samples (prometheus_client names a `counter` family's samples so even
    where an older exporter left the suffix off). This is an independent way to read the same registry the
    reader walks, used to check that the suite's numbers are vLLM's. prometheus_client, the library vLLM
    exports with, parses the text, so escaped label values, tabs and timestamps read as Prometheus reads them.
    """
    return [{"name": sample.name, "kind": "counter", "labels": dict(sample.labels),
             "value": int(sample.value)}
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.endswith("_total")]


def request_stats(metrics: object) -> dict[str, Any] | None:
    """A RequestOutput's `metrics` (RequestStateStats) as plain JSON, duck-typed; None when absent."""
    if metrics is None:
        return None
    stats = {field: getattr(metrics, field) for field in _STATS_FIELDS if hasattr(metrics, field)}
    return {k: (bool(v) if isinstance(v, bool) else float(v)) for k, v in stats.items()}


def request_timing(
    index: int,
    *,
    prompt_tokens: int,
    output_tokens: int,
    stats: Mapping[str, Any] | None,
    client_e2e_s: float | None = None,
) -> RequestTiming:
    """One request's TTFT / TPOT / end-to-end latency from vLLM's request stats.

    End-to-end is the client's own measurement when there is one (a request sent alone); inside a batch
    the client sees only the batch, so it is TTFT plus decode time, each a duration on its own clock.
    """
    if stats is None:
        raise MissingRequestStats(f"request {index} has no RequestOutput.metrics")
    ttft = float(stats["first_token_latency"])
    decode = float(stats["last_token_ts"]) - float(stats["first_token_ts"])
    generated = int(stats.get("num_generation_tokens", output_tokens))
    if ttft < 0 or decode < 0:
        raise ValueError(f"request {index}: negative latency (ttft {ttft}, decode {decode})")
    tpot = decode / (generated - 1) if generated > 1 else None
    e2e = client_e2e_s if client_e2e_s is not None else ttft + decode
    return RequestTiming(prompt_index=index, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                         ttft_s=ttft, tpot_s=tpot, e2e_s=max(e2e, 0.0))
