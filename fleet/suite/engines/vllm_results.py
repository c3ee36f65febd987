"""From what a vLLM child process reported to fleet's EngineRun: measurement, counters, provenance.

Pure, so it is tested on results captured on the H200 (tests/fixtures/vllm/). The child reports raw
material only (metric snapshots before and after the measured steps, each request's RequestStateStats,
client-side wall times); every number fleet keeps is derived here.

What is measured, after the workload's warm-up prompts (unmeasured: once as a batch, then the first
one alone, so the batch-size-1 kernels the singles use are compiled before the clock starts):
1. the batch: every measured prompt in one `generate` call (vLLM schedules them together). Its outputs
   are the token ids compared with the reference for match rates; its per-request timings are
   `batch_timings`.
2. the singles: the first N measured prompts again, each alone (concurrency 1); their timings are
   `timings`, with end-to-end latency measured by the client.
The spec-decode counters are the snapshot delta over both steps, as in the hand measurements of
../shared/device/README.md; so are the prefix-cache counters (vllm:prefix_cache_queries / _hits). With
prefix caching on, the warm-up prompts, unmeasured, have already filled the cache: a measured prompt that
shares a prefix with one of them hits from its first request, and the singles re-send prompts the batch
just cached, so they hit on every full block but the last token's (vLLM never serves a whole prompt from
the cache). That is why a prefix-caching cell's hit rate runs above the share of the prompts' tokens
that are a shared prefix. A latency-only start (a further start of a run over several engine starts,
fleet.suite.runner) skips step 1: no outputs, no batch timings, counters over the singles alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.model import Measurement, RequestTiming, SpecCounters
from fleet.suite.engines.base import EngineRun
from fleet.suite.engines.vllm_config import attention_backends
from fleet.suite.engines.vllm_metrics import (
    prefix_cache_delta,
    prefix_cache_entries,
    prometheus_text_entries,
    request_timing,
    snapshot_delta,
    spec_entries,
    spec_totals,
)


def _timings(requests: Sequence[Mapping[str, Any]], *, client_side: bool) -> list[RequestTiming]:
    timings = []
    for position, request in enumerate(requests):
        index = int(request.get("index", position))
        timings.append(request_timing(
            index, prompt_tokens=int(request["prompt_tokens"]), output_tokens=len(request["token_ids"]),
            stats=request.get("stats"), client_e2e_s=float(request["client_e2e_s"]) if client_side else None,
        ))
    return timings


def build_measurement(result: Mapping[str, Any], *, keep_texts: bool = True) -> Measurement:
    batch = result["batch"]
    requests = batch["requests"]
    texts = [str(r.get("text") or "") for r in requests] if keep_texts else None
    return Measurement(
        token_ids=[[int(t) for t in r["token_ids"]] for r in requests],
        texts=texts,
        timings=_timings(result.get("singles") or [], client_side=True),
        batch_timings=_timings(requests, client_side=False),
        batch_wall_s=float(batch["wall_s"]),
        engine_start_s=float(result["engine_start_s"]),
    )


def _own_delta(own: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """vLLM's own count (its example's reading of get_metrics()) over the same window."""
    if not own:
        return None
    before, after = own["before"], own["after"]
    per_pos = [a - b for a, b in zip(after["accepted_per_position"], before["accepted_per_position"],
                                     strict=False)]
    return {"num_drafts": after["num_drafts"] - before["num_drafts"],
            "num_draft_tokens": after["num_draft_tokens"] - before["num_draft_tokens"],
            "num_accepted_tokens": after["num_accepted_tokens"] - before["num_accepted_tokens"],
            "accepted_per_position": per_pos}


def engine_counters(result: Mapping[str, Any], counters: SpecCounters | None) -> dict[str, Any] | None:
    """The raw record behind `counters`: both snapshots, and the same window read two other ways."""
    before, after = result["metrics_before"], result["metrics_after"]
    totals_after = spec_totals(after)
    if totals_after is None:
        return None
    totals_before = spec_totals(before)
    prometheus = result.get("prometheus") or {}
    prom_delta = None
    if prometheus.get("before") is not None and prometheus.get("after") is not None:
        prom = snapshot_delta(prometheus_text_entries(prometheus["before"]),
                              prometheus_text_entries(prometheus["after"]))
        prom_delta = prom.model_dump() if prom is not None else None
    return {
        "source": "LLM.get_metrics() delta over the batch and single requests, after warm-up",
        "window": {"batch_prompts": len(result["batch"]["requests"]),
                   "single_prompts": len(result.get("singles") or [])},
        "before": totals_before.as_dict() if totals_before else None,
        "after": totals_after.as_dict(),
        "delta": counters.model_dump() if counters is not None else None,
        "vllm_reported": _own_delta(result.get("vllm_example_counts")),
        "prometheus_delta": prom_delta,
        "snapshot_before": spec_entries(before),
        "snapshot_after": spec_entries(after),
        "prefix_cache_before": prefix_cache_entries(before),
        "prefix_cache_after": prefix_cache_entries(after),
    }


def build_provenance(result: Mapping[str, Any], log_text: str, *, phase: str) -> dict[str, Any]:
    """Provenance fields from the child, plus the attention backend vLLM logged choosing.

    The runner lays the speculative run's fields over the reference run's, so the reference's own facts
    go under top-level `reference_*` names (they land in `extra`) and `async_scheduling_reference`.
    """
    fields = dict(result.get("provenance") or {})
    backends = attention_backends(log_text)
    if backends:
        fields["attention_backend"] = backends[0]
    extra = dict(fields.pop("extra", None) or {})
    extra.update({"attention_backends": backends, "engine_start_s": result["engine_start_s"],
                  "phase_s": result.get("phase_s")})
    if phase == "reference":
        fields["async_scheduling_reference"] = fields.get("async_scheduling")
        fields["reference_engine"] = {"model_runner": fields.get("model_runner"),
                                      "attention_backend": fields.get("attention_backend"), **extra}
        return fields
    fields["extra"] = extra
    return fields


def build_engine_run(result: Mapping[str, Any], log_text: str, *, phase: str,
                     keep_texts: bool = True) -> EngineRun:
    counters = snapshot_delta(result["metrics_before"], result["metrics_after"])
    if phase == "reference":
        counters = None
    return EngineRun(
        measurement=build_measurement(result, keep_texts=keep_texts),
        counters=counters,
        engine_counters=engine_counters(result, counters) if phase == "speculative" else None,
        provenance=build_provenance(result, log_text, phase=phase),
        prefix_cache=prefix_cache_delta(result["metrics_before"], result["metrics_after"])
        if phase == "speculative" else None,
    )
