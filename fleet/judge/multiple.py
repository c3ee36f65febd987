"""Error control across every (cell, metric) test of one run: Holm (the default) and Benjamini–Hochberg.

A nightly tier judges hundreds of metrics; at a per-test 5 % level it would cry wolf nearly every night.
Holm's step-down procedure bounds the family-wise error rate (the chance that any FAIL of a run is a
false alarm) at alpha, with no assumption about how the tests depend on each other, and it is uniformly
more powerful than Bonferroni. That is the property the nightly needs: "a FAIL means look now".
Benjamini–Hochberg bounds the expected share of false FAILs instead (more power, weaker promise); it is
offered for exploratory weekly runs over very many cells, never the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Method = Literal["holm", "bh"]
METHODS: tuple[Method, ...] = ("holm", "bh")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (reject where adjusted <= alpha), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [1.0] * m
    running = 1.0
    for position, index in enumerate(order):
        rank = m - position
        running = min(running, p_values[index] * m / rank)
        adjusted[index] = min(1.0, running)
    return adjusted


def adjust(p_values: Sequence[float], method: Method) -> list[float]:
    return holm(p_values) if method == "holm" else benjamini_hochberg(p_values)


def step_threshold(p_value: float, p_values: Sequence[float], alpha: float, method: Method) -> float:
    """The unadjusted level `p_value` was held to at its rank: alpha/(m-rank) for Holm, alpha*k/m for BH.

    Reports use it to draw a test's band at the level that actually decided it.
    """
    m = len(p_values)
    if m == 0:
        return alpha
    rank = sum(1 for p in p_values if p < p_value)
    return alpha / (m - rank) if method == "holm" else alpha * (rank + 1) / m
