"""The bisection's vocabulary: what a round asks for, what a run returns, the policy, the answer.

Shared by the two searches (fleet.bisect.search's Pinpoint search, fleet.bisect.posterior's probabilistic
one), the shell that drives them (fleet.run.bisection) and the CLI; values only, no behaviour beyond
checking a policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from fleet.judge.compare import Comparison, Spread
from fleet.model.metrics import MetricClass

FailureKind = Literal["transient", "untestable"]
#: "no-regression" only where the ends compared SAME; ends that never did, whatever else, are "unresolved".
Status = Literal["culprit", "range", "no-regression", "unresolved"]
#: What a bisection showed, in three values (Finding.conclusion): the report's headline and the history's.
Conclusion = Literal["regression verified", "no difference shown between the ends", "undecided within budget"]
#: compare(a, b, magnitude, noise) -> Comparison of samples b against samples a.
Comparator = Callable[[Sequence[float], Sequence[float], float, Spread | None], Comparison]


class Side(Enum):
    GOOD = "good"
    BAD = "bad"
    UNKNOWN = "unknown"
    UNTESTABLE = "untestable"
    UNMEASURED = "unmeasured"


@dataclass(frozen=True)
class Run:
    """One run to make: commit index into the ordered list, and why (for the progress log)."""

    commit: int
    purpose: Literal["end", "probe", "resample", "verify"]


@dataclass(frozen=True)
class Observation:
    """One run's result: the metric's value, or why there is none."""

    commit: int
    value: float | None
    failure: FailureKind | None = None
    reason: str = ""
    #: False when the commit could not even be started (its image failed to build): no run was spent.
    ran: bool = True


@dataclass(frozen=True)
class SearchPolicy:
    slots: int
    max_samples: int = 12
    #: Failed runs after which a commit that never ran is untestable. Transient failures (a lost node) are
    #: retried until then: three failures in a row are rare but happen in the bisection benchmark, once to
    #: the culprit's parent, named untestable and put in the answer (docs/bisecting.md#wrong-verified-rates).
    max_failures: int = 4
    max_rounds: int = 40
    verify_fresh: int = 1
    #: Runs added to an UNKNOWN commit per round: "one", or "double" its samples as Pinpoint does
    #: (10, 20, 40, ...), which suits noisy latency metrics that rank tests judge only at larger n.
    resample: Literal["one", "double"] = "one"
    #: Verify the culprit against its parent on their own samples (for latency: the rank tests), not on the
    #: pooled spread: heavy tails (an occasional slow engine start) must not verify a wrong commit.
    verify_on_samples: bool = False
    #: Where a slow engine start reads: +1 high (latency), -1 low (speedup, throughput), 0 nowhere
    #: (counters). A culprit of a change that way is verified first by its best run (fleet.judge.compare).
    slow_side: Literal[-1, 0, 1] = 0
    #: "posterior": fleet.bisect.posterior's search (probes where the culprit's posterior splits evenly);
    #: "pinpoint": fleet.bisect.search's (each commit placed good or bad by three-valued comparisons).
    search: Literal["posterior", "pinpoint"] = "posterior"
    #: The posterior search's: the mass outside the answer it may leave, and its likelihood's relative sd
    #: floor and guess before any spread is known (fleet.bisect.posterior.likelihood_noise, by metric).
    alpha: float = 0.01
    noise_floor: float = 0.005
    noise_guess: float = 0.01
    #: The smallest relative change worth finding (smallest_change): the ends compare SAME, and the search
    #: ends with no regression, once they surely differ by less. 0: the ends' own difference is the change
    #: hunted, and ends that do not differ keep the search running to its sample cap.
    min_change: float = 0.0

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
        if self.max_samples < 1 or self.max_failures < 1 or self.verify_fresh < 0:
            raise ValueError("max_samples and max_failures must be >= 1, verify_fresh >= 0")
        if not 0 < self.alpha < 0.5 or self.noise_floor <= 0 or self.noise_guess <= 0 or self.min_change < 0:
            raise ValueError("alpha must be in (0, 0.5), noise_floor and noise_guess > 0, min_change >= 0")


#: The smallest change a bisection hunts by default, by the metric's kind: the smallest the bisection
#: benchmark plants (acceptance length -3 %, TPOT +5 %; benchmarks/bisect_efficiency.py) and the issue
#: this tool answers names. Ends that surely differ by less compare SAME: nothing to find.
SMALLEST_CHANGE: dict[MetricClass, float] = {"acceptance": 0.03, "match": 0.03, "latency": 0.05}


def smallest_change(kind: MetricClass) -> float:
    return SMALLEST_CHANGE[kind]


@dataclass
class CommitRecord:
    samples: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    untestable: str | None = None


@dataclass(frozen=True)
class Classification:
    side: Side
    against_good: Comparison | None = None
    against_bad: Comparison | None = None
    forced: bool = False


@dataclass(frozen=True)
class Finding:
    """The answer: commits first..last (indices, inclusive) hold the culprit; first == last is exact."""

    status: Status
    first: int | None
    last: int | None
    verified: bool
    reason: str
    ends: Comparison | None = None
    verification: Comparison | None = None

    @property
    def conclusion(self) -> Conclusion:
        """Verified culprit (or range); ends compared SAME (a change worth finding ruled out); or neither:
        a culprit named but not verified, ends that never compared SAME or DIFFERENT, rounds run out."""
        if self.verified and self.status in ("culprit", "range"):
            return "regression verified"
        if self.status == "no-regression":
            return "no difference shown between the ends"
        return "undecided within budget"
