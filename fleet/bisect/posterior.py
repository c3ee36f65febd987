"""Where the culprit probably is, from every sample so far: the bisection's probabilistic search, no I/O.

fleet.bisect.search's Pinpoint search places each probed commit on the good or the bad side by a three-valued
comparison and narrows the bracket on every DIFFERENT. With one run per probe and a step only a few noise
widths tall, that trusts too much and too little at once: one outlying run puts a commit on the wrong
side and the bracket walks away until the verification fails rounds later (small ngram acceptance-length
steps missed the 7-round bar that way), and an UNKNOWN holds the bracket where it is until more samples
come (GPU-bound TPOT steps took far more rounds); benchmarks/bisect_efficiency.py prints both searches
(figures: docs/bisecting.md#design-choices-measured).

Probabilistic bisection (Horstein 1963; Waeber, Frazier and Henderson, "Bisection search with noisy
responses", 2013) keeps instead the probability of every commit being the first changed one, updated
with every sample through the noise's likelihood, and probes where that mass splits evenly. Here:
- one change between the ends: commits before the culprit share one mean, it and those after another;
  each side's mean is estimated from all the samples that side holds for that culprit (profile
  likelihood), so every run counts, the ends' as much as the probes';
- the noise is Student's t with TAIL_FREEDOM degrees of freedom around those means, scaled by the
  recorded spread pooled with the bisection's own (never below the policy's floor): now and then one
  ngram engine start reads far low (docs/bisecting.md#noise-the-comparison-assumes), which a normal
  likelihood would believe;
- k slots probe the commits at the posterior's quantiles 1/(k+1) .. k/(k+1), the k-ary search of a
  noise-free world; when the mass piles up on one commit, its quantiles land on it and its parent, which
  is how they are resampled;
- the answer is the group of commits (one, or several when untestable ones hide it) holding at least
  1 - policy.alpha of the mass; it is reported only once it and its parent, each with more runs than the
  one that placed them, compare DIFFERENT with fleet.judge.compare in the ends' direction: the verification is
  the same three-valued comparison as before, not the posterior's word, between ends that compare
  DIFFERENT. Ends that compare SAME end the search (no regression); ends still UNKNOWN get more runs only
  once the probes have found nothing, and an end alone on its side for much of the mass gets runs with
  the probes, and once the leading group has an end in it, the end and its neighbour run in
  the same round (_runs_next_to_ends), so a culprit next to either end resolves.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from fleet.bisect.rounds import RoundPlan
from fleet.bisect.search import Bisection
from fleet.bisect.terms import Comparator, Run, SearchPolicy, smallest_change
from fleet.judge.compare import (
    COUNTS_NOISE_FLOOR,
    LATENCY_KNOWN_FLOOR,
    LATENCY_NOISE_FLOOR,
    Spread,
    Verdict,
)
from fleet.model.metrics import MetricClass, metric_info

#: The likelihood's relative sd floor for counter metrics: half ngram's measured spread, above
#: draft_model's (docs/bisecting.md#noise-the-comparison-assumes); a recorded or pooled spread above it
#: is used as it is.
COUNTS_LIKELIHOOD_FLOOR = 0.005
#: Rounds before ends that compare UNKNOWN get runs of their own while the probes have found nothing (a
#: leading group under half the mass): earlier, every probe is worth more than an end's second run,
#: since the posterior weighs the probes' samples as much as the ends'.
END_PATIENCE = 3
#: Degrees of freedom of the likelihood's Student's t: heavy enough a tail that one run 3 sd off weighs
#: against its side by a factor of about 20, not the normal's 90. Its scale is the spread itself, so the
#: t spreads sqrt(2) times wider than the runs: deliberately. Scaled to the spread's variance (and with
#: both levels shared by every culprit, not fitted per culprit), ngram and GPU-bound TPOT culprits were
#: found a little sooner, but runs twice as noisy as the recorded spread verified wrong commits far more
#: often (figures: docs/bisecting.md#design-choices-measured).
TAIL_FREEDOM = 4.0
#: Posterior mass below which the bracket reported each round (bracket()) leaves commits out, each side.
BRACKET_TAIL = 0.005



def culprit_posterior(samples: list[list[float]], relative_sd: float) -> np.ndarray:
    """P(commit c is the first changed one) for c = 1 .. n-1 (element c - 1), from a uniform prior.

    `samples[i]`: commit i's values; commits 0 and n-1 (the ends) must have one at least. For each c the
    commits before it share one mean, c and those after another, each the mean of that side's samples.
    """
    size = len(samples)
    index = np.asarray([i for i, values in enumerate(samples) for _ in values], dtype=int)
    values = np.asarray([v for row in samples for v in row], dtype=float)
    # Relative to the good end's level, as the recorded spread is; the bad end's where good reads 0.
    level = abs(statistics.fmean(samples[0])) or abs(statistics.fmean(samples[-1]))
    scale = (level or 1.0) * relative_sd
    per_commit_sum = np.bincount(index, weights=values, minlength=size)
    per_commit_count = np.bincount(index, minlength=size).astype(float)
    culprits = np.arange(1, size)
    before_sum = np.cumsum(per_commit_sum)[culprits - 1]
    before_count = np.cumsum(per_commit_count)[culprits - 1]
    good_mean = before_sum / before_count
    bad_mean = (values.sum() - before_sum) / (len(values) - before_count)
    on_good_side = index[None, :] < culprits[:, None]
    centre = np.where(on_good_side, good_mean[:, None], bad_mean[:, None])
    z = (values[None, :] - centre) / scale
    log_likelihood = -(TAIL_FREEDOM + 1) / 2 * np.log1p(z * z / TAIL_FREEDOM).sum(axis=1)
    weights = np.exp(log_likelihood - log_likelihood.max())
    posterior: np.ndarray = weights / weights.sum()
    return posterior


class PosteriorBisection(Bisection):
    """fleet.bisect.search's Bisection with the probes placed, and the culprit found, by the culprit's
    posterior."""

    def __init__(self, commits: int, compare: Comparator, policy: SearchPolicy,
                 recorded_noise: Spread | None = None) -> None:
        super().__init__(commits, compare, policy, recorded_noise)
        self._cdf: tuple[object, np.ndarray] | None = None  # (what it was computed from, the cdf)

    def posterior_cdf(self) -> np.ndarray | None:
        """P(culprit <= i) for i = 0 .. n-1 (0 at i = 0), or None while an end has no sample."""
        if not (self.records[self.good].samples and self.records[self.bad].samples):
            return None
        sd = self._likelihood_sd()
        key = (tuple(len(r.samples) for r in self.records), sd)
        if self._cdf is None or self._cdf[0] != key:
            posterior = culprit_posterior([r.samples for r in self.records], sd)
            self._cdf = key, np.concatenate([[0.0], np.cumsum(posterior)])
        return self._cdf[1]

    def bracket(self) -> tuple[int, int]:
        """(last good, first bad) of the posterior's central 1 - 2 x BRACKET_TAIL: what the rounds report."""
        cdf = self.posterior_cdf()
        if cdf is None:
            return self.good, self.bad
        last_good = max(int(np.searchsorted(cdf, BRACKET_TAIL, side="right")) - 1, self.good)
        first_bad = min(int(np.searchsorted(cdf, 1.0 - BRACKET_TAIL)), self.bad)
        return last_good, max(first_bad, last_good + 1)

    def leading_group(self) -> tuple[int, int, float] | None:
        """(parent, culprit, mass): the consecutive testable commits whose gap holds the most mass."""
        cdf = self.posterior_cdf()
        if cdf is None:
            return None
        testable = np.asarray([c for c in range(self.size) if self.records[c].untestable is None])
        masses = cdf[testable[1:]] - cdf[testable[:-1]]
        best = int(np.argmax(masses))
        return int(testable[best]), int(testable[best + 1]), float(masses[best])

    def _likelihood_sd(self) -> float:
        pooled = self._pooled_noise()
        if pooled is None:
            return max(self.policy.noise_guess, self.policy.noise_floor)
        return max(pooled.relative_sd, self.policy.noise_floor)

    def _plan(self) -> list[Run]:
        plan = RoundPlan(self.policy.slots)
        if self._an_end_cannot_run():
            return []
        inside = [c for c in range(1, self.bad) if self.records[c].untestable is None]
        if not (self.records[self.good].samples and self.records[self.bad].samples):
            # The first round (or an end's runs all flaked): the ends, and the prior's quantiles.
            for end in (self.good, self.bad):
                if not self.records[end].samples:
                    plan.add(end, "end")
            # A commit refused before running moves only its own probe when the round is planned again.
            self._add_quantile_probes(plan, inside, np.arange(self.size) / (self.size - 1))
            return plan.runs
        ends = self.ends_comparison()
        assert ends is not None
        if ends.verdict is Verdict.SAME:
            self._finish_same(ends)
            return []
        group = self.leading_group()
        assert group is not None
        parent, culprit, mass = group
        if ends.verdict is Verdict.UNKNOWN and self.rounds >= END_PATIENCE and mass < 0.5 and \
                not self._more_of_an_end(plan, ends):
            return []
        if mass >= 1.0 - self.policy.alpha:
            return self._verify(parent, culprit, plan)
        cdf = self.posterior_cdf()
        assert cdf is not None
        for run in self._runs_next_to_ends(cdf, group):
            plan.add(run.commit, run.purpose)
        self._add_quantile_probes(plan, inside, cdf)
        while plan.free > 0:
            more = self._fewest([c for c in (parent, culprit, self.good, self.bad)
                                 if len(self.records[c].samples) + plan.count(c) < self.policy.max_samples])
            if more is None:
                break
            plan.add(more, "verify" if more in (parent, culprit) else "end")
        return plan.runs

    def _runs_next_to_ends(self, cdf: np.ndarray, group: tuple[int, int, float]) -> list[Run]:
        """Runs of the ends that are the only sample of their side for a share of the posterior a probe
        would carry (1 / (k + 1)): culprits up to the first measured commit have the good end alone on the
        good side, those after the last measured one the bad end alone on the bad side. There one end's
        run weighs as much as all the probes: a culprit right after good read against a single good run is
        as well explained by that run being an outlier and no change anywhere (issue 32: unresolved in 30
        of 35 seeds after 40 rounds), so such an end gets a run while it has no more samples than its
        nearest measured neighbour.

        Once the leading group (`group`: parent, culprit, mass) has an end as its parent or its culprit,
        that end gets a run whatever its neighbour holds, and the group's other commit one in the same
        round while it has no more samples than the end: an ngram end that read one outlying run of
        -2 % keeps the mass next to it near 1 / (k + 1) while the probes go to commits that cannot tell an
        outlier from a change (ngram, culprit right after good / at the bad end: within 8 rounds 97.8 /
        98.0 % without this, 99.0 / 99.6 % with it; docs/bisecting.md#scenario-families-issue-32)."""
        measured = [c for c in range(1, self.bad) if self.records[c].samples]
        if not measured:
            return []  # no probe has read yet: every end is alone on its side, and the probes come first
        first, last = min(measured), max(measured)
        share = 1.0 / (self.policy.slots + 1)
        wanted = []
        for end, neighbour, mass in ((self.good, first, float(cdf[first])),
                                     (self.bad, last, 1.0 - float(cdf[last]))):
            samples = len(self.records[end].samples)
            if samples >= self.policy.max_samples:
                continue
            leads = end in group[:2]
            if leads or (mass >= share and samples <= len(self.records[neighbour].samples)):
                wanted.append(Run(end, "end"))
            other = group[1] if end == group[0] else group[0]
            if leads and len(self.records[other].samples) <= min(samples, self.policy.max_samples - 1):
                wanted.append(Run(other, "verify"))
        return wanted

    def _add_quantile_probes(self, plan: RoundPlan, inside: list[int], cdf: np.ndarray) -> None:
        """One run at each of the quantiles j / (k + 1) of `cdf` (P(culprit <= i)): the commit whose cdf is
        nearest, among those below their sample cap. Where the mass sits on one or two commits several
        quantiles land on them, tried or not, which is how the culprit and its parent get their runs (one
        run a round for a commit never measured cost ngram 3 points of bisections within 7 rounds, 200
        trials: a second run of a commit that cannot run is the cheaper loss)."""
        wanted = plan.free
        for j in range(wanted):
            open_ = np.asarray([c for c in inside if len(self.records[c].samples) + plan.count(c) <
                                self.policy.max_samples])
            if not len(open_):
                return
            quantile = (j + 1) / (wanted + 1)
            commit = int(open_[int(np.argmin(np.abs(cdf[open_] - quantile)))])
            plan.add(commit, "resample" if self.records[commit].samples or plan.count(commit) else "probe")


def likelihood_noise(kind: MetricClass) -> tuple[float, float]:
    """(floor, guess) of the likelihood's relative sd for a metric of this kind: counters are believed
    down to COUNTS_LIKELIHOOD_FLOOR and guessed at fleet.judge.compare's counts floor before anything is
    known; latency keeps fleet.judge.compare's floors (a known spread's, and the one it assumes with none)."""
    if kind == "latency":
        return LATENCY_KNOWN_FLOOR, LATENCY_NOISE_FLOOR
    return COUNTS_LIKELIHOOD_FLOOR, COUNTS_NOISE_FLOOR


def metric_policy(metric: str, slots: int, **choices: Any) -> SearchPolicy:
    """The search policy `fleet bisect` hunts a change of `metric` (a known one: fleet.suite.derive) with:
    latency resampled by doubling, its culprit verified on its own samples, slow starts on its slow side,
    and each kind's likelihood noise and smallest change; `choices` set the rest (or override these)."""
    info = metric_info(metric)
    if info is None:
        raise ValueError(f"unknown metric {metric!r}")
    latency = info.kind == "latency"
    floor, guess = likelihood_noise(info.kind)
    made: dict[str, Any] = {
        "resample": "double" if latency else "one", "verify_on_samples": latency,
        "slow_side": (1 if info.better == "lower" else -1) if latency else 0,
        "noise_floor": floor, "noise_guess": guess, "min_change": smallest_change(info.kind)}
    return SearchPolicy(slots=slots, **{**made, **choices})


def start_bisection(commits: int, compare: Comparator, policy: SearchPolicy,
                    recorded_noise: Spread | None = None) -> Bisection:
    """The search the policy names, over commits 0 (good) .. commits - 1 (bad)."""
    search = PosteriorBisection if policy.search == "posterior" else Bisection
    return search(commits, compare, policy, recorded_noise)
