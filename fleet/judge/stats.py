"""The few distributions the judge needs, behind names that say what they answer.

Kept apart so the count-aware and noisy tests read as decisions, and so scipy is used in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats as _stats

Direction = Literal["higher", "lower"]


def upper_tail(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return float(_stats.norm.sf(z))


def z_for_tail(p: float) -> float:
    """The z with P(Z >= z) = p."""
    return float(_stats.norm.isf(min(max(p, 1e-300), 1.0)))


def harm_sign(better: Direction | None) -> float:
    """+1 when a rise is harmful (latency), -1 when a fall is (acceptance, speedup)."""
    return 1.0 if better == "lower" else -1.0


def tails(z_change: float, better: Direction | None) -> tuple[float, float]:
    """(p of harm, p of benefit) for a standardised change; with no direction both tails count as harm."""
    if better is None:
        two_sided = min(1.0, 2.0 * upper_tail(abs(z_change)))
        return two_sided, 1.0
    harmful = harm_sign(better) * z_change
    return upper_tail(harmful), upper_tail(-harmful)


def robust_sd(values: Sequence[float]) -> float:
    """The larger of the sample standard deviation and 1.4826 x MAD (each ~sigma under a normal model).

    The larger, because the judge's errors are asymmetric: an underestimated spread raises false alarms.
    """
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return 0.0
    sd = float(np.std(array, ddof=1))
    mad = 1.4826 * float(np.median(np.abs(array - np.median(array))))
    return max(sd, mad)


def rank_test_p(
    candidates: Sequence[float], recorded: Sequence[float], better: Direction | None
) -> float | None:
    """One-sided Mann–Whitney p that the candidates are worse than the recorded runs (None if undefined)."""
    if len(candidates) < 2 or len(recorded) < 2:
        return None
    alternative = "two-sided" if better is None else "greater" if better == "lower" else "less"
    result = _stats.mannwhitneyu(list(candidates), list(recorded), alternative=alternative, method="exact")
    p = float(result.pvalue)
    return p if math.isfinite(p) else None
