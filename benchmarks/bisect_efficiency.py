"""How well, how fast and how cheaply `fleet bisect` finds a planted regression, against serial bisection.

Seeded trials over N = 1,000 commits: one planted regression per trial, broken ranges, 5 % flaky runs.
fleet's search (fleet.bisect.search + fleet.judge.compare, exactly as `fleet bisect` runs them) with
k = 1, 2, 4, 8 slots per round, beside serial bisection with one run per commit (git bisect / asv find:
each commit is placed by whichever end its single run is nearer; a failed run is skipped as
`git bisect skip` does).

Noise, from real repeated runs (say which with every table): every RunResult under evidence/h200/runs/,
series/, mseries/ and mseries2/ (vLLM 0.26.0, four leases of an H200, each run a fresh engine start), grouped
by cell; a family's noise is a smoothed bootstrap of the relative residuals around each cell's mean (a
drawn residual plus normal jitter of Silverman's robust bandwidth, both shrunk by 1 / sqrt(1 + h^2 / s^2)
so that the draws spread as the recorded runs do: benchmarks/smoothing.py), so heavy tails (one slow
engine start in several) are kept:
- acceptance length, draft_model: its cell's runs;
- acceptance length, ngram: its cell's runs;
- TPOT p50: both tiny cells' runs pooled (host-bound: a 6 M-parameter target's decode step is the CPU's);
- TPOT p50, GPU-bound: the 8B-shaped cell's runs (evidence/h200/mseries and mseries2: 20 engine starts on
  two hosts, one of them a whole slow start at +17 %), as an 8B-class target's;
- the same, with runs twice as noisy as the spread handed to the search (a pool noisier than the lease
  its baseline was recorded on): what a too-small recorded spread costs in wrong culprits.

fleet's search is handed each family's spread over those runs, as `fleet bisect` takes it from the cell's
baseline (--baselines): the comparisons judge by it from the first round.

Planted regressions: acceptance length -3 ... -20 %, TPOT +5 ... +30 % (uniform). A broken range of 1-8
commits in 30 % of trials (half of them right before or over the culprit: no image / build failure),
and 5 % of all runs fail as flakes. A broken commit is found when its image is built, before a run (as
`fleet bisect --build-images` and the sim backend's no-image / build-failure commits are), and its slot
goes to another commit in the same round; an engine that crashes on every start would cost runs.
The "oracle" knows each commit's side exactly from one run, knows
which commits are broken, never flakes and needs no runs of the ends: its runs are the probes of a
noise-free k-ary search using k slots a round, its rounds ceil(log_{k+1} N') for the N' testable
candidates. fleet's two searches (--search): "posterior" (fleet.bisect.posterior, `fleet bisect`'s
default) and "pinpoint" (fleet.bisect.search: each commit placed by three-valued comparisons).
The "ceiling" line (benchmarks/bisect_ideal.py): at k = 4, on the trials without a broken range, a search
told both levels and the exact density of the runs' noise, with no ends to run and nothing to verify; what
the rounds bar leaves to any search on that noise, beside fleet's share on the same trials.
--engine-starts M: every latency run (the ends', the probes', the baseline's spread) is the median of M
engine starts, as a tier whose workload sets engine_starts: M measures it (fleet.suite.runner); a run then
costs M starts, which the runs columns do not multiply.
--scenarios: instead, the scenario families of benchmarks/bisect_scenarios.py (a culprit right after good
or at the bad end, a noisy host, a flat range) at k = 4, and the wrong-verified rate over all of them with
its Clopper-Pearson bound; every run of the main families ends with that line for its rows too.
Run: python benchmarks/bisect_efficiency.py [--trials 1000] [--seed 1] [--search posterior pinpoint]
     [--engine-starts 1] [--scenarios]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bisect_ideal import ideal_search, log_density
from bisect_noise import Family, MedianNoise, families
from bisect_scenarios import SCENARIOS, Tally, outcome, pct, percentile, print_scenario, rate_line
from markdown_section import markdown_section

from fleet.bisect.posterior import metric_policy, start_bisection
from fleet.bisect.rounds import rounds_lower_bound, spread_evenly
from fleet.bisect.search import Bisection
from fleet.bisect.terms import Observation
from fleet.judge.compare import Spread, compare

N = 1000
FLAKY = 0.05
BROKEN_SHARE = 0.3


@dataclass(frozen=True)
class Trial:
    culprit: int
    shift: float
    broken: frozenset[int]
    seed: int

    def truth(self) -> tuple[int, int] | None:
        """The right answer: (first, last) candidates, wider than one commit when broken ones hide it;
        None for a flat range (culprit N: no commit changes)."""
        if self.culprit >= N:
            return None
        last = next(c for c in range(self.culprit, N) if c not in self.broken)
        first = max(c for c in range(0, self.culprit) if c not in self.broken) + 1
        return first, last


def make_trial(rng: random.Random, family: Family, seed: int, place: str = "anywhere") -> Trial:
    """`place`: "anywhere" (2 .. N - 3), "first" (commit 1), "last" (the bad end), "flat" (no change)."""
    culprit = {"first": 1, "last": N - 1, "flat": N}.get(place) or rng.randrange(2, N - 2)
    broken: set[int] = set()
    if rng.random() < BROKEN_SHARE:
        length = rng.randint(1, 8)
        start = culprit - rng.randint(0, length) if rng.random() < 0.5 else rng.randrange(1, N - length - 1)
        broken = {c for c in range(start, start + length) if 0 < c < N - 1}
    shift = rng.uniform(family.low, family.high)
    return Trial(culprit, 0.0 if place == "flat" else shift, frozenset(broken), seed)


def measure(trial: Trial, family: Family, rng: random.Random, commit: int) -> Observation:
    if commit in trial.broken:
        return Observation(commit, None, "untestable", "BuildFailure")
    if rng.random() < FLAKY:
        return Observation(commit, None, "transient", "NodeLost")
    mean = 2.0 * (1 + trial.shift if commit >= trial.culprit else 1.0)
    return Observation(commit, mean * (1 + family.noise.draw(rng)))


Outcome = tuple[bool, bool, int, int, bool]  # right, right and verified, rounds, runs, verified but wrong


def run_fleet(trial: Trial, family: Family, slots: int, search_kind: str = "posterior") -> Outcome:
    search = bisect_trial(trial, family, slots, search_kind)
    finding = search.finding
    assert finding is not None
    right = (finding.first, finding.last) == trial.truth()
    return right, right and finding.verified, search.rounds, search.runs, finding.verified and not right


def bisect_trial(trial: Trial, family: Family, slots: int, search_kind: str = "posterior") -> Bisection:
    """fleet's search run to its answer on the trial, as `fleet bisect` runs it."""
    rng = random.Random(trial.seed * 7919 + slots)
    policy = metric_policy(family.metric, slots, max_samples=family.max_samples, search=search_kind)

    def judge(a: Sequence[float], b: Sequence[float], magnitude: float, noise: Spread | None):  # type: ignore[no-untyped-def]
        return compare(a, b, magnitude=magnitude, kind=family.kind, noise=noise)

    def refuses(commit: int) -> str | None:  # its image does not build: known before a run
        return "BuildFailure" if commit in trial.broken else None

    search = start_bisection(N, judge, policy, family.recorded)
    while runs := search.next_round(refuses):
        search.record([measure(trial, family, rng, run.commit) for run in runs])
    return search


def run_serial(trial: Trial, family: Family) -> tuple[bool, int]:
    """git bisect with one run per commit: a failed run is skipped, the nearer end decides."""
    rng = random.Random(trial.seed * 104729)
    runs = 0

    def once(commit: int) -> float | None:
        nonlocal runs
        runs += 1
        seen = measure(trial, family, rng, commit)
        return seen.value

    good_value, bad_value = once(0), once(N - 1)
    while good_value is None:
        good_value = once(0)
    while bad_value is None:
        bad_value = once(N - 1)
    low, high, skipped = 0, N - 1, set()
    while True:
        left = [c for c in range(low + 1, high) if c not in skipped]
        if not left:
            break
        middle = min(left, key=lambda c: abs(c - (low + high) / 2))
        value = once(middle)
        if value is None:
            skipped.add(middle)
            continue
        if abs(value - good_value) <= abs(value - bad_value):
            low = middle
        else:
            high = middle
    return (low + 1, high) == trial.truth(), runs


def oracle(trial: Trial, slots: int) -> tuple[int, int]:
    """Rounds and runs of a k-ary search that knows each testable commit's side from one run."""
    low, high, rounds, runs = 0, N - 1, 0, 0
    while True:
        left = [c for c in range(low + 1, high) if c not in trial.broken]
        if not left:
            return rounds, runs
        probes = spread_evenly(left, slots)
        rounds, runs = rounds + 1, runs + len(probes)
        for probe in probes:
            if probe >= trial.culprit:
                high = min(high, probe)
            else:
                low = max(low, probe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--families", type=int, nargs="+", default=None, help="indices of the families")
    parser.add_argument("--search", nargs="+", choices=("posterior", "pinpoint"),
                        default=["posterior", "pinpoint"])
    parser.add_argument("--engine-starts", type=int, default=1,
                        help="engine starts per run (a tier's workload.engine_starts): each latency run is "
                        "the median of this many")
    parser.add_argument("--scenarios", action="store_true",
                        help="run the scenario families (benchmarks/bisect_scenarios.py) instead, k = 4")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write what is printed into this doc, as the section of this command")
    args = parser.parse_args()
    with markdown_section(args.markdown, "bisect_efficiency", sys.argv[1:]):
        (report_scenarios if args.scenarios else report)(args)


def report_scenarios(args: argparse.Namespace) -> None:
    """Each scenario family at k = 4, fleet's posterior search; then the wrong-verified rate over all."""
    every = families(args.engine_starts)
    bar = rounds_lower_bound(N, 4) + 3
    print(f"N = {N} commits, {args.trials} seeded trials per scenario, {FLAKY:.0%} flaky runs, broken range "
          f"in {BROKEN_SHARE:.0%} of trials, k = 4, posterior search; bar for a culprit at either end: "
          f"ceil(log5 N) + 3 = {bar} rounds")
    wrong = total = 0
    for scenario in SCENARIOS:
        if args.families is not None and scenario.family not in args.families:
            continue
        family, rng = every[scenario.family], random.Random(args.seed)
        trials = [make_trial(rng, family, args.seed * 100003 + i, scenario.place) for i in range(args.trials)]
        rows = []
        for trial in trials:
            search = bisect_trial(trial, family, 4)
            assert search.finding is not None
            rows.append(outcome(search.finding, trial.truth(), search.rounds))
        print_scenario(scenario, Tally(rows), bar)
        wrong, total = wrong + sum(r[2] for r in rows), total + len(rows)
    print(rate_line(wrong, total))


def report(args: argparse.Namespace) -> None:
    every = families(args.engine_starts)
    chosen = every if args.families is None else [every[i] for i in args.families]
    print(f"N = {N} commits, {args.trials} seeded trials per row, {FLAKY:.0%} flaky runs, broken range in "
          f"{BROKEN_SHARE:.0%} of trials; bar: the exact culprit (or range) within ceil(log_(k+1) N) + 2 "
          "rounds in >= 99 % of trials (\"right<=bar\"), runs <= 1.5 x oracle")
    wrong = total = 0
    for family in chosen:
        started = time.time()
        rng = random.Random(args.seed)
        trials = [make_trial(rng, family, args.seed * 100003 + i) for i in range(args.trials)]
        print(f"\n{family.name}; sample cap {family.max_samples}")
        print(f"{'method':<15}{'correct':>8}{'verified':>9}{'rounds mean/p99/max':>21}{'bar':>5}"
              f"{'<=bar':>7}{'right<=bar':>11}{'runs':>7}{'oracle':>7}{'x oracle':>9}{'p99 x':>7}"
              f"{'WRONG verified':>15}")
        by_size: dict[str, list[tuple[int, Trial, Outcome]]] = {}
        for search, slots in itertools.product(args.search, args.slots):
            results = [run_fleet(t, family, slots, search) for t in trials]
            wrong, total = wrong + sum(r[4] for r in results), total + len(results)
            oracles = [oracle(t, slots) for t in trials]
            bar = rounds_lower_bound(N, slots) + 2
            if slots == 4:
                by_size[search] = [(bar, t, r) for t, r in zip(trials, results, strict=True)]
            rounds = [r[2] for r in results]
            ratios = [r[3] / max(o[1], 1) for r, o in zip(results, oracles, strict=True)]
            runs = statistics.fmean(r[3] for r in results)
            oracle_runs = statistics.fmean(o[1] for o in oracles)
            print(f"{f'{search} k={slots}':<15}{pct(r[0] for r in results):>8}"
                  f"{pct(r[1] for r in results):>9}"
                  f"{statistics.fmean(rounds):>9.1f}/{percentile(rounds, 0.99):>3}/{max(rounds):>4}"
                  f"{bar:>8}{pct(r <= bar for r in rounds):>7}"
                  f"{pct(r[0] and r[2] <= bar for r in results):>11}"
                  f"{runs:>7.1f}{oracle_runs:>7.1f}{runs / oracle_runs:>9.2f}{percentile(ratios, 0.99):>7.2f}"
                  f"{pct(r[4] for r in results):>15}")
        serial = [run_serial(t, family) for t in trials]
        oracles = [oracle(t, 1) for t in trials]
        serial_runs = [s[1] for s in serial]
        print(f"{'serial n=1':<15}{pct(s[0] for s in serial):>8}{'-':>9}"
              f"{statistics.fmean(serial_runs):>9.1f}/{percentile(serial_runs, 0.99):>3}"
              f"/{max(serial_runs):>4}"
              f"{'':>25}{statistics.fmean(serial_runs):>7.1f}{statistics.fmean(o[1] for o in oracles):>7.1f}"
              f"{statistics.fmean(serial_runs) / statistics.fmean(o[1] for o in oracles):>9.2f}")
        for search, rows in by_size.items():
            print_by_size(family, search, rows)
        if by_size:
            print_ceiling(family, next(iter(by_size.values())))
        print(f"({time.time() - started:.0f} s)")
    print(f"\nover every row above: {rate_line(wrong, total)}")


def print_ceiling(family: Family, by_size: list[tuple[int, Trial, Outcome]]) -> None:
    """The idealised search (bisect_ideal) at k = 4 on the trials without a broken range, beside fleet's
    first search on the same trials: how much of the rounds bar the noise leaves to any search."""
    median = family.noise if isinstance(family.noise, MedianNoise) else MedianNoise(family.noise, 1)
    density = log_density(median.one.residuals, median.one.jitter_sd, median.starts)
    clean = [(bar, t, r) for bar, t, r in by_size if not t.broken]
    ideal = [(bar, t, ideal_search(N, t.culprit, t.shift, family.noise, density, 4, FLAKY,
                                   random.Random(t.seed))) for bar, t, _ in clean]
    parts = [f"{label}: {pct(i[0] and i[1] <= bar for bar, _, i in rows)}"
             for label, rows in planted_quarters(family, ideal)]
    print(f"ceiling k=4 ({len(clean)} trials without a broken range; bisect_ideal: told both levels and the "
          f"noise's density, no ends, no verification): right<=bar "
          f"{pct(i[0] and i[1] <= bar for bar, _, i in ideal)}, mean rounds "
          f"{statistics.fmean(i[1] for _, _, i in ideal):.2f}; fleet on the same trials "
          f"{pct(r[0] and r[2] <= bar for bar, _, r in clean)}, mean rounds "
          f"{statistics.fmean(r[2] for _, _, r in clean):.2f}; ceiling by planted size: " + "; ".join(parts))


def print_by_size(family: Family, search: str, by_size: list[tuple[int, Trial, Outcome]]) -> None:
    """k = 4 by the size of the planted change: where the misses of the rounds bar are."""
    cells = [f"{label}: {pct(r[0] for _, _, r in rows)} correct, {pct(r[2] <= bar for bar, _, r in rows)} "
             f"<= bar ({len(rows)} trials)" for label, rows in planted_quarters(family, by_size)]
    print(f"{search} k=4 by planted size: " + "; ".join(cells))


Row = TypeVar("Row", bound=tuple[int, Trial, object])


def planted_quarters(family: Family, rows: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    """(label, rows) of each quarter of the family's planted range that holds a (bar, trial, ...) row."""
    edges = [family.low + (family.high - family.low) * q for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    quarters = [(f"{100 * low:+.1f}..{100 * high:+.1f} %",
                 [row for row in rows if min(low, high) <= row[1].shift <= max(low, high)])
                for low, high in itertools.pairwise(edges)]
    return [(label, members) for label, members in quarters if members]


if __name__ == "__main__":
    main()
