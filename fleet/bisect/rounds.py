"""A round of the bisection: the runs it asks for within its slots, commits spread evenly over a range,
where a commit stands from its two comparisons, and the fewest rounds any k-ary search needs.

Shared by both searches (search, posterior); values only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from fleet.bisect.terms import Run, Side
from fleet.judge.compare import Verdict


def side_of(vs_good: Verdict, vs_bad: Verdict) -> Side:
    """Where a commit stands from its comparisons with both ends."""
    if vs_good is Verdict.DIFFERENT:
        # Differing from good puts the change at or before it, whether it matches bad or is a level of
        # its own (a second change in the range): the search is for the first change after good.
        return Side.BAD
    if vs_bad is Verdict.DIFFERENT:
        return Side.GOOD
    if vs_good is Verdict.SAME and vs_bad is not Verdict.SAME:
        return Side.GOOD
    if vs_bad is Verdict.SAME and vs_good is not Verdict.SAME:
        return Side.BAD
    return Side.UNKNOWN


class RoundPlan:
    """The runs one round asks for, at most `slots` of them."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.runs: list[Run] = []

    @property
    def free(self) -> int:
        return self.slots - len(self.runs)

    def count(self, commit: int) -> int:
        return sum(1 for run in self.runs if run.commit == commit)

    def has(self, commit: int, purpose: str) -> bool:
        return any(run.commit == commit and run.purpose == purpose for run in self.runs)

    def add(self, commit: int, purpose: Literal["end", "probe", "resample", "verify"]) -> None:
        if self.free > 0:
            self.runs.append(Run(commit, purpose))


def spread_evenly(candidates: Sequence[int], count: int) -> list[int]:
    """`count` of the candidates at evenly spaced ranks, splitting them into count + 1 equal parts."""
    if count <= 0 or not candidates:
        return []
    if count >= len(candidates):
        return list(candidates)
    ranks = sorted({round((j + 1) * (len(candidates) + 1) / (count + 1)) - 1 for j in range(count)})
    return [candidates[min(max(r, 0), len(candidates) - 1)] for r in ranks]


def rounds_lower_bound(candidates: int, slots: int) -> int:
    """Rounds a noise-free k-ary search needs for `candidates` possible culprits: ceil(log_{k+1} N)."""
    rounds, left = 0, candidates
    while left > 1:
        left = -(-left // (slots + 1))
        rounds += 1
    return rounds
