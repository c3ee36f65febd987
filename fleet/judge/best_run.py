"""A noisy metric's FAIL decided on the candidates' best run, so that slow engine starts cannot make one.

On the H200 an occasional engine start ran the GPU-bound cell slow as a whole, all of its requests,
while the same job's non-speculative reference did not move (figures: docs/judging.md#engine-start-noise).
Nothing inside one run tells such a start from a regression, and a centre of the candidate runs (mean, median,
trimmed mean) is moved by two of them among five, which happens to some cell of a 40-cell nightly every few
nights. Starts are never slow in the helpful direction, so the candidates' best run is the statistic
they cannot move: a regression slows every run, a slow start only some (Chen & Revels, "Robust
benchmarking in noisy environments", 2016, take the minimum for the same reason).

The test, on h = log value signed so that harm is up (latency as is, speedup and throughput negated):
- the recorded runs' slow starts are set aside first (slow_starts: a run more than SLOW_START_THRESHOLD
  robust sd on the harmful side of the cell's median, the sd no smaller than the pool's); the core left
  gives the centre c and spread s, so one slow start among ten recorded runs no longer doubles the
  spread a regression must exceed. A cell with more of them than the rest of its pool's rate of slow
  starts makes likely (set_aside) is heavy-tailed, not unlucky, and keeps them all in its core; they
  still count;
- a candidate run is a core run, N(c, s^2), or, with probability r, a slow start that may land anywhere
  above: the chance that all n runs reach the best one's value b is then (r + (1 - r) S(b))^n at most, S
  the core's upper tail. r is not known, only the pool's record of it (SlowRecord: how many of the runs
  examined lie past SLOW_START_THRESHOLD robust sd, after a prior of one in twenty), so the p a FAIL is
  decided on averages that over r's posterior too, and must hold under the judged cell's own record as
  well (slow starts may belong to one configuration more than to its pool). That record's prior (one in
  twenty worth twenty runs, against a cell's ten) is also the margin for host-bound cells, whose latency
  is a mixture of hosts rather than a normal core plus rare slow starts: moderated by the pool's record
  instead, more GPU-bound regressions were caught but the CPU-shaped nightly's false alarms rose, every
  one on a host-bound cell (figures: docs/judging.md#false-alarms). p_fail
  cannot fall below E[r^n], so with slow starts in the record a FAIL needs several runs, each of them
  slow (an early look that cannot reach its share of the budget keeps it unspent: fleet.judge.noisy
  splits the budget before the record is known);
- the raw p of "the best of n core runs reaches b", S(b)^n, decides PASS vs INCONCLUSIVE: a run that
  looks slow, for whatever reason, is rerun rather than passed;
- c and s are estimated (s from the cell's runs, moderated over its pool; fleet.judge.noisy), so S is
  averaged over their uncertainty: c | s ~ N(c_hat, s^2 / N), s^2 ~ dof s_hat^2 / chi2(dof). For a
  sample sd this predictive probability is the frequentist one, because (b - c_hat) / s_hat is pivotal;
  with n = 1 it is Student's t prediction tail (tests check both). Floors and moderation only widen s.
- The best run trusts the fastest run: an anomalously fast one (a truncated run) would hide a
  regression, and starts that are slow together (one slow host for a whole rerun loop) are likelier
  than r^n. fleet's runs are whole engine starts, and on Kubernetes each rerun prefers a node the cell
  has not run on yet (fleet.plan.render._away_from): one H200 host ran a GPU-bound cell's TPOT tail well
  above two others with the same vLLM, and rerun loops kept on it FAILed when judged alone (figures:
  docs/judging.md#host-shift). The local backend has one host: its reruns share it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as scipy_stats

#: A recorded run further than this many robust sd (1.4826 x MAD, no smaller than the pool's) on the
#: harmful side of its cell's median is a slow start. Not further: five or ten runs' MAD reads high, and
#: the H200's slow start (about 6 sd of the GPU-bound cell's spread) then stays in the core, the record
#: undercounts slow starts, and the cells that kept one read a spread no TPOT +10 % rise could exceed; a
#: normal run set aside now and then costs a core run, not a false alarm (figures:
#: docs/judging.md#detection-power).
SLOW_START_THRESHOLD = 3.0
#: Slow starts are rare: a cell with more of its runs that far out than its pool's rate of them makes
#: likely (below this binomial tail) is heavy-tailed and keeps them (the CPU's draft_model cell, whose TPOT
#: spread wide over five starts). Two among ten runs is not that: at one in twenty,
#: one cell in twelve has them, and a fixed share of one in ten left those cells' spreads too wide to fail
#: a regression (figures: docs/judging.md#engine-start-noise, docs/judging.md#detection-power).
HEAVY_TAIL_ALPHA = 0.05
#: Fewer recorded runs say too little about their median and MAD to single one out.
MIN_RUNS_TO_SET_ASIDE = 5
#: What is known of slow starts before a pool's record says more: one in twenty, as the H200 measured
#: (figures, and the CPU's: docs/judging.md#engine-start-noise), worth twenty runs, so a pool of ten cells'
#: baselines outweighs it five times.
PRIOR_SLOW = 1.0
PRIOR_RUNS = 20.0
#: Quadrature over the centre's uncertainty (Gauss-Hermite) and the spread's (Gauss-Legendre panels over
#: the chi-square's quantiles, finer towards the quantile 0 where the true sd is large and a small p's
#: mass lies); above MAX_FREEDOM the spread is taken as known.
_CENTRE_NODES, _CENTRE_WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_CENTRE_WEIGHTS = _CENTRE_WEIGHTS / _CENTRE_WEIGHTS.sum()
_PANEL_EDGES = (0.0, 1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0)
_PANEL_NODES, _PANEL_WEIGHTS = np.polynomial.legendre.leggauss(8)
MAX_FREEDOM = 1e4
_WIDENINGS = 50


def harm_values(logs: Sequence[float] | np.ndarray, harm_sign: float) -> np.ndarray:
    """Log values turned so that harm is up (harm_sign +1: a rise is harmful, -1: a fall is)."""
    return harm_sign * np.asarray(logs, dtype=float)


def slow_starts(harm: Sequence[float] | np.ndarray, scale: float,
                threshold: float = SLOW_START_THRESHOLD) -> np.ndarray | None:
    """Which recorded runs are slow starts (module docstring): more than `threshold` robust sd on the
    harmful side of the median; None where the cell's runs are too few to examine
    (MIN_RUNS_TO_SET_ASIDE). `scale`: the smallest robust sd believed (the judge's floor, the pool's
    robust spread). The record counts them all; set_aside says which leave the core."""
    values = np.asarray(harm, dtype=float)
    if len(values) < MIN_RUNS_TO_SET_ASIDE:
        return None
    median = float(np.median(values))
    spread = max(1.4826 * float(np.median(np.abs(values - median))), scale)
    found: np.ndarray = values - median > threshold * spread
    return found


def set_aside(found: np.ndarray, rate: float = PRIOR_SLOW / PRIOR_RUNS) -> np.ndarray:
    """The slow starts that leave a cell's core: all of them, unless more than one and more than a run
    that slow starts with chance `rate` (the pool's) gives with probability HEAVY_TAIL_ALPHA: then none,
    the cell being heavy-tailed."""
    slow = int(np.count_nonzero(found))
    if slow > 1 and float(scipy_stats.binom.sf(slow - 1, len(found), rate)) < HEAVY_TAIL_ALPHA:
        return np.zeros(len(found), dtype=bool)
    return found


def robust_scale(groups: Sequence[Sequence[float]]) -> float:
    """1.4826 x the median absolute deviation of every value from its own group's median: the spread
    of a pool's cells together, which neither slow starts nor a few cells move (0 without values)."""
    deviations = [abs(v - float(np.median(group))) for group in groups if len(group) for v in group]
    return 1.4826 * float(np.median(deviations)) if deviations else 0.0


def prior_slow_runs(starts: int) -> float:
    """PRIOR_SLOW for runs that are each the median of `starts` engine starts (Workload.engine_starts): such
    a run is slow when at least half of its starts are, each with the prior's one in twenty (a median of
    two is their mean, which one slow start moves half-way)."""
    if starts <= 1:
        return PRIOR_SLOW
    one = PRIOR_SLOW / PRIOR_RUNS
    return PRIOR_RUNS * float(scipy_stats.binom.sf(math.ceil(starts / 2) - 1, starts, one))


@dataclass(frozen=True)
class SlowRecord:
    """What a pool's baselines say of slow starts: `slow` of the `examined` recorded runs lie past
    SLOW_START_THRESHOLD robust sd, each run the median of `starts` engine starts (None: not yet known,
    the empty record a sum starts from; taken as one).
    The chance r that a run is one has the posterior Beta(a + slow, PRIOR_RUNS - a + examined - slow),
    a = prior_slow_runs(starts): three starts a run make a slow run 1 in 138 a priori, not 1 in 20."""

    slow: float = 0.0
    examined: float = 0.0
    starts: int | None = None

    def __add__(self, other: SlowRecord) -> SlowRecord:
        known = [s for s in (self.starts, other.starts) if s is not None]
        # Records of runs over different numbers of starts: the fewer starts, the likelier a slow run.
        return SlowRecord(self.slow + other.slow, self.examined + other.examined, min(known, default=None))

    def __sub__(self, other: SlowRecord) -> SlowRecord:
        return SlowRecord(max(self.slow - other.slow, 0.0), max(self.examined - other.examined, 0.0),
                          self.starts)

    @property
    def prior_slow(self) -> float:
        return prior_slow_runs(self.starts or 1)

    @property
    def rate(self) -> float:
        """r's posterior mean."""
        return (self.prior_slow + self.slow) / (PRIOR_RUNS + self.examined)

    def moments(self, n: int) -> np.ndarray:
        """E[r^j] for j = 0..n under r's posterior."""
        a, total = self.prior_slow + self.slow, PRIOR_RUNS + self.examined
        steps = (a + np.arange(n)) / (total + np.arange(n))
        return np.concatenate([[1.0], np.cumprod(steps)])


@functools.lru_cache(maxsize=256)
def _spread_nodes(dof: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes of the true sd over the estimated one, sqrt(dof / chi2(dof)), and their weights."""
    if dof is None or dof > MAX_FREEDOM:
        return np.ones(1), np.ones(1)
    quantiles, weights = [], []
    for lo, hi in itertools.pairwise(_PANEL_EDGES):
        quantiles.append(lo + (hi - lo) * (_PANEL_NODES + 1.0) / 2.0)
        weights.append(_PANEL_WEIGHTS * (hi - lo) / 2.0)
    u = np.concatenate(quantiles)
    return np.sqrt(dof / scipy_stats.chi2.ppf(u, dof)), np.concatenate(weights)


@dataclass(frozen=True)
class CoreModel:
    """The core runs' distribution on the harm scale, with what is known of it: centre from `recorded`
    runs, spread with `dof` degrees of freedom (None: known), and the pool's record of slow starts."""

    centre: float
    sd: float
    recorded: int
    dof: float | None
    record: SlowRecord
    #: The judged cell's own record, where the pool's is `record`: slow starts may belong to some
    #: configurations more than others, so a FAIL must hold under the larger of the two p.
    own: SlowRecord | None = None

    def _tails(self, best: float) -> tuple[np.ndarray, np.ndarray]:
        """S(best) at every quadrature node, and the nodes' weights."""
        scales, scale_weights = _spread_nodes(self.dof)
        sd = self.sd * scales[:, None]
        centre = self.centre + sd * _CENTRE_NODES[None, :] / math.sqrt(max(self.recorded, 1))
        tails = special.ndtr((centre - best) / sd)  # the normal's upper tail at best
        return tails, scale_weights[:, None] * _CENTRE_WEIGHTS[None, :]

    def p_core(self, best: float, runs: int) -> float:
        """P(all `runs` core runs reach `best`): the raw p of harm, for PASS vs INCONCLUSIVE."""
        return self._p_core(*self._tails(best), runs)

    def p_fail(self, best: float, runs: int) -> float:
        """The same, each run a slow start with chance r: the p a FAIL is decided on.
        E[(S + r (1 - S))^n] = sum_j C(n, j) S^(n-j) (1 - S)^j E[r^j]."""
        return self._p_fail(*self._tails(best), runs)

    def p_values(self, best: float, runs: int) -> tuple[float, float]:
        """(p_core, p_fail) from one pass over the quadrature."""
        tails, weights = self._tails(best)
        return self._p_core(tails, weights, runs), self._p_fail(tails, weights, runs)

    @staticmethod
    def _p_core(tails: np.ndarray, weights: np.ndarray, runs: int) -> float:
        return min(max(float(np.sum(weights * tails**runs)), 0.0), 1.0)

    def _p_fail(self, tails: np.ndarray, weights: np.ndarray, runs: int) -> float:
        j = np.arange(runs + 1)
        spread = special.comb(runs, j)[:, None, None] * tails[None] ** (runs - j)[:, None, None] \
            * (1.0 - tails[None]) ** j[:, None, None]
        fail = max(float(np.sum(weights * np.tensordot(record.moments(runs), spread, axes=1)))
                   for record in self.records())
        return min(max(fail, 0.0), 1.0)

    def records(self) -> tuple[SlowRecord, ...]:
        """The records a FAIL must hold under: the pool's, and the cell's own where given."""
        return (self.record,) if self.own is None else (self.record, self.own)

    def floor(self, runs: int) -> float:
        """The smallest p_fail can be after `runs` runs: all of them slow starts, E[r^runs]."""
        return max(float(record.moments(runs)[-1]) for record in self.records())

    def bound(self, p: float, runs: int) -> float:
        """The best run's value (harm scale) at which p_fail reaches `p`; +inf where it never can
        (so many slow starts in a row are likelier than p)."""
        if p <= self.floor(runs):
            return math.inf
        return self._solve(lambda best: self.p_fail(best, runs), p)

    def core_bound(self, p: float, runs: int) -> float:
        """Where p_core reaches `p`: the harmful edge of a look that cannot FAIL (bound is inf)."""
        return self._solve(lambda best: self.p_core(best, runs), p)

    def benign_bound(self, p: float, runs: int) -> float:
        """The best run's value (harm scale) below which the best of `runs` core runs falls with chance p:
        the helpful edge of the band (p < 0.5 puts it below `bound(p)`)."""
        return self._solve(lambda best: self.p_core(best, runs), 1.0 - p)

    def _solve(self, p_of: Callable[[float], float], p: float) -> float:
        """Where the decreasing p_of(best) crosses p, on a log scale (inf where it stays above)."""
        if not 0.0 < p < 1.0:
            return math.inf if p <= 0.0 else -math.inf
        target = math.log(p)

        def gap(best: float) -> float:
            return math.log(max(p_of(best), 1e-300)) - target

        lo, hi, step = self.centre - 10 * self.sd, self.centre + 10 * self.sd, 10 * self.sd
        for _ in range(_WIDENINGS):  # widening geometrically: a spread of few dof has long tails
            if gap(hi) <= 0:
                break
            hi, step = hi + step, step * 2
        else:  # p barely above the floor: reached only far beyond any run seen
            return math.inf
        step = 10 * self.sd
        for _ in range(_WIDENINGS):
            if gap(lo) >= 0:
                break
            lo, step = lo - step, step * 2
        else:
            return -math.inf
        return float(optimize.brentq(gap, lo, hi, xtol=1e-6 * self.sd))
