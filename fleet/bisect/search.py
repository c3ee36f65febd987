"""Which commits to measure next, and when the culprit is known: the bisection's search, with no I/O.

git bisect and asv find measure one commit at a time and trust one run of it. This search follows
Chromium's Pinpoint instead, on a fleet of GPUs:
- k-ary search: each round measures up to `slots` commits at once, spread evenly over the commits still
  in question, so a range of N commits takes about log_{k+1} N rounds instead of log_2 N;
- a commit is placed on the good or the bad side by a three-valued comparison of its samples with both
  ends' (fleet.judge.compare); UNKNOWN buys more samples of whichever of the three has fewest, up to a cap, at
  which the commit is placed by the nearer end and marked as forced;
- a commit that cannot be measured (no image, build failure, an engine crash twice) is skipped; when
  such commits sit between the last good and the first bad commit the answer is a range, not a commit;
- before a culprit is reported it is verified: it and its parent, each with more runs than the one
  that placed it, must compare DIFFERENT, directly, in the same direction as the good and bad ends do
  (a latency slowdown first by the culprit's best run, fleet.judge.compare.compare_best_run: three runs
  where the rank tests need four and five), and the ends themselves must compare DIFFERENT; each look at
  a pair spends only its share of the level (Bisection._level), so the wrong-verified rate is bounded;
- slots a round's probes leave free run the commits that may become the culprit or its parent a second
  time, so the verification needs no round of its own when the bracket closes (and a flaky probe costs
  no round either).

The caller owns the clock and the machines: it asks `next_round()` for runs and `record()`s them.
`fleet bisect` runs fleet.bisect.posterior's search by default, which keeps this class's bookkeeping, ends
and verification and places the probes by the culprit's posterior instead (`--search pinpoint`: this one).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from fleet.bisect.rounds import RoundPlan, side_of, spread_evenly
from fleet.bisect.terms import (
    Classification,
    CommitRecord,
    Comparator,
    Finding,
    Observation,
    Run,
    SearchPolicy,
    Side,
    Status,
)
from fleet.judge.compare import (
    LOW_THRESHOLD,
    Comparison,
    Spread,
    Verdict,
    compare_best_run,
    one_sided,
    ranks_agree,
)

#: Degrees of freedom from which the pooled within-commit spread is handed to the comparator as noise.
POOLED_NOISE_MIN_FREEDOM = 4
#: Samples a commit needs before a level apart from both ends counts as a change of its own: with one
#: regression in the range, such a level is far more often an outlying run (on the H200 an ngram engine
#: start now and then reads acceptance length far low: docs/bisecting.md#noise-the-comparison-assumes).
INTERMEDIATE_SAMPLES = 3
#: Samples of each end that slots left free by a round's probes buy: one noisy end misplaces many commits.
END_SAMPLES = 3


class Bisection:
    """Search commits 0..n-1 for the first one that differs from commit 0 (good) as commit n-1 (bad) does."""

    def __init__(self, commits: int, compare: Comparator, policy: SearchPolicy,
                 recorded_noise: Spread | None = None) -> None:
        if commits < 2:
            raise ValueError("a bisection needs a good and a bad commit")
        self.recorded_noise = recorded_noise
        self.size = commits
        self.good, self.bad = 0, commits - 1
        self.compare = compare
        self.policy = policy
        self.records = [CommitRecord() for _ in range(commits)]
        self.rounds = 0
        self.runs = 0
        self.failed_runs = 0
        self.finding: Finding | None = None
        self._cache: dict[tuple[int, int, int, int, Spread | None], Classification] = {}
        #: Per pair of commits compared for the verdict, the (samples, samples) states it was looked at in.
        self._looks: dict[tuple[int, int], list[tuple[int, int]]] = {}

    # --- the caller's two calls ---------------------------------------------------------------------

    def next_round(self, refuses: Callable[[int], str | None] | None = None) -> list[Run]:
        """The runs of the next round (at most `slots`); empty once `finding` is set.

        `refuses(commit)`, if given, says before any run whether a commit can run at all (its image is
        built, or not): the reason if not. Such a commit is recorded untestable (no run spent) and the
        round planned again without it, so a broken range costs builds, not rounds of GPUs.
        """
        if self.finding is not None:
            return []
        if self.rounds >= self.policy.max_rounds:
            self._finish("unresolved", None, None, f"no answer within {self.policy.max_rounds} rounds")
            return []
        runs = self._plan()
        while refuses is not None and self.finding is None:
            refused = {r.commit: why for r in runs if (why := refuses(r.commit)) is not None}
            if not refused:
                break
            self.record([Observation(c, None, "untestable", why, ran=False) for c, why in refused.items()])
            runs = self._plan()  # each pass marks one commit untestable at least: it ends
        if not runs and self.finding is None:
            self._finish("unresolved", None, None, "nothing left to measure, and no answer")
        if runs:
            self.rounds += 1
        return runs

    def record(self, observations: Sequence[Observation]) -> None:
        for seen in observations:
            record = self.records[seen.commit]
            if seen.ran:
                self.runs += 1
                self.failed_runs += seen.value is None or seen.failure is not None
            if seen.value is not None and seen.failure is None:
                record.samples.append(seen.value)
                continue
            reason = seen.reason or (seen.failure or "failed")
            record.failures.append(reason if seen.ran else f"not run: {reason}")
            # A commit that has run once is testable: later failures of it are the machines' flakiness.
            gave_up = len(record.failures) >= self.policy.max_failures and not record.samples
            if seen.failure == "untestable" or gave_up:
                record.untestable = "; ".join(record.failures)

    # --- what the report shows ------------------------------------------------------------------------

    def magnitude(self) -> float:
        """The relative change between the ends' means (0 until both ends have a sample)."""
        good, bad = self.records[self.good].samples, self.records[self.bad].samples
        if not good or not bad:
            return 0.0
        centre = statistics.fmean(good)
        return abs(statistics.fmean(bad) - centre) / (abs(centre) or 1.0)

    def ends_comparison(self) -> Comparison | None:
        good, bad = self.records[self.good].samples, self.records[self.bad].samples
        if not good or not bad:
            return None
        # SAME asks whether a change worth finding could hide between them, not the one they happen to show.
        return self.compare(good, bad, max(self.magnitude(), self.policy.min_change), self._pooled_noise())

    def classify(self, commit: int) -> Classification:
        record = self.records[commit]
        if record.untestable is not None:
            return Classification(Side.UNTESTABLE)
        if commit == self.good:
            return Classification(Side.GOOD)
        if commit == self.bad:
            return Classification(Side.BAD)
        if not record.samples:
            return Classification(Side.UNMEASURED)
        good, bad = self.records[self.good].samples, self.records[self.bad].samples
        if not good or not bad:
            return Classification(Side.UNKNOWN)
        noise = self._pooled_noise()
        key = (commit, len(record.samples), len(good), len(bad), noise)
        if key not in self._cache:
            self._cache[key] = self._classify(record.samples, good, bad, noise)
        return self._cache[key]

    def bracket(self) -> tuple[int, int]:
        """(last good, first bad) as the samples stand; the culprit lies in (last good, first bad]."""
        sides = {c: self.classify(c).side for c in range(1, self.bad) if self.records[c].samples}
        first_bad = min([c for c, side in sides.items() if side is Side.BAD], default=self.bad)
        last_good = max([c for c, side in sides.items() if side is Side.GOOD and c < first_bad],
                        default=self.good)
        return last_good, first_bad

    # --- internals -------------------------------------------------------------------------------------

    def _classify(self, samples: list[float], good: list[float], bad: list[float],
                  noise: Spread | None) -> Classification:
        magnitude = self.magnitude()
        vs_good = self.compare(good, samples, magnitude, noise)
        vs_bad = self.compare(bad, samples, magnitude, noise)
        side = side_of(vs_good.verdict, vs_bad.verdict)
        both = vs_good.verdict is Verdict.DIFFERENT and vs_bad.verdict is Verdict.DIFFERENT
        if both and len(samples) < INTERMEDIATE_SAMPLES:
            # A level of its own is a second change, or one run's outlier: more samples tell which.
            side = Side.UNKNOWN
        if side is Side.UNKNOWN and len(samples) >= self.policy.max_samples:
            nearer_good = abs(statistics.fmean(samples) - statistics.fmean(good)) <= \
                abs(statistics.fmean(samples) - statistics.fmean(bad))
            return Classification(Side.GOOD if nearer_good else Side.BAD, vs_good, vs_bad, forced=True)
        return Classification(side, vs_good, vs_bad)

    def _pooled_noise(self) -> Spread | None:
        """Within-commit spread pooled over every commit measured twice or more, and the recorded one."""
        squares, freedom = 0.0, 0
        good = self.records[self.good].samples
        scale = abs(statistics.fmean(good)) if good else 0.0
        for record in self.records:
            if len(record.samples) >= 2 and scale:
                mean = statistics.fmean(record.samples)
                squares += sum(((x - mean) / scale) ** 2 for x in record.samples)
                freedom += len(record.samples) - 1
        if self.recorded_noise is not None:
            squares += self.recorded_noise.relative_sd ** 2 * self.recorded_noise.freedom
            freedom += self.recorded_noise.freedom
        if freedom < POOLED_NOISE_MIN_FREEDOM:
            return None
        return Spread(round(float((squares / freedom) ** 0.5), 6), freedom)

    def _finish_same(self, ends: Comparison) -> None:
        """The ends compared SAME: a change of the size hunted (the ends' own, or the policy's smallest
        change worth finding, whichever is larger) is ruled out between them."""
        ruled_out = max(self.magnitude(), self.policy.min_change)
        self._finish("no-regression", None, None, f"good and bad ends compare {ends.describe()}: their runs "
                     f"rule out a change of {ruled_out:.1%} or more between them")

    def _level(self, pair: tuple[int, int]) -> float:
        """The p a DIFFERENT between `pair`'s samples must reach at this look: the search's error level
        (fleet.judge.compare.LOW_THRESHOLD) times this look's share. As the judge splits its false-alarm
        budget over the looks of its rerun loop (fleet.judge.noisy.look_share), a pair tested again after
        every round would be verified by a test repeated until it rejects; unlike the judge's loop the
        number of looks is not known in advance, so look j of a pair (a new count of samples on either
        side) gets 1 / (j (j + 1)) of the level, shares that sum to 1 over any number of looks."""
        state = (len(self.records[pair[0]].samples), len(self.records[pair[1]].samples))
        seen = self._looks.setdefault(pair, [])
        if state not in seen:
            seen.append(state)
        look = seen.index(state) + 1
        return LOW_THRESHOLD / (look * (look + 1))

    def _ends_shown_different(self) -> Comparison | None:
        """The ends' comparison when it is DIFFERENT at the corrected level of this look at them, else None:
        a culprit verified against its parent between ends that never differed is one pair of many that
        happened to read apart."""
        ends = self.ends_comparison()
        if ends is None or ends.verdict is not Verdict.DIFFERENT:
            return None
        return ends if ends.p_value <= self._level((self.good, self.bad)) else None

    def _finish(self, status: Status, first: int | None, last: int | None, reason: str,
                verified: bool = False, verification: Comparison | None = None) -> None:
        self.finding = Finding(status, first, last, verified, reason, self.ends_comparison(), verification)

    def _plan(self) -> list[Run]:
        plan = RoundPlan(self.policy.slots)
        if self._an_end_cannot_run():
            return []
        for end in (self.good, self.bad):
            if not self.records[end].samples:
                plan.add(end, "end")
        ends = self.ends_comparison()
        if ends is not None and ends.verdict is not Verdict.DIFFERENT:
            if ends.verdict is Verdict.SAME:
                self._finish_same(ends)
                return []
            if not self._more_of_an_end(plan, ends):
                return []
        last_good, first_bad = self.bracket()
        inside = [c for c in range(last_good + 1, first_bad) if self.records[c].untestable is None]
        unknown = [c for c in inside if self.records[c].samples]  # measured, yet neither good nor bad
        unmeasured = [c for c in inside if not self.records[c].samples]
        if ends is not None and ends.verdict is Verdict.DIFFERENT and not unknown and not unmeasured:
            return self._verify(last_good, first_bad, plan)
        middle = (last_good + first_bad) / 2
        ends_measured = all(self.records[end].samples for end in (self.good, self.bad))
        for commit in sorted(unknown, key=lambda c: abs(c - middle)) if ends_measured else []:
            target = self._fewest([commit, self.good, self.bad])
            if target is None or plan.has(target, "resample"):
                continue
            extra = len(self.records[target].samples) if self.policy.resample == "double" else 1
            for _ in range(min(max(extra, 1), self.policy.max_samples - len(self.records[target].samples))):
                plan.add(target, "resample")
        probes = spread_evenly(unmeasured, plan.free)
        for commit in probes:
            plan.add(commit, "probe")
        closing = ends is not None and ends.verdict is Verdict.DIFFERENT and len(probes) == len(unmeasured)
        if plan.free > 0 and closing:
            # The bracket may close this round: whichever neighbours turn out parent and culprit should
            # then have their second run already, the probes' first (a flaky first run is covered too).
            for commit in [*probes, *unknown, last_good, first_bad]:
                if len(self.records[commit].samples) + plan.count(commit) < 1 + self.policy.verify_fresh:
                    plan.add(commit, "verify")
        if ends_measured:
            # Whatever is still free firms up the ends, against which every commit is placed.
            for end in sorted((self.good, self.bad), key=lambda e: len(self.records[e].samples)) * 2:
                if plan.free > 0 and len(self.records[end].samples) + plan.count(end) < END_SAMPLES:
                    plan.add(end, "end")
        return plan.runs

    def _verify(self, parent: int, culprit: int, plan: RoundPlan) -> list[Run]:
        """The culprit and its parent compared directly, each with more runs than the one that placed it."""
        exact = culprit - parent == 1
        status: Status = "culprit" if exact else "range"
        hidden = "" if exact else f" ({culprit - parent - 1} untestable commits before it could hold it)"
        needed = 1 + self.policy.verify_fresh
        lacking = [c for c in (parent, culprit) if len(self.records[c].samples) < needed]
        if not lacking:
            noise = None if self.policy.verify_on_samples else self._pooled_noise()
            check = self.compare(self.records[parent].samples, self.records[culprit].samples,
                                 self.magnitude(), noise)
            ends = self.ends_comparison()
            same_way = ends is None or (check.relative_difference > 0) == (ends.relative_difference > 0)
            parent_runs, culprit_runs = self.records[parent].samples, self.records[culprit].samples
            if same_way and ends is not None and ranks_agree(parent_runs, culprit_runs, ends):
                check = self._slower_at_best(parent_runs, culprit_runs) or one_sided(check)
            level = self._level((parent, culprit))
            if check.verdict is Verdict.DIFFERENT and same_way and check.p_value <= level:
                if self._ends_shown_different() is not None:
                    self._finish(status, parent + 1, culprit, f"verified against its parent{hidden}", True,
                                 check)
                    return []
                return self._more_of_the_ends(status, parent, culprit, plan, check, hidden)
            # Compared on their own samples, the parent and the culprit are what the verdict needs more
            # of; the ends only when they are at the cap.
            pair = [parent, culprit]
            if self.policy.verify_on_samples and self._fewest(pair) is not None:
                while plan.free > 0 and (more := self._fewest(pair, plan)) is not None:
                    plan.add(more, "verify")
                return plan.runs
            # Not DIFFERENT directly although both were placed apart by the ends: the ends may be the
            # ones off, so they are candidates for more samples as well.
            more = self._fewest([parent, culprit, self.good, self.bad])
            if more is None:
                self._finish(status, parent + 1, culprit,
                             f"NOT verified: against its parent it compares {check.describe()} at the sample "
                             f"cap{hidden}", False, check)
                return []
            plan.add(more, "verify")
            for commit in (parent, culprit, self.good, self.bad):
                if commit != more and len(self.records[commit].samples) < self.policy.max_samples:
                    plan.add(commit, "verify")
            return plan.runs
        # Each lacking commit runs twice, so that one flake does not cost a round (two in a row: 1 in 400).
        for commit in lacking * 2:
            plan.add(commit, "verify")
        return plan.runs

    def _more_of_the_ends(self, status: Status, parent: int, culprit: int, plan: RoundPlan, check: Comparison,
                          hidden: str) -> list[Run]:
        """The pair differs but the ends have not been shown to: the round goes to the ends (fewest first),
        or, with both at the sample cap, the culprit is reported NOT verified."""
        if self._fewest([self.good, self.bad]) is None:
            ends = self.ends_comparison()
            self._finish(status, parent + 1, culprit,
                         f"NOT verified: it differs from its parent, but the good and bad ends compare "
                         f"{ends.describe() if ends else '-'} at the sample cap, not DIFFERENT at this "
                         f"look's level{hidden}", False, check)
            return []
        while plan.free > 0 and (more := self._fewest([self.good, self.bad], plan)) is not None:
            plan.add(more, "end")
        return plan.runs

    def _slower_at_best(self, parent_runs: Sequence[float],
                        culprit_runs: Sequence[float]) -> Comparison | None:
        """fleet.judge.compare.compare_best_run's DIFFERENT (a change to the side slow engine starts read on)
        for a metric that has slow starts and a spread known; None otherwise (the rank tests decide). The
        culprit's first run chose it (it read slow, or the search would not have put it here), so it is
        no evidence: among the commits a search probes, one with a slow start and then another gets to
        verification often enough that, counted, the Pinpoint search verified wrong commits several times
        as often as without it (benchmarks/bisect_efficiency.py; docs/bisecting.md#wrong-verified-rates)."""
        noise = self._pooled_noise()
        if noise is None or not self.policy.slow_side:
            return None
        check = compare_best_run(parent_runs, culprit_runs, noise=noise, slow_side=self.policy.slow_side,
                                 chosen=1)
        return check if check.verdict is Verdict.DIFFERENT else None

    def _an_end_cannot_run(self) -> bool:
        """True, and the search finished as unresolved, when the good or the bad end is untestable."""
        for end, which in ((self.good, "good"), (self.bad, "bad")):
            if self.records[end].untestable is not None:
                self._finish("unresolved", None, None,
                             f"the {which} end cannot be measured: {self.records[end].untestable}")
                return True
        return False

    def _more_of_an_end(self, plan: RoundPlan, ends: Comparison) -> bool:
        """A run of the end with fewer samples, for ends that compare UNKNOWN; False, and the search
        finished as no regression, when both are at the sample cap."""
        more = self._fewest([self.good, self.bad])
        if more is None:
            # Not SAME: a change worth finding is not ruled out, so this is no "no regression".
            self._finish("unresolved", None, None,
                         f"good and bad ends still compare {ends.describe()} at the sample cap: neither a "
                         "difference nor its absence shown")
            return False
        plan.add(more, "end")
        return True

    def _fewest(self, commits: Sequence[int], plan: RoundPlan | None = None) -> int | None:
        """The commit with fewest samples below the cap (the first of equals), None if all are at it;
        with `plan`, the runs it already holds count as samples."""
        def held(commit: int) -> int:
            return len(self.records[commit].samples) + (plan.count(commit) if plan is not None else 0)

        open_ = [c for c in commits if held(c) < self.policy.max_samples]
        return min(open_, key=held) if open_ else None
