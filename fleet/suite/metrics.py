"""Derived metrics of one cell, from raw counters and timings: a pure function, and the metric registry.

The names are a contract: baselines, the judge and reports use them. Definitions follow vLLM
(vllm/v1/spec_decode/metrics.py and the offline example): acceptance length = 1 + accepted / drafts
(1.0 when nothing was drafted), acceptance rate = accepted / draft tokens, per-position rate i =
accepted at position i / drafts. Latency percentiles are numpy's linear percentiles, in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fleet.model import MatchSummary, Measurement, RequestTiming, SpecCounters

Direction = Literal["higher", "lower"]
#: "acceptance" and "match" are near-deterministic under greedy decoding; "latency" is noisy.
MetricClass = Literal["acceptance", "match", "latency"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    better: Direction
    kind: MetricClass
    unit: str
    description: str


PERCENTILES = (50, 90, 99)
_POSITION_PREFIX = "acceptance_rate_pos_"


def _registry() -> dict[str, MetricInfo]:
    infos = [
        MetricInfo("acceptance_length", "higher", "acceptance", "tokens",
                   "1 + accepted draft tokens per draft (vLLM's mean acceptance length)"),
        MetricInfo("acceptance_rate", "higher", "acceptance", "ratio", "accepted / proposed draft tokens"),
        MetricInfo("match_rate", "higher", "match", "ratio",
                   "prompts whose speculative greedy tokens equal the non-speculative ones"),
        MetricInfo("speedup", "higher", "latency", "x",
                   "sum of non-speculative e2e / sum of speculative e2e, one request at a time"),
        MetricInfo("reference_tpot_p50_ms", "lower", "latency", "ms", "median TPOT without speculation"),
        MetricInfo("throughput_tok_s", "higher", "latency", "tokens/s", "output tokens / batch wall time"),
    ]
    for stage, what in (("ttft", "time to first token"), ("tpot", "time per output token after the first"),
                        ("e2e", "request latency")):
        infos += [MetricInfo(f"{stage}_p{q}_ms", "lower", "latency", "ms", f"p{q} {what}, speculative")
                  for q in PERCENTILES]
    return {info.name: info for info in infos}


#: Every fixed metric name; per-position names are looked up with `metric_info`.
METRICS: dict[str, MetricInfo] = _registry()


#: Metrics of the same job's non-speculative reference run: how fast the host was, not what speculative
#: decoding did (the judge and trends never call them regressions of it).
REFERENCE_PREFIX = "reference_"
#: The reference metric a slower host shows in (the judge's and the trends' yardstick).
HOST_YARDSTICK = "reference_tpot_p50_ms"


def host_sensitive(name: str) -> bool:
    """An absolute latency of the speculative run, which a slower host slows as it slows the reference;
    speedup, a ratio within one job, is not, and the reference metrics are the yardstick itself."""
    info = metric_info(name)
    return info is not None and info.kind == "latency" and name != "speedup" \
        and not name.startswith(REFERENCE_PREFIX)


def position_metric(index: int) -> str:
    return f"{_POSITION_PREFIX}{index}"


def metric_info(name: str) -> MetricInfo | None:
    """The registry entry for a metric, including `acceptance_rate_pos_<i>`; None if unknown."""
    if name in METRICS:
        return METRICS[name]
    match = re.fullmatch(rf"{_POSITION_PREFIX}(\d+)", name)
    if match:
        index = int(match.group(1))
        return MetricInfo(name, "higher", "acceptance", "ratio",
                          f"drafts whose token {index} was accepted / drafts")
    return None


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
