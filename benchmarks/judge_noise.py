"""judge_power's noise model: a profile per cell, fitted from the cell's real repeated runs, and the
simulated run latency drawn from it.

Noise model (fitted, not invented):
- Every RunResult under evidence/cpu/**/ (the CPU reference engine, 5 runs per cell, the runs behind
  baselines/cpu) and evidence/h200/**/
  (vLLM 0.26.0 on one H200, 5 runs per cell) is grouped by cell; each cell with >= 3 ok runs becomes a
  profile: its per-position acceptance rates, draft tokens per draft, per-run match rates, and the
  log-residuals of TPOT p50, TTFT p50 and speedup of each run around the cell's mean (kept per run, so
  the metrics' correlation and heavy tails are kept). Acceptance counters get the between-run relative
  spread the runs show (0 on the bit-deterministic CPU reference engine, 0.4-1 % on the H200).
- A simulated run draws a whole recorded run (its residual row and its match rate; smoothed bootstrap:
  + N(0, h^2), h by Silverman's robust rule, benchmarks/smoothing.py) and multiplies the profile's centre
  by it. The jitter alone would add h^2 to the measured variance, so by default each draw is shrunk back
  by 1 / sqrt(1 + h^2 / s^2), Silverman's variance-preserving smoothed bootstrap (Density Estimation,
  1986, 6.4.1): the simulated runs spread exactly as the recorded ones. --bootstrap plain keeps the
  inflation.
  Simulated cells sit on a pool named after the profile's hardware, so the judge pools spreads only
  across like machines. Counts are scaled from the profile's workload to the nightly tier's
  (jobs/nightly.yaml: prompts x max_tokens), since a nightly cell counts that many more drafts and
  prompts.
- --engine-starts M: every run (recorded and candidate) is measured over M engine starts, as a tier whose
  workload sets engine_starts: M (fleet.suite.runner): its latency columns are the median of M draws, the
  first as above, the others independent (consecutive starts of the GPU-bound cell are uncorrelated);
  acceptance and match stay the first start's, as the suite keeps them.
- --latency-noise gpu-bound: the tiny models' latency is the host's (6 M parameters: the CPU sets the
  decode step, and moved it by 38 % between two leases), the nightly tier's 8B-class targets' is the
  GPU's. With this flag each measured cell keeps its acceptance and match noise and takes its latency
  rows from the GPU-bound cell of its pool (the 8B-shaped Llama of jobs/h200.yaml, evidence/h200/mseries
  and mseries2: 20 engine starts on two hosts, one a whole slow start), whose own acceptance is
  synthetic and is not used.

Which latency metrics carry noise is a value (Judged), not module state: the p50s and speedup the issue's
simulated tier judges, or every latency metric a real nightly judges (--latency-metrics all).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import smoothing
import yaml
from h200_cells import GPU_BOUND_MODEL, earlier_procedure

from fleet.model import RunResult
from fleet.model.metrics import HOST_YARDSTICK

REPO = Path(__file__).resolve().parent.parent
#: Drawn with the judged latency of the same run (one residual row), so a slow host slows both: the
#: judge's yardstick, recorded and carried but never judged itself (fleet.judge.decide).
YARDSTICK = HOST_YARDSTICK
#: The issue's simulated tier: 6 metrics per cell, these 3 of them latency.
P50 = ("tpot_p50_ms", "ttft_p50_ms", "speedup")
#: The latency tails a real nightly judges as well (every primary metric the suite records: 13 per cell).
TAILS = ("tpot_p90_ms", "tpot_p99_ms", "ttft_p90_ms", "ttft_p99_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms")


@dataclass(frozen=True)
class Judged:
    """The latency metrics a simulated run carries noise on and the judge judges (`noisy`)."""

    noisy: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """A profile's residual columns: the noisy metrics and the yardstick, drawn together."""
        return (*self.noisy, YARDSTICK)

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("acceptance_length", "acceptance_rate", "match_rate", *self.noisy)


def judged(latency_metrics: str) -> Judged:
    """--latency-metrics p50 (the issue's 6 metrics per cell) or all (the tails too; the planted TPOT rise
    still moves TPOT p50 and speedup only)."""
    return Judged(P50 if latency_metrics == "p50" else (*P50, *TAILS))


@dataclass(frozen=True)
class Profile:
    source: str
    model: str
    runs: int
    position_rates: np.ndarray
    drafts: int
    tokens_per_draft: float
    match_rates: np.ndarray  # one per recorded run: the match rate moves between engine starts
    prompts: int
    hardware: str
    count_sd: float
    centres: dict[str, float]
    residuals: np.ndarray  # runs x len(columns), log residuals
    bandwidth: np.ndarray
    tpot_share: float
    columns: tuple[str, ...]
    #: Draws shrunk to the recorded runs' variance (Silverman's variance-preserving smoothed bootstrap);
    #: False: the plain one, the jitter's variance added.
    variance_preserving: bool = True
    #: Engine starts per simulated run (Workload.engine_starts): its latency is their median.
    starts: int = 1

    # Derived once per profile, not per simulated run (benchmarks/smoothing.py).
    @functools.cached_property
    def row_kept(self) -> np.ndarray:
        """Each residual column's factor that gives its smoothed draws the rows' own variance."""
        if not self.variance_preserving:
            return np.ones(len(self.bandwidth))
        return np.asarray([smoothing.variance_kept(column, h)
                           for column, h in zip(self.residuals.T, self.bandwidth, strict=True)])

    @functools.cached_property
    def match_jitter(self) -> float:
        return smoothing.bandwidth(self.match_rates)

    @functools.cached_property
    def match_kept(self) -> float:
        """The match rates' factor, as row_kept's."""
        if not self.variance_preserving:
            return 1.0
        return smoothing.variance_kept(self.match_rates, self.match_jitter)


def load_results(roots: list[Path], columns: tuple[str, ...]) -> dict[str, list[RunResult]]:
    grouped: dict[str, list[RunResult]] = defaultdict(list)
    for root in roots:
        for path in sorted(root.glob("**/*.json")):
            if not (path.name.startswith("result") or "evidence" in str(path)):
                continue
            if earlier_procedure(path.as_posix()):
                continue
            try:
                result = RunResult.model_validate_json(path.read_bytes())
            except ValueError:
                continue
            if (
                result.status == "ok"
                and result.counters is not None
                and all(m in result.metrics for m in columns)
            ):
                grouped[f"{result.cell.hardware.name}/{result.cell.id}"].append(result)
    return grouped


def fit_profile(name: str, results: list[RunResult], scale: float, prompt_scale: float,
                columns: tuple[str, ...]) -> Profile:
    first = results[0]
    counters = first.counters
    assert counters is not None and first.match is not None
    drafts = counters.num_drafts
    rates = np.asarray(counters.accepted_per_position, dtype=float) / drafts
    lengths = np.asarray([r.metrics["acceptance_length"] for r in results])
    logs = np.log(np.asarray([[r.metrics[m] for m in columns] for r in results]))
    residuals = logs - logs.mean(axis=0)
    n = len(results)
    bandwidth = np.asarray([smoothing.bandwidth(column) for column in residuals.T])
    ttft, e2e = first.metrics["ttft_p50_ms"], first.metrics.get("e2e_p50_ms", 0.0)
    return Profile(
        source=name,
        model=first.cell.model,
        runs=n,
        position_rates=rates,
        drafts=round(drafts * scale),
        tokens_per_draft=counters.num_draft_tokens / drafts,
        match_rates=np.asarray([r.metrics.get("match_rate", 1.0) for r in results]),
        prompts=round(first.match.num_prompts * prompt_scale),
        hardware=first.cell.hardware.name,
        count_sd=float(np.std(lengths - 1.0, ddof=1) / np.mean(lengths - 1.0)),
        centres={m: float(np.exp(logs[:, i].mean())) for i, m in enumerate(columns)},
        residuals=residuals,
        bandwidth=bandwidth,
        tpot_share=1.0 - ttft / e2e if e2e > ttft else 1.0,
        columns=columns,
    )


def fit_profiles(roots: list[Path], columns: tuple[str, ...], hardware: str | None = None) -> list[Profile]:
    """A profile of every cell with >= 3 ok runs under `roots` (on `hardware` only, if given), its counts
    scaled to the nightly tier's workload (jobs/nightly.yaml)."""
    nightly = yaml.safe_load((REPO / "jobs" / "nightly.yaml").read_text())["workload"]
    profiles = []
    for name, results in sorted(load_results(roots, columns).items()):
        if len(results) < 3 or (hardware and results[0].cell.hardware.name != hardware):
            continue
        workload = results[0].cell.workload
        scale = nightly["num_prompts"] * nightly["max_tokens"] / (workload.num_prompts * workload.max_tokens)
        profiles.append(fit_profile(name, results, scale, nightly["num_prompts"] / workload.num_prompts,
                                    columns))
    return profiles


def with_gpu_bound_latency(profiles: list[Profile]) -> list[Profile]:
    """Each measured cell's acceptance and match, with the latency noise of the GPU-bound cell of its pool.

    The GPU-bound cell's own acceptance is synthetic (forced by vLLM's synthetic rejection sampler), so it
    lends its latency rows (TPOT, TTFT, speedup and the yardstick of one engine start together) and
    nothing else; the tiny cells lend everything else.
    """
    bound = {p.hardware: p for p in profiles if p.model == GPU_BOUND_MODEL}
    return [
        replace(p, source=f"{p.source} + latency of {bound[p.hardware].source}", runs=bound[p.hardware].runs,
                centres=bound[p.hardware].centres, residuals=bound[p.hardware].residuals,
                bandwidth=bound[p.hardware].bandwidth, tpot_share=bound[p.hardware].tpot_share)
        for p in profiles
        if p.model != GPU_BOUND_MODEL and p.hardware in bound
    ]


def latency_row(profile: Profile, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(the recorded run drawn first, one simulated run's latency log residuals): a smoothed draw of a
    recorded run's row; with `profile.starts` > 1 the median of each column over that many, the others
    drawn independently (consecutive engine starts of the GPU-bound cell are uncorrelated: lag-1
    autocorrelation of TPOT p50 -0.50 .. +0.26 in the H200 series of 10-12 starts, within chance for so
    few, -0.02 over startseries' 18; evidence/h200/README.md), as fleet.suite.runner reports a run."""
    rows = profile.residuals
    pick = int(rng.integers(len(rows)))
    row = (rows[pick] + rng.normal(0.0, profile.bandwidth)) * profile.row_kept
    if profile.starts > 1:
        others = rng.integers(len(rows), size=profile.starts - 1)
        drawn = [row, *((rows[other] + rng.normal(0.0, profile.bandwidth)) * profile.row_kept
                        for other in others)]
        row = np.median(np.asarray(drawn), axis=0)
    return pick, row


def per_run(profile: Profile, rng: np.random.Generator, runs: int = 4000) -> Profile:
    """The profile with `runs` simulated runs as its rows, one start each: how a run of `profile.starts`
    engine starts spreads, for the power analysis (core_of)."""
    if profile.starts == 1:
        return profile
    rows = np.asarray([latency_row(profile, rng)[1] for _ in range(runs)])
    return replace(profile, residuals=rows - rows.mean(axis=0), starts=1)


def core_of(profile: Profile, column: int) -> tuple[float, float]:
    """(sd of the runs that are not slow starts, share of slow starts) of one noisy column of a profile,
    set aside as the judge sets them aside (fleet.judge.best_run)."""
    from fleet.judge.best_run import harm_values, set_aside, slow_starts
    from fleet.judge.noisy import FLOOR_LOG_SD
    from fleet.judge.stats import harm_sign
    from fleet.model.metrics import metric_info

    info = metric_info(profile.columns[column])
    logs = profile.residuals[:, column]
    harm = harm_values(logs, harm_sign(info.better if info is not None else "lower"))
    found = slow_starts(harm, FLOOR_LOG_SD)
    aside = np.zeros(len(logs), dtype=bool) if found is None else set_aside(found)
    return float(np.std(logs[~aside], ddof=1)), float(np.mean(aside))
