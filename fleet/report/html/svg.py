"""Charts as inline SVG strings: a metric's series with its baseline band and change points, and the
per-position acceptance bars. No JavaScript and no chart library, so a report opens offline, from a CI
artifact or a mail attachment, and renders the same in ten years. Pure: numbers in, markup out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 40
COLOR_POINT, COLOR_BAND, COLOR_CHANGE, COLOR_BAR = "#1f5fa8", "#cfe3cf", "#c0392b", "#4c78a8"


@dataclass(frozen=True)
class Band:
    """The baseline's expected value and its RFC range [lo, hi] (expected ± tolerance_pct)."""

    expected: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Marker:
    """A vertical line before point `index` (the first point of a new segment), with a short label."""

    index: int
    label: str


def series_chart(values: Sequence[float], labels: Sequence[str], *, title: str, band: Band | None = None,
                 markers: Sequence[Marker] = (), unit: str = "") -> str:
    """Points in run order (x: the i-th measurement; labels say when and at which commit)."""
    if not values:
        return ""
    low, high = _range([*values, *([band.lo, band.hi] if band else [])])
    x_step = (WIDTH - LEFT - RIGHT) / max(1, len(values) - 1)

    def x(index: float) -> float:
        return LEFT + index * x_step if len(values) > 1 else (LEFT + WIDTH - RIGHT) / 2

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [_open(title), _axes(low, high, y, unit)]
    if band is not None:
        parts.append(f'<rect x="{LEFT}" y="{y(band.hi):.1f}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{max(0.5, y(band.lo) - y(band.hi)):.1f}" fill="{COLOR_BAND}">'
                     f"<title>baseline RFC range {_num(band.lo)} to {_num(band.hi)}</title></rect>")
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(band.expected):.1f}" '
                     f'y2="{y(band.expected):.1f}" stroke="#5a8f5a" stroke-dasharray="4 3"/>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts.append(f'<path d="{path}" fill="none" stroke="{COLOR_POINT}" stroke-width="1.2"/>')
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        parts.append(f'<circle cx="{x(index):.1f}" cy="{y(value):.1f}" r="2.6" fill="{COLOR_POINT}">'
                     f"<title>{escape(label)}: {_num(value)}{escape(unit)}</title></circle>")
    for marker in markers:
        at = x(marker.index - 0.5)
        parts.append(f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
                     f'stroke="{COLOR_CHANGE}" stroke-width="1.5" stroke-dasharray="5 3"/>')
        parts.append(f'<text x="{at + 4:.1f}" y="{TOP + 12}" fill="{COLOR_CHANGE}" font-size="11">'
                     f"{escape(marker.label)}</text>")
    if labels:
        parts.append(_x_label(x(0), labels[0], "start"))
        if len(labels) > 1:
            parts.append(_x_label(x(len(labels) - 1), labels[-1], "end"))
    parts.append("</svg>")
    return "".join(parts)


def position_bars(observed: Sequence[float], bands: Sequence[Band | None], *, title: str) -> str:
    """One bar per draft position (acceptance rate), with the baseline's band as a whisker."""
    if not observed:
        return ""
    values = [*observed, *[v for b in bands if b for v in (b.lo, b.hi)]]
    low, high = 0.0, max(1e-9, max(values)) * 1.1
    slot = (WIDTH - LEFT - RIGHT) / len(observed)

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [_open(title), _axes(low, high, y, "")]
    for index, value in enumerate(observed):
        left = LEFT + index * slot + slot * 0.2
        parts.append(f'<rect x="{left:.1f}" y="{y(value):.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{max(0.0, y(0) - y(value)):.1f}" fill="{COLOR_BAR}">'
                     f"<title>position {index}: {_num(value)}</title></rect>")
        band = bands[index] if index < len(bands) else None
        middle = left + slot * 0.3
        if band is not None:
            parts.append(f'<line x1="{middle:.1f}" x2="{middle:.1f}" y1="{y(band.hi):.1f}" '
                         f'y2="{y(band.lo):.1f}" '
                         f'stroke="#2d6a2d" stroke-width="3"><title>baseline RFC range {_num(band.lo)} to '
                         f"{_num(band.hi)} (expected {_num(band.expected)})</title></line>")
            parts.append(f'<line x1="{middle - 8:.1f}" x2="{middle + 8:.1f}" y1="{y(band.expected):.1f}" '
                         f'y2="{y(band.expected):.1f}" stroke="#2d6a2d" stroke-width="2"/>')
        parts.append(f'<text x="{middle:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
                     f'text-anchor="middle">pos {index}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _open(title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}</text>')


def _axes(low: float, high: float, scale: Callable[[float], float], unit: str) -> str:
    parts = [f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
             f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" '
             f'stroke="#888"/>']
    for tick in (low, (low + high) / 2, high):
        at = scale(tick)
        parts.append(f'<text x="{LEFT - 6}" y="{at + 4:.1f}" font-size="11" text-anchor="end">'
                     f"{_num(tick)}{escape(unit)}</text>")
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at:.1f}" y2="{at:.1f}" stroke="#eee"/>')
    return "".join(parts)


def _x_label(at: float, label: str, anchor: str) -> str:
    return (f'<text x="{at:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" text-anchor="{anchor}">'
            f"{escape(label)}</text>")


def _range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if math.isclose(low, high):
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return low - pad, high + pad


def _num(value: float) -> str:
    return f"{value:.4g}"
