"""How fast could any search place a culprit on this noise? An idealised k-ary search, as a ceiling.

bisect_efficiency's oracle knows every commit's side from one run: it shows what k slots buy, not what
the noise leaves possible. This search is told everything but the culprit: the good and the bad level,
hence the step's size and sign, and the exact density of a run's noise (a mixture of normals around the
recorded residuals, the smoothed bootstrap bisect_efficiency draws from; for runs of M engine starts the
density of their median: M! / (h!)^2 F^h (1 - F)^h f, M = 2h + 1). It runs no ends, verifies nothing
against a parent, and names the commit the moment the Bayes posterior gives it 99 %, its k runs a round
at the posterior's quantiles 1/(k+1) .. k/(k+1) (probabilistic bisection), each run flaking as often as
fleet's do. fleet must measure both ends, learn the spread and verify the culprit before naming it; no
search that cannot know the levels and the noise this well does better than this one on average.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Protocol

import numpy as np
import smoothing

#: Posterior mass on one commit at which the idealised search names it.
NAMED_AT = 0.99
#: Rounds after which a trial counts as not found (the bar is 7 at k = 4).
GIVE_UP = 40


class RunNoise(Protocol):
    def draw(self, rng: random.Random) -> float: ...


def log_density(residuals: list[float], jitter_sd: float, starts: int) -> Callable[[np.ndarray], np.ndarray]:
    """The exact log density of one run's relative noise: one draw of the smoothed bootstrap, or the
    median of `starts` (odd) independent draws (smoothing.log_density)."""
    return smoothing.log_density(np.asarray(residuals), max(jitter_sd, 1e-12), starts)


def ideal_search(commits: int, culprit: int, shift: float, noise: RunNoise, density: Callable[[np.ndarray],
                 np.ndarray], slots: int, flaky: float, rng: random.Random) -> tuple[bool, int]:
    """(named the culprit, rounds) of the idealised search over commits 0 (good) .. commits - 1 (bad)."""
    # evidence[i]: log P(commit i's runs | i is bad) - log P(them | i is good)
    evidence = np.zeros(commits)
    rounds = 0
    while True:
        # log P(culprit = c | runs) = sum over i >= c of evidence[i] + const, c = 1 .. commits - 1
        log_p = np.cumsum(evidence[::-1])[::-1][1:]
        posterior = np.exp(log_p - log_p.max())
        posterior /= posterior.sum()
        if posterior.max() >= NAMED_AT or rounds >= GIVE_UP:
            return int(np.argmax(posterior)) + 1 == culprit, rounds
        cdf = np.cumsum(posterior)[:-1]  # cdf[c - 1] = P(culprit <= c): commit c reads bad
        rounds += 1
        for j in range(slots):
            probe = int(np.argmin(np.abs(cdf - (j + 1) / (slots + 1)))) + 1
            if rng.random() < flaky:
                continue
            value = (1 + shift if probe >= culprit else 1.0) * (1 + noise.draw(rng))
            as_bad, as_good = density(np.asarray([value / (1 + shift) - 1.0, value - 1.0]))
            evidence[probe] += as_bad - math.log(abs(1 + shift)) - as_good
