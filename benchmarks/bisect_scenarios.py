"""The scenario families of benchmarks/bisect_efficiency.py (`--scenarios`): where a bisection goes wrong.

bisect_efficiency's main families plant a culprit anywhere in the range; issue 32 found fleet's mistakes
elsewhere: a culprit right after the good commit (the good end's single run alone on its side) or at
the bad end, a pool whose runs spread twice as wide as the baseline it was handed (the noisy host), and
a range with no change at all (flat), where any verified culprit is wrong and "no regression" may be
said only of ends that compared SAME. Each scenario runs fleet's search exactly as bisect_efficiency
does (the same noise, broken ranges and flaky runs), and the rows end with the wrong-verified count over
every bisection run, with its Clopper-Pearson upper bound: the rate the trials allow, not the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from scipy import stats

from fleet.bisect.terms import Finding
from fleet.judge.compare import Verdict

#: The confidence of the upper bound printed for the wrong-verified rate (two-sided Clopper-Pearson).
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Scenario:
    name: str
    #: Index into bisect_efficiency.families().
    family: int
    #: "first": the culprit is commit 1; "last": the bad end itself; "anywhere"; "flat": no change.
    place: str


SCENARIOS = [
    Scenario("culprit right after good, ngram", 1, "first"),
    Scenario("culprit right after good, draft_model", 0, "first"),
    Scenario("culprit right after good, GPU-bound TPOT", 3, "first"),
    Scenario("culprit at the bad end, ngram", 1, "last"),
    Scenario("culprit at the bad end, draft_model", 0, "last"),
    Scenario("culprit at the bad end, GPU-bound TPOT", 3, "last"),
    Scenario("noisy host (runs 2x the recorded spread), GPU-bound TPOT", 4, "anywhere"),
    Scenario("flat range, ngram", 1, "flat"),
    Scenario("flat range, GPU-bound TPOT", 3, "flat"),
    Scenario("flat range, noisy host", 4, "flat"),
]


@dataclass(frozen=True)
class Tally:
    """One scenario's bisections: each (right answer, verified, wrong and verified, rounds, conclusion,
    'no regression' said of ends that did not compare SAME)."""

    rows: list[tuple[bool, bool, bool, int, str, bool]]

    def share(self, pick: Callable[[tuple[bool, bool, bool, int, str, bool]], object]) -> str:
        return pct(pick(row) for row in self.rows)


def outcome(finding: Finding, truth: tuple[int, int] | None, rounds: int
            ) -> tuple[bool, bool, bool, int, str, bool]:
    """One bisection's row: `truth` None for a flat range (no culprit is right)."""
    named = (finding.first, finding.last)
    right = truth is not None and named == truth
    verified = finding.conclusion == "regression verified"
    unfounded = finding.status == "no-regression" and (finding.ends is None or
                                                       finding.ends.verdict is not Verdict.SAME)
    return right, verified, verified and not right, rounds, finding.conclusion, unfounded


def upper_bound(wrong: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """The Clopper-Pearson interval's upper end for `wrong` of `trials` (two-sided at `confidence`)."""
    if wrong >= trials:
        return 1.0
    return float(stats.beta.ppf(1 - (1 - confidence) / 2, wrong + 1, trials - wrong))


def rate_line(wrong: int, trials: int) -> str:
    return (f"WRONG verified: {wrong} of {trials} bisections ({100 * wrong / max(trials, 1):.3f} %), upper "
            f"{100 * CONFIDENCE:.0f} % bound {100 * upper_bound(wrong, trials):.3f} % (Clopper-Pearson)")


def print_scenario(scenario: Scenario, tally: Tally, bar: int) -> None:
    rows = tally.rows
    conclusions = {c: sum(r[4] == c for r in rows) for c in ("regression verified",
                                                              "no difference shown between the ends",
                                                              "undecided within budget")}
    rounds = [r[3] for r in rows]
    said = ", ".join(f"{name} {count}" for name, count in conclusions.items())
    found = "no culprit to find" if scenario.place == "flat" else \
        (f"right and verified {tally.share(lambda r: r[0] and r[1])}, right within {bar} rounds "
         f"{tally.share(lambda r: r[0] and r[1] and r[3] <= bar)}")
    line = (f"{scenario.name}: {len(rows)} trials; {found}; rounds "
            f"mean {sum(rounds) / len(rounds):.1f}, max {max(rounds)}; WRONG verified "
            f"{sum(r[2] for r in rows)}; 'no regression' without SAME ends {sum(r[5] for r in rows)}; {said}")
    print(line)


def pct(flags: Iterable[object]) -> str:
    values = list(flags)
    return f"{100 * sum(bool(v) for v in values) / len(values):.1f}%"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
