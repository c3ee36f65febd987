"""The smoothed bootstrap the benchmarks draw measured noise with: one bandwidth rule, the variance kept.

Resampling a few recorded runs as they are repeats their exact values; adding normal jitter of width h
to each draw (a smoothed bootstrap) fills the gaps between them. Two choices matter:
- h: Silverman's rule of thumb with a robust scale, 0.9 min(sd, IQR / 1.349) n^-1/5 (Density Estimation,
  1986, eq. 3.31). The plain normal-reference rule, 1.06 sd n^-1/5, sizes the jitter by the sd, which one
  whole slow engine start among twenty (+17 %, evidence/h200/mseries2) nearly doubles: every simulated
  run then took 2.8 % of jitter on a 2.8 % core, 20 % more spread than any recorded normal start had;
- the variance: the jitter adds h^2 to it, so each draw is shrunk by 1 / sqrt(1 + h^2 / s^2) (Silverman's
  variance-preserving smoothed bootstrap, 6.4.1): the simulated runs spread as the recorded ones did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import special

SQRT_TAU = math.sqrt(2 * math.pi)


def bandwidth(values: Sequence[float] | np.ndarray) -> float:
    """Silverman's robust rule of thumb for `values` (0 for fewer than two)."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return 0.0
    sd = float(np.std(array, ddof=1))
    quartiles = np.percentile(array, [25, 75])
    spread = min(sd, float(quartiles[1] - quartiles[0]) / 1.349) or sd
    return float(0.9 * spread * float(len(array)) ** -0.2)


def variance_kept(values: Sequence[float] | np.ndarray, h: float) -> float:
    """The factor that gives residual + N(0, h^2) draws the variance of `values` themselves."""
    sd = float(np.std(np.asarray(values, dtype=float), ddof=1))
    return 1.0 / math.sqrt(1.0 + (h / sd) ** 2) if sd > 0 else 1.0


def log_density(centres: np.ndarray, width: float, starts: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """The exact log density of a smoothed bootstrap's draw: a mixture of normals of sd `width`, one around
    each of `centres`; for the median of an odd number m = 2k + 1 of draws, m! / (k!)^2 F^k (1 - F)^k f."""
    half = (starts - 1) // 2

    def density(x: np.ndarray) -> np.ndarray:
        z = (x[:, None] - centres[None, :]) / width
        one = special.logsumexp(-0.5 * z * z, axis=1) - math.log(len(centres) * width * SQRT_TAU)
        if starts == 1:
            return np.asarray(one)
        below = np.clip(np.mean(special.ndtr(z), axis=1), 1e-300, 1.0 - 1e-16)
        ways = math.lgamma(starts + 1) - 2 * math.lgamma(half + 1)
        return np.asarray(ways + half * (np.log(below) + np.log1p(-below)) + one)

    return density
