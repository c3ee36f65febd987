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


def upper_tail_t(t: float, dof: float | None) -> float:
    """P(T >= t) for Student's t with `dof` degrees of freedom (None: the normal limit)."""
    return upper_tail(t) if dof is None else float(_stats.t.sf(t, dof))


def as_t_quantile(z: float, dof: float | None) -> float:
    """The t quantile with the tail probability the normal quantile z has (z itself when dof is None)."""
    return z if dof is None else float(_stats.t.isf(upper_tail(z), dof))


def tails(z_change: float, better: Direction | None, dof: float | None = None) -> tuple[float, float]:
    """(p of harm, p of benefit) for a standardised change; with no direction both tails count as harm.

    `dof`: the change was standardised by a spread estimated with that many degrees of freedom, so it is
    referred to Student's t, not the normal (whose tails are too thin for an estimated spread).
    """
    if better is None:
        two_sided = min(1.0, 2.0 * upper_tail_t(abs(z_change), dof))
        return two_sided, 1.0
    harmful = harm_sign(better) * z_change
    return upper_tail_t(harmful, dof), upper_tail_t(-harmful, dof)


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
