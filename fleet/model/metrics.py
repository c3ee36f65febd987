"""The metric registry: every metric's name, unit, better direction and class, shared by every layer.

The names are a contract between the suite that measures them, the baselines that record them, the judge
that tests them and the reports that print them; the class decides how a metric is judged
("acceptance" and "match" are near-deterministic under greedy decoding and tested on their counts,
"latency" is noisy and tested against the recorded spread). It lives with the documents so that the
judge, the bisection and the trends read it without importing the package that runs inside the Job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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
