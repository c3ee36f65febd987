"""SAME / DIFFERENT / UNKNOWN for two sample sets of one metric: the one statistical judgement of a bisection.

A bisection that trusts one noisy run per commit (git bisect, asv find) walks off to the wrong commit as
soon as one run lands on the wrong side of the threshold. Chromium's Pinpoint answers with a three-valued
comparison instead: DIFFERENT when the samples are significantly apart, SAME only when they are close
enough that a change of the size being hunted would almost surely have shown, and UNKNOWN in between,
which asks for more samples. This module is that comparison, pure, with every threshold's reason below.

Three cases, by the metric's kind (fleet.suite.derive) and what is known of its noise:
- latency metrics are noisy and not normal (a fresh engine start moves TPOT a lot on an H200:
  docs/judging.md#engine-start-noise):
  Pinpoint's p = min(Kolmogorov-Smirnov p, Mann-Whitney U p), because "MWU is bad at detecting changes
  in variance, and K-S is bad with discrete distributions".
- acceptance and match metrics are ratios of integer counters and near-deterministic under greedy
  decoding (within about a percent across engine starts: docs/bisecting.md#noise-the-comparison-assumes):
  rank tests cannot reach p <= 0.01 with fewer than 4-5 samples a side, so they are compared as counts, by the
  relative difference of their means against a known noise level, which decides from one run each.
- latency with a spread known from more runs than these (the cell's baseline, pooled with every commit
  the bisection measured twice) is compared the same way, against that spread (never below
  LATENCY_KNOWN_FLOOR), referred to Student's t with the spread's degrees of freedom: an sd estimated
  from 10 runs is often well below the truth. Without one, the rank tests decide, and never say SAME
  from a p-value they could not have made small (one run each: p = 1).

A culprit is verified against its parent (fleet.bisect.search) one-sided, and for latency first by
compare_best_run: engine starts are slow now and then, never fast, so the culprit's fastest run is the
statistic its slow starts cannot move (fleet.judge.best_run, the judge's FAIL test).
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from scipy import stats

from fleet.judge.best_run import CoreModel, SlowRecord
from fleet.judge.stats import upper_tail_t
from fleet.model.metrics import MetricClass


class Verdict(Enum):
    SAME = "same"
    DIFFERENT = "different"
    UNKNOWN = "unknown"


#: DIFFERENT when p <= 0.01: Pinpoint's low threshold, a 1 % chance per comparison of calling two equal
#: distributions different.
LOW_THRESHOLD = 0.01
#: SAME only if a true change of the expected magnitude would give a p-value this high in at most 1 % of
#: draws (one-sided normal quantile 2.326): Pinpoint's "high threshold", derived here analytically.
MISS_QUANTILE = 2.326
#: Relative run-to-run sd assumed for counter metrics when the samples themselves show less: the worst
#: spread measured across engine starts (ngram's acceptance length on the H200). Below it, one odd run
#: passes for a regression: a lower floor let the bisection benchmark name wrong ngram culprits (figures:
#: docs/bisecting.md#noise-the-comparison-assumes).
COUNTS_NOISE_FLOOR = 0.010
#: Relative sd assumed for latency metrics when fewer than two samples a side exist to estimate it: the
#: pooled sd of the first H200 pairs of TPOT p50 (docs/bisecting.md#noise-the-comparison-assumes).
LATENCY_NOISE_FLOOR = 0.09
#: Degrees of freedom from which a latency sd estimated from the samples replaces the floor: below that,
#: a sample sd misses the true one by more than half about 1 time in 10 (chi-square with 4 dof).
LATENCY_FREEDOM_TO_TRUST = 4
#: Relative sd below which a known latency spread is not believed: the judge's floor for noisy metrics
#: (fleet.judge.noisy.FLOOR_LOG_SD), below every spread across engine starts measured for a speculative
#: run (the GPU-bound 8B-shaped cell's TPOT p50; its non-speculative reference read far less on one lease,
#: which a fleet of nodes will not repeat: docs/bisecting.md#noise-the-comparison-assumes).
LATENCY_KNOWN_FLOOR = 0.02
#: Mann-Whitney's asymptotic efficiency relative to the t-test under normal noise (3/pi): the rank test
#: needs about 1/0.955 as many samples, so the effect it can see at a given n is scaled by sqrt(0.955).
RANK_TEST_EFFICIENCY = 3.0 / math.pi


@dataclass(frozen=True)
class Spread:
    """A relative run-to-run sd known from more runs than the two sets compared, and its degrees of
    freedom (a cell's baseline; the bisection pools its own within-commit spread in)."""

    relative_sd: float
    freedom: int


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    p_value: float
    high_threshold: float
    relative_difference: float
    method: str
    n: tuple[int, int]

    def describe(self) -> str:
        # A threshold of 1 is no threshold: too few runs for the test to say SAME, or a test that never does.
        same = f"same above {self.high_threshold:.3g}" if self.high_threshold < 1 else "SAME out of reach"
        return (f"{self.verdict.value.upper()} (p={self.p_value:.3g}, {same}, "
                f"change {self.relative_difference:+.2%}, n={self.n[0]}/{self.n[1]}, {self.method})")


def compare(a: Sequence[float], b: Sequence[float], *, magnitude: float, kind: MetricClass,
            noise: Spread | None = None) -> Comparison:
    """Compare samples `b` against samples `a`.

    `magnitude` is the relative change being hunted (e.g. 0.05 for the 5 % between the bisection's good
    and bad ends): it sets how close is close enough for SAME. `noise` is an estimate of the relative
    run-to-run sd from more data than these two sets (the bisection pools it over all its commits).
    """
    if not a or not b:
        raise ValueError("compare needs at least one sample on each side")
    centre = statistics.fmean(a)
    scale = abs(centre) if centre else 1.0
    change = (statistics.fmean(b) - centre) / scale
    sd, freedom = _noise(a, b, scale, kind, noise)
    standard_error = sd * math.sqrt(1 / len(a) + 1 / len(b))
    if kind == "latency" and noise is None:
        p_value = _rank_p_value(a, b)
        method = "min(KS, MWU)"
        visible = abs(magnitude) / standard_error * math.sqrt(RANK_TEST_EFFICIENCY)
        # Below about 5 samples a side no arrangement of the samples reaches LOW_THRESHOLD: a p-value that
        # could never have been small says nothing, so it cannot say SAME either (p = 1 from one run each).
        rank_test_can_decide = smallest_rank_p_value(len(a), len(b)) <= LOW_THRESHOLD
    else:
        # Counters, or latency with a spread known from more data than these samples (the bisection pools
        # it over every commit it measured twice): a test on the means (normal for a known sd, Student's t
        # for an estimated one), which can decide from one run each.
        p_value = _two_sided_p(abs(change) / standard_error, freedom)
        method = "counts" if kind != "latency" else "known spread"
        visible = abs(magnitude) / standard_error
        rank_test_can_decide = True
    high = high_threshold(visible, freedom) if rank_test_can_decide else 1.0
    if p_value <= LOW_THRESHOLD:
        verdict = Verdict.DIFFERENT
    elif p_value > high:
        verdict = Verdict.SAME
    else:
        verdict = Verdict.UNKNOWN
    return Comparison(verdict, p_value, high, change, method, (len(a), len(b)))


def compare_best_run(parent: Sequence[float], culprit: Sequence[float], *, noise: Spread,
                     slow_side: int, chosen: int = 0) -> Comparison:
    """Whether the culprit's runs are slower than its parent's even at their best: DIFFERENT when the
    chance that all of them reach their best run's value as the parent's runs with slow starts among
    them (fleet.judge.best_run.CoreModel.p_fail: the parent's mean, `noise`'s spread floored at
    LATENCY_KNOWN_FLOOR, slow starts at the judge's prior of one in twenty) is <= LOW_THRESHOLD;
    UNKNOWN otherwise (and for a run that read <= 0), never SAME. `slow_side`: +1 where a slow engine
    start reads high (latency), -1 where it reads low (speedup, throughput). `chosen`: culprit runs that
    are no evidence, because the search picked this commit for them (the run that placed it on the bad
    side was picked for reading slow): the chance is that the other runs reach the best one's value.

    The rank tests need four runs a side to reach LOW_THRESHOLD however far apart the runs are; this
    test takes two culprit runs for a change far beyond the spread (two slow starts in a row: at most
    E[r^2] = 0.5 %), three when one chose it, and more as the change nears the noise. It trusts the
    spread as given, so it is for a slowdown (a change toward the slow side) with a spread known from
    more runs than these.
    """
    parent_mean = statistics.fmean(parent)
    change = (statistics.fmean(culprit) - parent_mean) / parent_mean if parent_mean else 0.0
    if min(*parent, *culprit) <= 0:  # a run that read zero: the test is on logs, the rank tests take it
        return Comparison(Verdict.UNKNOWN, 1.0, 1.0, change, "best run: a value <= 0, no test",
                          (len(parent), len(culprit)))
    core = CoreModel(centre=slow_side * statistics.fmean(math.log(v) for v in parent),
                     sd=max(noise.relative_sd, LATENCY_KNOWN_FLOOR), recorded=len(parent),
                     dof=noise.freedom, record=SlowRecord())
    best = min(slow_side * math.log(v) for v in culprit)
    p_value = core.p_fail(best, len(culprit) - chosen) if len(culprit) > chosen else 1.0
    verdict = Verdict.DIFFERENT if p_value <= LOW_THRESHOLD else Verdict.UNKNOWN
    return Comparison(verdict, p_value, 1.0, change, "best run, slow starts allowed",
                      (len(parent), len(culprit)))


def one_sided(check: Comparison) -> Comparison:
    """A culprit that moved its metric the way the ends did, tested as such: whether it did is a question
    with a direction, so its p is the comparison's two-sided one halved (exact for Mann-Whitney's and
    the normal's symmetric nulls, and for Kolmogorov-Smirnov's in its tail, where a p <= 0.01 lies). The
    rank tests then verify from 4 and 5 runs instead of 5 and 5: on the GPU-bound TPOT noise the culprit
    was found within the 7-round bar more often, as often right, none wrongly
    (docs/bisecting.md#design-choices-measured)."""
    p_value = check.p_value / 2
    if p_value > LOW_THRESHOLD:
        return check  # not decided either way: the two-sided comparison, whose thresholds it states, stands
    return replace(check, verdict=Verdict.DIFFERENT, p_value=p_value,
                   method=f"{check.method}, one-sided in the ends' direction")


def ranks_agree(parent: Sequence[float], culprit: Sequence[float], ends: Comparison) -> bool:
    """Whether the culprit's runs rank above its parent's (Mann-Whitney's U above half its range) when the
    ends rose, below when they fell: a mean moved by one slow start can point the ends' way while the rank
    tests, whose p one_sided halves, saw the runs move the other way."""
    above = sum((c > p) + 0.5 * (c == p) for c in culprit for p in parent)
    half = len(parent) * len(culprit) / 2
    return above > half if ends.relative_difference > 0 else above < half


def high_threshold(visible_effect: float, freedom: int | None = None) -> float:
    """The p-value above which SAME is declared, for a change of `visible_effect` standard errors.

    If the change were real, the test statistic would be about N(visible_effect, 1); its 1st percentile
    is visible_effect - 2.326, and the p-value at that point is exceeded by only 1 % of true changes.
    With too few samples that point is below zero and the threshold is 1: nothing can be called SAME yet.
    With an estimated sd (`freedom` degrees of freedom) the same reasoning runs on Student's t.
    """
    miss = MISS_QUANTILE if freedom is None else float(stats.t.isf(0.01, freedom))
    lowest_likely = visible_effect - miss
    if lowest_likely <= 0:
        return 1.0
    return max(LOW_THRESHOLD, _two_sided_p(lowest_likely, freedom))


@functools.cache
def smallest_rank_p_value(n_a: int, n_b: int) -> float:
    """The smallest p-value min(KS, MWU) can give for these sample sizes: that of two sets entirely apart."""
    return _rank_p_value([float(i) for i in range(n_a)], [float(n_a + i) for i in range(n_b)])


def _two_sided_p(z: float, freedom: int | None = None) -> float:
    """Two-sided p of a standardised difference: normal for a known sd, Student's t for an estimated one."""
    return min(1.0, 2.0 * upper_tail_t(abs(z), freedom))


def _rank_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    if len(set(a) | set(b)) == 1:
        return 1.0  # all identical: no test can tell them apart, and scipy would warn
    with warnings.catch_warnings():
        # With ties scipy falls back from the exact K-S distribution to the asymptotic one and says so.
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = float(stats.ks_2samp(a, b).pvalue)
    mwu = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return min(ks, mwu)


def _noise(a: Sequence[float], b: Sequence[float], scale: float, kind: MetricClass,
           hint: Spread | None) -> tuple[float, int | None]:
    """The relative sd to judge by, and its degrees of freedom where it is an estimate (None: taken as
    known). Counters never go below their floor (a regression is never declared on a difference smaller
    than ngram's jitter); latency's floor holds only until the data can speak for itself."""
    pooled, freedom = _pooled_relative_sd(a, b, scale)
    if kind != "latency":
        # The floor is the worst jitter measured, and binds: judged as a known sd (the normal).
        return max(hint.relative_sd if hint is not None else 0.0, pooled, COUNTS_NOISE_FLOOR), None
    if hint is not None:
        sd = max(hint.relative_sd, pooled, LATENCY_KNOWN_FLOOR)
        if sd == LATENCY_KNOWN_FLOOR:
            return sd, None
        return sd, (hint.freedom if sd == hint.relative_sd else freedom)
    if freedom >= LATENCY_FREEDOM_TO_TRUST:
        return pooled, freedom
    return max(pooled, LATENCY_NOISE_FLOOR), None


def _pooled_relative_sd(a: Sequence[float], b: Sequence[float], scale: float) -> tuple[float, int]:
    """The within-set sd of both sets pooled, relative to `scale`, and its degrees of freedom."""
    squares = sum((x - statistics.fmean(a)) ** 2 for x in a) + sum((x - statistics.fmean(b)) ** 2 for x in b)
    freedom = len(a) + len(b) - 2
    return (math.sqrt(squares / freedom) / scale if freedom > 0 else 0.0), freedom
