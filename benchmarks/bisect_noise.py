"""The noise families of benchmarks/bisect_efficiency.py, from the recorded H200 runs (its docstring says
how each is drawn): which runs, the smoothed bootstrap of their residuals, the spread a baseline of them
would hand `fleet bisect`, and runs of several engine starts. Apart so that each benchmark module stays one
concern (and under the guide's 400 lines).
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import smoothing
from h200_cells import GPU_BOUND_MODEL, earlier_procedure

from fleet.backends.sim.scenario import Noise
from fleet.judge.compare import Spread
from fleet.model.metrics import MetricClass, metric_info

REPO = Path(__file__).resolve().parent.parent


def _residuals(values: Sequence[float]) -> list[float]:
    mean = statistics.fmean(values)
    return [v / mean - 1.0 for v in values]


def recorded(metric: str, variant: str | None = None, gpu_bound: bool = False) -> list[list[float]]:
    """Per cell, the metric's values over the recorded H200 runs (optionally one variant's cell only; the
    GPU-bound 8B-shaped cell's alone with `gpu_bound`, else the tiny cells')."""
    by_cell: dict[str, list[float]] = {}
    h200 = REPO / "evidence" / "h200"
    for path in sorted([*h200.glob("runs/*/*.json"), *h200.glob("series/*/*.json"),
                        *h200.glob("mseries/*/*.json"), *h200.glob("mseries2/*/*.json")]):
        if earlier_procedure(path.as_posix()):
            continue
        document = json.loads(path.read_text())
        name = document["cell"]["variant"]["name"]
        if document["status"] != "ok" or metric not in document["metrics"]:
            continue
        if (document["cell"]["model"] == GPU_BOUND_MODEL) != gpu_bound:
            continue
        if variant is None or name == variant:
            by_cell.setdefault(document["cell"]["id"], []).append(float(document["metrics"][metric]))
    return [values for values in by_cell.values() if len(values) >= 3]


def recorded_noise(metric: str, variant: str | None = None,
                   gpu_bound: bool = False) -> tuple[Noise, Spread, str]:
    """A smoothed bootstrap of the recorded runs' relative residuals; their spread as a baseline of those
    runs would hand it to `fleet bisect`; and how it was made, in words."""
    cells = recorded(metric, variant, gpu_bound)
    if not cells:
        raise SystemExit(f"no repeated H200 runs of {metric} under evidence/h200")
    residuals = [r for values in cells for r in _residuals(values)]
    sd = statistics.stdev(residuals)
    # Silverman's variance-preserving smoothed bootstrap (benchmarks/smoothing.py): the jitter alone would
    # add bandwidth^2 to the recorded variance, and the search would face noise wider than its baseline.
    bandwidth = smoothing.bandwidth(residuals)
    shrink = smoothing.variance_kept(residuals, bandwidth)
    worst = max(abs(r) for r in residuals)
    what = "GPU-bound 8B-shaped" if gpu_bound else "tiny-stdlib"
    return (Noise(residuals=[r * shrink for r in residuals], jitter_sd=bandwidth * shrink),
            Spread(sd, len(residuals) - len(cells)),
            f"{len(residuals)} H200 runs of {what}, relative sd {100 * sd:.2f} %, worst {100 * worst:.1f} %")


@dataclass(frozen=True)
class MedianNoise:
    """One run measured over `starts` engine starts (a tier's workload.engine_starts): the median of that
    many independent draws of one start's noise, as fleet.suite.runner reports a run's latency."""

    one: Noise
    starts: int

    def draw(self, rng: random.Random) -> float:
        return statistics.median(self.one.draw(rng) for _ in range(self.starts))


def over_starts(noise: Noise, recorded: Spread, starts: int) -> tuple[Noise | MedianNoise, Spread]:
    """A latency family's noise and recorded spread when every run, baseline ones included, is the median
    of `starts` engine starts (consecutive starts are uncorrelated: benchmarks/judge_power.py); the spread
    is that of 20,000 such runs, with the degrees of freedom of the runs it was recorded from."""
    if starts == 1:
        return noise, recorded
    median = MedianNoise(noise, starts)
    rng = random.Random(starts)
    return median, Spread(statistics.stdev(median.draw(rng) for _ in range(20_000)), recorded.freedom)


@dataclass(frozen=True)
class Family:
    name: str
    metric: str
    noise: Noise | MedianNoise
    recorded: Spread
    low: float
    high: float
    max_samples: int

    @property
    def kind(self) -> MetricClass:
        info = metric_info(self.metric)
        assert info is not None, self.metric
        return info.kind


def families(starts: int = 1) -> list[Family]:
    """The benchmark's families; with `starts` > 1 every latency run is the median of that many engine
    starts (acceptance is the first start's, as the suite keeps it)."""
    draft, draft_sd, draft_text = recorded_noise("acceptance_length", "draft_model-k4")
    ngram, ngram_sd, ngram_text = recorded_noise("acceptance_length", "ngram-k4")
    tpot, tpot_sd, tpot_text = recorded_noise("tpot_p50_ms")
    bound, bound_sd, bound_text = recorded_noise("tpot_p50_ms", gpu_bound=True)
    # The baseline's spread came from one lease; a pool's nodes may spread more. Runs twice as noisy as
    # the spread handed to the search: how often a wrong commit is then named (and verified).
    noisier = Noise(residuals=[2 * r for r in bound.residuals], jitter_sd=2 * bound.jitter_sd)
    each = f", each run the median of {starts} engine starts" if starts > 1 else ""
    tpot_run, tpot_run_sd = over_starts(tpot, tpot_sd, starts)
    bound_run, bound_run_sd = over_starts(bound, bound_sd, starts)
    noisier_run, _ = over_starts(noisier, bound_sd, starts)
    return [
        Family(f"acceptance_length, draft_model ({draft_text}), -3..-20 %", "acceptance_length",
               draft, draft_sd, -0.20, -0.03, 12),
        Family(f"acceptance_length, ngram ({ngram_text}), -3..-20 %", "acceptance_length",
               ngram, ngram_sd, -0.20, -0.03, 12),
        Family(f"tpot_p50 ({tpot_text}{each}), +5..+30 %", "tpot_p50_ms", tpot_run, tpot_run_sd,
               0.05, 0.30, 40),
        Family(f"tpot_p50 ({bound_text}{each}), +5..+30 %", "tpot_p50_ms", bound_run, bound_run_sd,
               0.05, 0.30, 40),
        Family(f"tpot_p50, GPU-bound runs 2x noisier than the recorded {100 * bound_run_sd.relative_sd:.2f} %"
               f"{each}, +5..+30 %", "tpot_p50_ms", noisier_run, bound_run_sd, 0.05, 0.30, 40),
    ]
