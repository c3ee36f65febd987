"""GPU-hour accounting: what a cell, a tier run and a bisection cost, from each Job's span and GPU count.

GPU time is the fleet's real cost, and the one a maintainer weighs against what a tier catches. Every
attempt is counted, retries and reruns included (a flaky pool costs money too). GPU-hours are
(end - start) x GPUs requested; dollars are GPU-hours x the pool's price per GPU-hour, from
jobs/hardware.yaml or an override. A pool without a price costs GPU-hours but no dollars, and the
total says so instead of pretending it is free. Pure: spans and prices in, figures out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fleet.errors import ConfigError
from fleet.model import Hardware


@dataclass(frozen=True)
class JobSpan:
    """One attempt's time on a pool: seconds since the epoch, as the backend saw it start and end."""

    cell_id: str
    hardware: str
    gpu_count: int
    started_at: float
    finished_at: float
    attempt: int = 1
    purpose: str = "run"

    @property
    def hours(self) -> float:
        return max(0.0, self.finished_at - self.started_at) / 3600.0

    @property
    def gpu_hours(self) -> float:
        return self.hours * self.gpu_count


@dataclass(frozen=True)
class CostLine:
    """GPU-hours and dollars of some jobs; `cost_usd` counts only the priced ones."""

    jobs: int = 0
    wall_hours: float = 0.0
    gpu_hours: float = 0.0
    cost_usd: float = 0.0
    unpriced_gpu_hours: float = 0.0

    def plus(self, span: JobSpan, price: float | None) -> CostLine:
        unpriced = span.gpu_hours if price is None and span.gpu_count > 0 else 0.0
        return CostLine(self.jobs + 1, self.wall_hours + span.hours, self.gpu_hours + span.gpu_hours,
                        self.cost_usd + (span.gpu_hours * price if price is not None else 0.0),
                        self.unpriced_gpu_hours + unpriced)

    @property
    def fully_priced(self) -> bool:
        return self.unpriced_gpu_hours == 0.0


@dataclass(frozen=True)
class CostSummary:
    """Per cell, per pool and in total; `prices` are the per-GPU-hour prices that were applied."""

    total: CostLine
    per_cell: dict[str, CostLine] = field(default_factory=dict)
    per_hardware: dict[str, CostLine] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)


def prices_for(hardware: Iterable[Hardware],
               overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Price per GPU-hour per pool: the catalog's, replaced by `overrides` where given."""
    prices = {h.name: h.price_per_hour_usd for h in hardware if h.price_per_hour_usd is not None}
    prices.update(overrides or {})
    return prices


def parse_price_overrides(items: Sequence[str], *, option: str = "--price") -> dict[str, float]:
    """`["h100=2.5", "l4=0.8"]` -> {"h100": 2.5, "l4": 0.8}; a malformed item is a ConfigError."""
    prices: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            price = float(value) if sep and name.strip() else -1.0
        except ValueError:
            price = -1.0
        if price < 0:
            raise ConfigError(f"bad price {item!r}", where=option,
                              fix=f"write POOL=USD_PER_GPU_HOUR, e.g. {option} h100=3.00")
        prices[name.strip()] = price
    return prices


def account(spans: Iterable[JobSpan], prices: Mapping[str, float]) -> CostSummary:
    total = CostLine()
    per_cell: dict[str, CostLine] = {}
    per_hardware: dict[str, CostLine] = {}
    for span in spans:
        price = prices.get(span.hardware)
        total = total.plus(span, price)
        per_cell[span.cell_id] = per_cell.get(span.cell_id, CostLine()).plus(span, price)
        per_hardware[span.hardware] = per_hardware.get(span.hardware, CostLine()).plus(span, price)
    used = {name: prices[name] for name in per_hardware if name in prices}
    return CostSummary(total, per_cell, per_hardware, used)


def iso_to_epoch(stamp: str) -> float:
    """An ISO-8601 time (a trailing Z allowed, naive read as UTC) as seconds since the epoch."""
    moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def render_cost_text(summary: CostSummary, *, title: str = "GPU time") -> str:
    """The cost block every text report ends with."""
    lines = [f"{title}: {_line_text(summary.total)}"]
    for cell_id, line in summary.per_cell.items():
        lines.append(f"  {cell_id}: {_line_text(line)}")
    unpriced = sorted(name for name, line in summary.per_hardware.items() if line.unpriced_gpu_hours)
    if unpriced:
        lines.append(f"  no price for {', '.join(unpriced)}: set price_per_hour_usd in jobs/hardware.yaml "
                     "or pass --price POOL=USD")
    return "\n".join(lines) + "\n"


def cost_document(summary: CostSummary) -> dict[str, Any]:
    """The cost as JSON-ready data, for report.json and the history store."""
    return {
        "total": asdict(summary.total),
        "per_cell": {key: asdict(line) for key, line in summary.per_cell.items()},
        "per_hardware": {key: asdict(line) for key, line in summary.per_hardware.items()},
        "prices_usd_per_gpu_hour": dict(summary.prices),
    }


def spans_document(spans: Iterable[JobSpan]) -> list[dict[str, Any]]:
    return [asdict(span) for span in spans]


def spans_from_document(items: Iterable[Mapping[str, Any]]) -> list[JobSpan]:
    return [JobSpan(**dict(item)) for item in items]


def _line_text(line: CostLine) -> str:
    dollars = f"${line.cost_usd:,.2f}" if line.fully_priced else (
        f"${line.cost_usd:,.2f} + {line.unpriced_gpu_hours:.3f} unpriced GPU-h")
    return f"{line.gpu_hours:.3f} GPU-h, {dollars} ({line.jobs} job{'s' if line.jobs != 1 else ''}, " \
           f"{line.wall_hours * 60:.1f} min wall)"
