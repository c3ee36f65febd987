"""The RFC #28135 rule: a metric fails when it leaves expected ± tolerance_pct on its harmful side.

It is the seed's rule and the default whenever a baseline carries no recorded spread, so it stays
deliberately simple; statistically aware rules live beside it in fleet.judge. The RFC's range is
symmetric, but its purpose is to catch regressions: a metric whose registry entry says which way is
better (fleet.model.metrics, `better`) fails only beyond the bound on the worse side. A TTFT 23 %
faster than expected is not a regression; it passes, and the detail says it is better than the range
(a hint to re-record the baseline). A metric the registry does not know is judged on both sides.

Boundaries, with the reasons:
- Both bounds are inclusive: a value printed equal to a bound in a report must not be a regression.
- Bounds come from MetricBaseline.lo / .hi, which use |expected|, so a negative expected value still
  gives lo <= hi, and an expected value of 0 allows exactly 0 (a percentage of nothing is nothing).
- Bounds are widened by a relative 1e-9 so binary rounding (0.73 * 1.10 = 0.8029999999999999) does
  not fail a value sitting exactly on the bound; that slack is far below any meaningful tolerance.
- A metric the baseline names but the result lacks (or reports as NaN) fails: the suite stopped
  measuring something it is expected to measure, which is itself a regression worth a human look.
- Metrics in the result that the baseline does not name are not judged (they are recorded only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fleet.model import Baseline, MetricBaseline, MetricVerdict, Status
from fleet.model.metrics import metric_info

RULE = "rfc28135: expected ± tolerance_pct"
_REL_SLACK = 1e-9


def within_tolerance(observed: float, expected: MetricBaseline) -> bool:
    """True when observed lies in [lo, hi] (inclusive, with a hair of slack for float rounding)."""
    slack = _REL_SLACK * max(1.0, abs(expected.expected))
    return expected.lo - slack <= observed <= expected.hi + slack


def harmful(name: str, observed: float, expected: MetricBaseline) -> bool:
    """True when observed lies beyond the RFC range on the side where the metric is worse (either side
    for a metric the registry does not know)."""
    if within_tolerance(observed, expected):
        return False
    info = metric_info(name)
    if info is None:
        return True
    return observed > expected.hi if info.better == "lower" else observed < expected.lo


def judge_metric(name: str, observed: float | None, expected: MetricBaseline) -> MetricVerdict:
    """One metric against its baseline entry."""
    if observed is None:
        return _verdict(name, expected, "FAIL", None, "metric missing from result")
    if math.isnan(observed):
        return _verdict(name, expected, "FAIL", observed, "metric is NaN in result")
    status: Status = "FAIL" if harmful(name, observed, expected) else "PASS"
    detail = _deviation(observed, expected)
    if status == "PASS" and not within_tolerance(observed, expected):
        detail += "; better than the range, not a regression: consider re-recording the baseline"
    return _verdict(name, expected, status, observed, detail)


def judge_metrics(observed: Mapping[str, float], baseline: Baseline) -> list[MetricVerdict]:
    """Every metric the baseline names, in the baseline's order."""
    return [judge_metric(name, observed.get(name), entry) for name, entry in baseline.baselines.items()]


def _verdict(
    name: str, expected: MetricBaseline, status: Status, observed: float | None, detail: str
) -> MetricVerdict:
    return MetricVerdict(
        metric=name,
        status=status,
        observed=observed,
        expected=expected.expected,
        lo=expected.lo,
        hi=expected.hi,
        tolerance_pct=expected.tolerance_pct,
        rule=RULE,
        detail=detail,
    )


def _deviation(observed: float, expected: MetricBaseline) -> str:
    allowed = f"allowed ±{expected.tolerance_pct:g}%"
    if expected.expected == 0:
        return f"{observed:+g} from expected 0 ({allowed})"
    pct = (observed - expected.expected) / abs(expected.expected) * 100.0
    return f"{pct:+.1f}% from expected ({allowed})"
