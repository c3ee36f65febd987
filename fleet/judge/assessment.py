"""What a statistical test concluded about one metric of one cell, before error control across the run.

An Assessment carries the evidence (observed centre, one-sided p of harm, the standard deviation the
test used, how many candidate runs); `fleet.judge.decide` turns all of a run's assessments into verdicts
once it knows the size of the family. Splitting the two keeps every test a pure function of one cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from fleet.judge.stats import Direction, as_t_quantile, upper_tail

#: The widest a log-scale band is drawn (a factor of e^50 either way).
MAX_LOG_WIDTH = 50.0
#: "count": near-deterministic greedy metrics judged on their counts; "noisy": system metrics judged on
#: the recorded spread across engine starts.
TestKind = Literal["count", "noisy"]
#: Secondary metrics (per-position acceptance) only explain a primary failure; reference metrics (the
#: same job's non-speculative run) tell a slow host from a regression; see fleet.judge.decide.
Role = Literal["primary", "secondary", "reference"]


@dataclass(frozen=True)
class Assessment:
    metric: str
    kind: TestKind
    role: Role
    better: Direction | None
    expected: float
    observed: float
    runs: int
    recorded_runs: int
    p_harm: float
    p_benefit: float
    #: Standard deviation of (the candidates' centre - expected) under "no change", on the test's scale
    #: (for a noisy metric judged on its best run, observed is that run, not the centre).
    sigma: float
    #: True when the test works on log values (relative changes), False for absolute ones.
    log_scale: bool
    #: Whether a FAIL is allowed by the evidence's shape (noisy metrics need three runs and the rank test).
    can_fail: bool
    test: str
    detail: str
    #: Degrees of freedom of the spread the test estimated (None: known well enough for the normal).
    dof: float | None = None
    #: The share of the false-alarm budget this look of the controller's rerun loop may spend
    #: (fleet.judge.noisy.look_share): it bounds FAIL only; PASS and INCONCLUSIVE read the raw p.
    look_share: float = 1.0
    #: The p of harm a FAIL is decided on where it is not p_harm: a noisy metric's, which allows for slow
    #: engine starts among the candidates (fleet.judge.best_run); None: p_harm.
    p_harm_robust: float | None = None
    #: For such a test, the band on the metric's scale for a raw p: (lo, hi), the values the tested
    #: statistic must pass for its p to reach it on either side.
    edges: Callable[[float], tuple[float, float] | None] | None = field(default=None, compare=False,
                                                                         repr=False)
    #: The candidates' centre on the metric's scale where observed is another statistic (a noisy
    #: metric's best run): how far the runs moved as a whole, which a slower host is measured by.
    centre: float | None = None
    #: Where a count metric's harmful move reached its practical bound (fleet.judge.acceptance.
    #: practical_bound): such a move is never a PASS, whatever its p; it FAILs once the counts make it
    #: significant and is INCONCLUSIVE until then.
    beyond_bound: bool = False

    @property
    def level(self) -> float:
        """Where the candidate runs sit as a whole: the centre, or observed."""
        return self.observed if self.centre is None else self.centre

    @property
    def p_harm_deciding(self) -> float:
        """The raw p of harm a FAIL is decided on: p_harm_robust where the test has one."""
        return self.p_harm if self.p_harm_robust is None else self.p_harm_robust

    @property
    def p_fail(self) -> float:
        """The p of harm a FAIL is decided on, over this look's share of the budget."""
        return min(1.0, self.p_harm_deciding / self.look_share)

    def band(self, z: float) -> tuple[float, float]:
        """expected ± z sigma on the test's scale, as (lo, hi) on the metric's scale.

        z is a normal quantile; a test on Student's t widens it to the t quantile of the same tail. A test
        with its own edges draws the band there, for the tail probability z stands for.
        """
        drawn = self.edges(upper_tail(z)) if self.edges is not None else None
        if drawn is not None:
            return drawn
        z = as_t_quantile(z, self.dof)
        if self.log_scale:
            # A spread of one or two degrees of freedom puts the t quantile of a small p near infinity:
            # a band wider than a factor of e^MAX_LOG_WIDTH says the same and stays a number.
            width = min(z * self.sigma, MAX_LOG_WIDTH)
            return self.expected * math.exp(-width), self.expected * math.exp(width)
        return self.expected - z * self.sigma, self.expected + z * self.sigma
