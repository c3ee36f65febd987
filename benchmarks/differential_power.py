"""The differential judge's power and false divergences, from real recorded noise (issue 30's bars).

Sources: the recorded A/A runs, repeated runs of one cell with nothing changed: evidence/h200/series/s1-s10
and evidence/h200/runs/r1-r5 (15 runs each of ngram-k4 and draft_model-k4, 50 prompts x 128 greedy tokens,
one H200, vLLM 0.26.0) and evidence/cpu/r1-r5 (the bit-deterministic CPU reference engine, 5 runs each).
Every two runs of one cell are an A/A pair: C(15, 2) = 105 per H200 cell, 10 per CPU cell.

- Calibration: each cell's acceptance-length and match-rate variance across runs over one run's binomial
  variance (the overdispersion phi), pooled, and its upper one-sided 95 % bound: the figures
  fleet.judge.differential's ACCEPTANCE_OVERDISPERSION and MATCH_OVERDISPERSION quote.
- A nightly: NIGHTLY_PAIRS = 27 differential pairs, the H200 tier's 3 methods x 9 pairs ({cudagraph full,
  piecewise, none} x {prefix caching off, on}: 6 cells, 6 cudagraph pairs and 3 prefix-caching pairs), each
  with its 2 primary tests, Holm over the run's family at alpha 0.01 (the 54 tests alone, and with 108
  baseline tests padded in at p = 1, what 18 cells' 6 primary baseline metrics add: Holm only grows
  stricter with them). Only two methods were recorded: the pairs are drawn from each in turn.
- False divergences: a nightly of 27 A/A pairs drawn at random (with replacement) from the real ones, each
  side at random; it is a false divergence when any pair DIVERGES (exit 1), "not SAME" when any is
  DIVERGES or INCONCLUSIVE (exit 4). The real distinct pairs bound how far resampling can see: their
  smallest p is printed.
- Detection: one pair of the nightly gets a -5 % acceptance-length divergence planted into one side's
  counters, the other 26 A/A: each position's accepted count binomially thinned by the factor that takes
  the expected acceptance length 5 % down (benchmarks/labelled_set.py's acceptance_length_drop rounds down
  instead; thinning gives each trial counts of its own, as a real bug hitting random drafts would), drafts
  and match summary kept. Detected when that pair DIVERGES.
- Bigger workloads from real noise: 3 distinct recorded runs pooled into each side (counts added) are the
  counts of a workload 3 times the size, with the engine-start noise of 3 starts averaged.
- Beside them: a pure binomial test (phi = 1 for both metrics) and a fixed rule like vLLM's
  test_acceptance_length (flag when |AL_a / AL_b - 1| > 5 %).
Each rate with its Clopper-Pearson 95 % interval. Bars: detection >= 95 %, false <= 1 % per nightly. Where
they are not met, the drafts per run a bar needs (normal approximation of the same test at the calibrated
phi, Holm's first step) and the workload that gives them.

Usage:  python benchmarks/differential_power.py [--nightlies 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fleet.judge.acceptance import accepted_per_draft_variance  # noqa: E402
from fleet.judge.decide import ALPHA  # noqa: E402
from fleet.judge.differential import (  # noqa: E402
    ACCEPTANCE_OVERDISPERSION,
    DIVERGENCE_BOUND,
    MATCH_OVERDISPERSION,
    Counts,
    Noise,
    acceptance_tests,
    match_test,
)
from fleet.judge.multiple import holm  # noqa: E402
from fleet.model import RunResult  # noqa: E402

NIGHTLY_PAIRS = 27
BASELINE_TESTS = 108
BARS = {"detection": 0.95, "false": 0.01}
DROP = 0.05
CELLS = ("ngram-k4", "draft_model-k4")


@dataclass(frozen=True)
class Run:
    counts: Counts
    match: tuple[int, int]

    @property
    def length(self) -> float:
        return 1.0 + self.counts.accepted / self.counts.drafts


def load(pattern: str, variant: str) -> list[Run]:
    runs = []
    for path in sorted(REPO.glob(pattern)):
        if not path.name.startswith(variant + "__"):
            continue
        result = RunResult.model_validate_json(path.read_text())
        c, m = result.counters, result.match
        assert c is not None and m is not None
        runs.append(Run(Counts(c.num_drafts, c.num_draft_tokens, c.num_accepted_tokens,
                               tuple(c.accepted_per_position)), (m.exact_token_matches, m.num_prompts)))
    return runs


def h200(variant: str) -> list[Run]:
    return load("evidence/h200/series/s*/*.json", variant) + load("evidence/h200/runs/r*/*.json", variant)


def cpu(variant: str) -> list[Run]:
    return load("evidence/cpu/r*/*.json", variant)


def binomial_variances(run: Run) -> tuple[float, float]:
    """One run's binomial variance of its acceptance length and of its match rate."""
    rates = [n / run.counts.drafts for n in run.counts.positions]
    k = run.counts.draft_tokens / run.counts.drafts
    hits, prompts = run.match
    p = hits / prompts
    return accepted_per_draft_variance(rates, run.length - 1.0, k) / run.counts.drafts, p * (1 - p) / prompts


def calibration(cells: dict[str, list[Run]]) -> None:
    print("Calibration (variance across recorded H200 runs / one run's binomial variance):")
    pooled = {"acceptance length": [0.0, 0], "match rate": [0.0, 0]}
    for name, runs in cells.items():
        lengths = np.array([r.length for r in runs])
        matches = np.array([r.match[0] / r.match[1] for r in runs])
        bin_length, bin_match = (float(np.mean(v)) for v in zip(*map(binomial_variances, runs), strict=True))
        phi_length, phi_match = lengths.var(ddof=1) / bin_length, matches.var(ddof=1) / bin_match
        mean, sd = lengths.mean(), lengths.std(ddof=1)
        print(f"  {name}: {len(runs)} runs, acceptance length {mean:.4f} sd {sd:.4f} "
              f"({100 * sd / mean:.2f} %; binomial {100 * math.sqrt(bin_length) / mean:.2f} %) "
              f"phi {phi_length:.3f}; "
              f"match rate {matches.mean():.3f} sd {matches.std(ddof=1):.3f} "
              f"(binomial {math.sqrt(bin_match):.3f}) phi {phi_match:.2f}")
        for key, phi in (("acceptance length", phi_length), ("match rate", phi_match)):
            pooled[key][0] += phi * (len(runs) - 1)
            pooled[key][1] += len(runs) - 1
    for key, (weighted, dof) in pooled.items():
        phi = weighted / dof
        upper = phi * dof / float(stats.chi2.ppf(0.05, dof))
        print(f"  pooled {key}: phi {phi:.3f}, upper 95 % bound {upper:.3f} ({int(dof)} dof)")
    print(f"  the judge uses phi {ACCEPTANCE_OVERDISPERSION} (acceptance) and {MATCH_OVERDISPERSION} (match)")


def clopper_pearson(hits: int, trials: int) -> tuple[float, float]:
    lo = 0.0 if hits == 0 else float(stats.beta.ppf(0.025, hits, trials - hits + 1))
    hi = 1.0 if hits == trials else float(stats.beta.ppf(0.975, hits + 1, trials - hits))
    return lo, hi


def rate(hits: int, trials: int) -> str:
    lo, hi = clopper_pearson(hits, trials)
    return f"{100 * hits / trials:6.2f} % [{100 * lo:.2f}, {100 * hi:.2f}]"


@dataclass(frozen=True)
class Judged:
    """A pair's two primary p-values, whether its acceptance length reached the bound, and the fixed rule."""

    p_length: float
    p_match: float
    beyond: bool
    fixed: bool


def judge(a: Run, b: Run, noise: Noise) -> Judged:
    [length] = acceptance_tests(a.counts, b.counts, noise.acceptance, secondary=False)
    match = match_test(a.match, b.match, noise.match)
    return Judged(length.p_value, match.p_value, length.beyond_bound, abs(a.length / b.length - 1.0) > DROP)


def planted(run: Run, rng: np.random.Generator) -> Run:
    """The run with its acceptance length 5 % down in expectation: each position's accepted count thinned."""
    factor = (run.length * (1.0 - DROP) - 1.0) / (run.length - 1.0)
    positions = tuple(int(rng.binomial(n, factor)) for n in run.counts.positions)
    return replace(run, counts=replace(run.counts, accepted=sum(positions), positions=positions))


def outcome(planted_pair: Judged | None, others: Sequence[Judged], family: int) -> tuple[bool, bool, bool]:
    """(the planted pair DIVERGES, or any A/A pair does; any pair not SAME; the fixed rule flags)."""
    pairs = ([planted_pair] if planted_pair is not None else []) + list(others)
    p_values = [p for j in pairs for p in (j.p_length, j.p_match)]
    adjusted = holm(p_values + [1.0] * max(0, family - len(p_values)))
    diverges = [min(adjusted[2 * i], adjusted[2 * i + 1]) <= ALPHA for i in range(len(pairs))]
    unsure = [d or j.beyond for d, j in zip(diverges, pairs, strict=True)]
    if planted_pair is not None:
        return diverges[0], unsure[0], pairs[0].fixed
    return any(diverges), any(unsure), any(j.fixed for j in pairs)


def pooled(runs: Sequence[Run]) -> Run:
    """Several recorded runs of one cell as one run of that many times the workload: counts added."""
    width = max(len(r.counts.positions) for r in runs)
    positions = tuple(sum(r.counts.positions[i] if i < len(r.counts.positions) else 0 for r in runs)
                      for i in range(width))
    return Run(Counts(sum(r.counts.drafts for r in runs), sum(r.counts.draft_tokens for r in runs),
                      sum(positions), positions),
               (sum(r.match[0] for r in runs), sum(r.match[1] for r in runs)))


def draw(runs: Sequence[Run], group: int, rng: np.random.Generator) -> tuple[Run, Run]:
    """Two sides from distinct recorded runs of one cell, `group` runs pooled on each side."""
    chosen = rng.choice(len(runs), size=2 * group, replace=False)
    return pooled([runs[i] for i in chosen[:group]]), pooled([runs[i] for i in chosen[group:]])


def simulate(cells: dict[str, list[Run]], noise: Noise, nightlies: int, family: int,
             rng: np.random.Generator, group: int = 1) -> dict[str, tuple[int, int]]:
    names = list(cells)
    keys = ("false", "false_unsure", "false_fixed", "found", "found_unsure", "found_fixed")
    counts = dict.fromkeys(keys, 0)
    for night in range(nightlies):
        drawn = [judge(*draw(cells[names[i % len(names)]], group, rng), noise) for i in range(NIGHTLY_PAIRS)]
        false, unsure, fixed = outcome(None, drawn, family)
        counts["false"] += false
        counts["false_unsure"] += unsure
        counts["false_fixed"] += fixed
        a, b = draw(cells[names[night % len(names)]], group, rng)
        found, found_unsure, found_fixed = outcome(judge(a, planted(b, rng), noise), drawn[1:], family)
        counts["found"] += found
        counts["found_unsure"] += found_unsure
        counts["found_fixed"] += found_fixed
    return {key: (value, nightlies) for key, value in counts.items()}


def report(title: str, cells: dict[str, list[Run]], noise: Noise, nightlies: int, family: int,
           seed: int, fixed_too: bool, group: int = 1) -> None:
    figures = simulate(cells, noise, nightlies, family, np.random.default_rng(seed), group)
    found, false = figures["found"], figures["false"]
    bars = (f"detection bar {'met' if clopper_pearson(*found)[0] >= BARS['detection'] else 'NOT met'}, "
            f"false bar {'met' if clopper_pearson(*false)[1] <= BARS['false'] else 'NOT met'}")
    print(f"  {title}, family {family} ({bars}, on the intervals' bounds):")
    print(f"    detection of -5 %:   DIVERGES {rate(*figures['found'])}   "
          f"not SAME {rate(*figures['found_unsure'])}")
    print(f"    false per nightly:   DIVERGES {rate(*figures['false'])}   "
          f"not SAME {rate(*figures['false_unsure'])}")
    if fixed_too:
        print(f"    fixed +-5 % rule:    detection {rate(*figures['found_fixed'])}   false per nightly "
              f"{rate(*figures['false_fixed'])}")


def smallest_aa_p(cells: dict[str, list[Run]], noise: Noise) -> tuple[float, float, int]:
    judged = [judge(a, b, noise) for runs in cells.values() for a, b in itertools.combinations(runs, 2)]
    return min(j.p_length for j in judged), min(j.p_match for j in judged), len(judged)


def drafts_needed(runs: Sequence[Run], family: int) -> tuple[float, float, float]:
    """Drafts per run at which the calibrated test detects -5 % with 95 % at Holm's first step of `family`
    two-sided tests, and that over the recorded drafts per run."""
    mean_length = float(np.mean([r.length for r in runs]))
    drafts = float(np.mean([r.counts.drafts for r in runs]))
    variance = float(np.mean([binomial_variances(r)[0] for r in runs])) * drafts  # Var(X) per draft
    z = float(stats.norm.isf(ALPHA / (2 * family))) + float(stats.norm.isf(1 - BARS["detection"]))
    needed = ACCEPTANCE_OVERDISPERSION * variance * 2.0 * z * z / (DROP * mean_length) ** 2
    return needed, needed / drafts, drafts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nightlies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    gpu = {name: h200(name) for name in CELLS}
    calibration(gpu)
    small = smallest_aa_p(gpu, Noise())
    print(f"\nA/A: {small[2]} distinct real H200 pairs; smallest raw p: acceptance length {small[0]:.3g}, "
          f"match rate {small[1]:.3g} (Holm's first step over 54 tests needs {ALPHA / 54:.2g})")
    print(f"\nH200 nightly: {NIGHTLY_PAIRS} pairs x 2 primary tests, {args.nightlies} simulated nightlies "
          f"(seed {args.seed}); rates with Clopper-Pearson 95 % intervals; practical bound "
          f"{100 * DIVERGENCE_BOUND:g} %")
    family = 2 * NIGHTLY_PAIRS
    report("calibrated (the judge)", gpu, Noise(), args.nightlies, family, args.seed, fixed_too=True)
    report("calibrated (the judge)", gpu, Noise(), args.nightlies, family + BASELINE_TESTS, args.seed,
           fixed_too=False)
    report("pure binomial, phi = 1", gpu, Noise(1.0, 1.0), args.nightlies, family, args.seed, fixed_too=False)
    for name in CELLS:
        report(f"{name} alone", {name: gpu[name]}, Noise(), args.nightlies // 2, family, args.seed,
               fixed_too=True)
    print("\nH200, 3 distinct recorded runs pooled on each side (the counts of 3x the workload, "
          "150 prompts):")
    report("calibrated (the judge)", gpu, Noise(), args.nightlies, family, args.seed, fixed_too=True, group=3)
    cpu_cells = {name: cpu(name) for name in CELLS}
    if all(cpu_cells.values()):
        sizes = ", ".join(f"{n} {cpu_cells[n][0].counts.drafts} drafts" for n in CELLS)
        print(f"\nCPU reference engine ({sizes}; its runs replay exactly):")
        report("calibrated (the judge)", cpu_cells, Noise(), args.nightlies // 2, family, args.seed,
               fixed_too=True)
    print(f"\nDrafts per run for {100 * BARS['detection']:g} % detection of -5 % (family {family}, phi "
          f"{ACCEPTANCE_OVERDISPERSION}):")
    for name in CELLS:
        needed, times, recorded = drafts_needed(gpu[name], family)
        prompts = math.ceil(50 * times)
        print(f"  {name}: {needed:.0f} drafts ({times:.2f} x the recorded {recorded:.0f}); "
              f"{prompts} prompts x 128 tokens, or 50 prompts x {math.ceil(128 * times)} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
