"""What a statistical test concluded about one metric of one cell, before error control across the run.

An Assessment carries the evidence (observed centre, one-sided p of harm, the standard deviation the
test used, how many candidate runs); `fleet.judge.decide` turns all of a run's assessments into verdicts
once it knows the size of the family. Splitting the two keeps every test a pure function of one cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from fleet.judge.stats import Direction, as_t_quantile

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
    #: Standard deviation of (observed - expected) under "no change", on the test's scale.
    sigma: float
    #: True when the test works on log values (relative changes), False for absolute ones.
    log_scale: bool
    #: Whether a FAIL is allowed by the evidence's shape (noisy metrics need two runs and the rank test).
    can_fail: bool
    test: str
    detail: str
    #: Degrees of freedom of the spread the test estimated (None: known well enough for the normal).
    dof: float | None = None
    #: The share of the false-alarm budget this look of the controller's rerun loop may spend
    #: (fleet.judge.noisy.look_share): it bounds FAIL only; PASS and INCONCLUSIVE read the raw p.
    look_share: float = 1.0

    @property
    def p_fail(self) -> float:
        """The p of harm a FAIL is decided on: the raw p over this look's share of the budget."""
        return min(1.0, self.p_harm / self.look_share)

    def band(self, z: float) -> tuple[float, float]:
        """expected ± z sigma on the test's scale, as (lo, hi) on the metric's scale.

        z is a normal quantile; a test on Student's t widens it to the t quantile of the same tail.
        """
        z = as_t_quantile(z, self.dof)
        if self.log_scale:
            return self.expected * math.exp(-z * self.sigma), self.expected * math.exp(z * self.sigma)
        return self.expected - z * self.sigma, self.expected + z * self.sigma
