"""What a verdict's [lo, hi] is called, in every report format: the RFC tolerance or the statistical band.

A baseline's `tolerance_pct` means the RFC's expected ± tolerance_pct, and only the RFC rule reads it.
The default judge draws its own band from the recorded spread (and the run's family size and alpha), so
a reviewer who edits tolerance_pct does not move it; printing the band as "±P%" would show a number
under a name it does not have. Each format names the two apart with these helpers.
"""

from __future__ import annotations

from fleet.model import MetricVerdict
from fleet.model.metrics import metric_info


def fmt_pct(value: float) -> str:
    return f"{value:g}"


def band_text(m: MetricVerdict) -> str:
    """The statistical band by its own name, e.g. `band +16.5% from 10 runs' spread`.

    The percentage is the distance of the band's harmful edge from expected, signed by the metric's
    harmful direction (+ where higher is worse, − where lower is, ± where the registry does not say).
    """
    info = metric_info(m.metric)
    sign = {"lower": "+", "higher": "−"}.get(info.better if info is not None else "", "±")
    band = f"band {sign}{fmt_pct(m.band_pct or 0.0)}%"
    if m.band_runs is None:
        return band
    runs = "1 run's" if m.band_runs == 1 else f"{m.band_runs} runs'"
    return f"{band} from {runs} spread"


def limit_text(m: MetricVerdict) -> str:
    """What the verdict's [lo, hi] is: `±10% tolerance` (the RFC rule), the band, or "" (neither)."""
    if m.tolerance_pct is not None:
        return f"±{fmt_pct(m.tolerance_pct)}% tolerance"
    if m.band_pct is not None:
        return band_text(m)
    return ""
