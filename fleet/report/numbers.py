"""How many decimals a metric is printed with, and the half-up rounding a reader expects: shared by every
report format (the table of decimals per name suffix is in fleet/report/text.py's docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_POSITION = re.compile(r"(_pos)?_?\d+$")


@dataclass(frozen=True)
class MetricFormat:
    decimals: int
    expected_min_decimals: int


def metric_format(name: str, magnitude: float) -> MetricFormat:
    """Decimals for a metric, keyed by its name's suffix (table in the module docstring)."""
    base = _POSITION.sub("", name)
    if base.endswith(("_rate", "_fraction")):
        return MetricFormat(3, 2)
    if base.endswith("_ms"):
        return MetricFormat(1, 1)
    if base == "speedup" or base.endswith(("_speedup", "_length", "_len")):
        return MetricFormat(2, 2)
    if base.endswith("_per_s"):
        return MetricFormat(1, 1)
    if base.endswith("_s"):
        return MetricFormat(3, 1)
    return MetricFormat(3, 1) if abs(magnitude) < 10 else MetricFormat(1, 1)


def fmt_number(value: float, decimals: int) -> str:
    """Half-up rounding of the value as a reader would write it in decimal."""
    exact = Decimal(f"{value:.12g}")
    return str(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def fmt_expected(value: float, fmt: MetricFormat) -> str:
    """Expected values keep their recorded precision, but at least `expected_min_decimals`."""
    text = fmt_number(value, fmt.decimals)
    if "." in text:
        integer, fraction = text.split(".")
        fraction = fraction.rstrip("0").ljust(fmt.expected_min_decimals, "0")
        text = f"{integer}.{fraction}" if fraction else integer
    return text
