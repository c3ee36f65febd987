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
from collections.abc import Sequence

import numpy as np


def bandwidth(values: Sequence[float] | np.ndarray) -> float:
    """Silverman's robust rule of thumb for `values` (0 for fewer than two)."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return 0.0
    sd = float(np.std(array, ddof=1))
    quartiles = np.percentile(array, [25, 75])
    spread = min(sd, float(quartiles[1] - quartiles[0]) / 1.349) or sd
    return 0.9 * spread * float(len(array)) ** -0.2


def variance_kept(values: Sequence[float] | np.ndarray, h: float) -> float:
    """The factor that gives residual + N(0, h^2) draws the variance of `values` themselves."""
    sd = float(np.std(np.asarray(values, dtype=float), ddof=1))
    return 1.0 / math.sqrt(1.0 + (h / sd) ** 2) if sd > 0 else 1.0
