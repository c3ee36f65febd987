"""Derived metrics of one cell, from raw counters and timings: pure functions.

The names are those of the registry (fleet.model.metrics). Definitions follow vLLM
(vllm/v1/spec_decode/metrics.py and the offline example): acceptance length = 1 + accepted / drafts
(1.0 when nothing was drafted), acceptance rate = accepted / draft tokens, per-position rate i =
accepted at position i / drafts. Latency percentiles are numpy's linear percentiles, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleet.model import MatchSummary, Measurement, RequestTiming, SpecCounters
from fleet.model.metrics import PERCENTILES, metric_info, position_metric


def acceptance_metrics(counters: SpecCounters) -> dict[str, float]:
    drafts = counters.num_drafts
    metrics = {"acceptance_length": 1.0 + counters.num_accepted_tokens / drafts if drafts else 1.0}
    # Nothing drafted means speculation did nothing: the rates are 0, not missing, so a judge sees it.
    tokens = counters.num_draft_tokens
    metrics["acceptance_rate"] = counters.num_accepted_tokens / tokens if tokens else 0.0
    for index, accepted in enumerate(counters.accepted_per_position):
        metrics[position_metric(index)] = accepted / drafts if drafts else 0.0
    return metrics


def first_divergence(reference: Sequence[int], speculative: Sequence[int]) -> int | None:
    """The first index where the two token sequences differ (or where the shorter ends); None if equal."""
    for index, (a, b) in enumerate(zip(reference, speculative, strict=False)):
        if a != b:
            return index
    if len(reference) != len(speculative):
        return min(len(reference), len(speculative))
    return None


def match_summary(reference: Measurement, speculative: Measurement) -> MatchSummary:
    """Prompt-by-prompt comparison over the prompts both runs have."""
    pairs = list(zip(reference.token_ids, speculative.token_ids, strict=False))
    divergences = [first_divergence(ref, spec) for ref, spec in pairs]
    text_matches: int | None = None
    if reference.texts is not None and speculative.texts is not None:
        texts = zip(reference.texts[: len(pairs)], speculative.texts[: len(pairs)], strict=False)
        text_matches = sum(ref == spec for ref, spec in texts)
    return MatchSummary(
        num_prompts=len(pairs),
        exact_token_matches=sum(d is None for d in divergences),
        exact_text_matches=text_matches,
        first_divergence=divergences,
    )


def _percentiles_ms(prefix: str, values_s: Sequence[float]) -> dict[str, float]:
    if not values_s:
        return {}
    points = np.percentile(np.asarray(values_s, dtype=float) * 1000.0, PERCENTILES, method="linear")
    return {f"{prefix}_p{q}_ms": float(v) for q, v in zip(PERCENTILES, points, strict=True)}


def latency_metrics(timings: Sequence[RequestTiming]) -> dict[str, float]:
    tpots = [t.tpot_s for t in timings if t.tpot_s is not None]
    return {
        **_percentiles_ms("ttft", [t.ttft_s for t in timings]),
        **_percentiles_ms("tpot", tpots),
        **_percentiles_ms("e2e", [t.e2e_s for t in timings]),
    }


def speedup(reference: Sequence[RequestTiming], speculative: Sequence[RequestTiming]) -> float | None:
    """Sum of reference e2e over sum of speculative e2e, over the prompts timed in both runs."""
    ref_by_prompt = {t.prompt_index: t.e2e_s for t in reference}
    common = [t for t in speculative if t.prompt_index in ref_by_prompt]
    spec_total = sum(t.e2e_s for t in common)
    if not common or spec_total <= 0:
        return None
    return sum(ref_by_prompt[t.prompt_index] for t in common) / spec_total


def derive_metrics(
    reference: Measurement, speculative: Measurement, counters: SpecCounters | None
) -> tuple[dict[str, float], MatchSummary]:
    """Every derivable metric of a cell (acceptance ones only when counters exist) and the match summary."""
    metrics: dict[str, float] = {}
    if counters is not None:
        metrics.update(acceptance_metrics(counters))
    metrics.update(latency_metrics(speculative.timings))
    if speculative.batch_wall_s:
        source = speculative.batch_timings or speculative.timings
        metrics["throughput_tok_s"] = sum(t.output_tokens for t in source) / speculative.batch_wall_s
    summary = match_summary(reference, speculative)
    if summary.num_prompts:
        metrics["match_rate"] = summary.exact_token_matches / summary.num_prompts
    gain = speedup(reference.timings, speculative.timings)
    if gain is not None:
        metrics["speedup"] = gain
    ref_tpots = [t.tpot_s for t in reference.timings if t.tpot_s is not None]
    if ref_tpots:
        metrics["reference_tpot_p50_ms"] = float(np.percentile(np.asarray(ref_tpots) * 1000.0, 50))
    return metrics, summary


def start_latency(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics of one speculative engine start that move with it: its latency (the reference's is
    shared by every start of a run, so it is left out)."""
    return {name: value for name, value in metrics.items()
            if (info := metric_info(name)) is not None and info.kind == "latency"
            and name != "reference_tpot_p50_ms"}


def median_over_starts(starts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each latency metric's median over the engine starts that measured it (Workload.engine_starts): one
    slow start among three cannot move it, and the run's spread is that of a median, not of one start."""
    names = sorted({name for start in starts for name in start})
    return {name: float(np.median([start[name] for start in starts if name in start])) for name in names}
