"""fleet.plan.cost: GPU-hours and dollars from Job spans, GPU counts and per-pool prices."""

from __future__ import annotations

import pytest

from fleet.errors import ConfigError
from fleet.model import Hardware
from fleet.plan.cost import (
    JobSpan,
    account,
    cost_document,
    iso_to_epoch,
    parse_price_overrides,
    prices_for,
    render_cost_text,
)


def span(cell: str, hardware: str, gpus: int, seconds: float, attempt: int = 1) -> JobSpan:
    return JobSpan(cell, hardware, gpus, 100.0, 100.0 + seconds, attempt)


def test_gpu_hours_are_wall_hours_times_gpus_and_every_attempt_counts() -> None:
    summary = account([span("a", "h100", 8, 900), span("a", "h100", 8, 900, attempt=2),
                       span("b", "l4", 1, 3600)], {"h100": 3.0, "l4": 0.8})
    assert summary.per_cell["a"].gpu_hours == pytest.approx(4.0)
    assert summary.per_cell["a"].jobs == 2
    assert summary.total.gpu_hours == pytest.approx(5.0)
    assert summary.total.cost_usd == pytest.approx(4.0 * 3.0 + 0.8)
    assert summary.per_hardware["l4"].cost_usd == pytest.approx(0.8)


def test_pool_without_price_is_counted_as_unpriced_not_free() -> None:
    summary = account([span("a", "l4", 1, 3600), span("b", "h100", 1, 3600)], {"h100": 3.0})
    assert summary.total.unpriced_gpu_hours == pytest.approx(1.0)
    assert not summary.total.fully_priced
    assert "no price for l4" in render_cost_text(summary)


def test_cpu_cells_cost_wall_time_but_no_gpu_hours() -> None:
    summary = account([span("a", "cpu", 0, 1800)], {})
    assert (summary.total.gpu_hours, summary.total.wall_hours, summary.total.fully_priced) == (0.0, 0.5, True)


def test_override_replaces_the_catalog_price_and_unknown_pools_get_none() -> None:
    pools = [Hardware(name="h100", vendor="nvidia", price_per_hour_usd=3.0),
             Hardware(name="l4", vendor="nvidia")]
    assert prices_for(pools, parse_price_overrides(["h100=2.25"])) == {"h100": 2.25}


@pytest.mark.parametrize("item", ["h100", "h100=", "=3", "h100=-1", "h100=cheap"])
def test_malformed_price_is_a_config_error_with_the_expected_form(item: str) -> None:
    with pytest.raises(ConfigError, match="POOL=USD_PER_GPU_HOUR"):
        parse_price_overrides([item])


def test_cost_text_and_document_agree_on_the_totals() -> None:
    summary = account([span("a", "h100", 2, 1800)], {"h100": 3.0})
    assert render_cost_text(summary).startswith("GPU time: 1.000 GPU-h, $3.00 (1 job, 30.0 min wall)")
    document = cost_document(summary)
    assert document["total"]["cost_usd"] == pytest.approx(3.0)
    assert document["prices_usd_per_gpu_hour"] == {"h100": 3.0}


def test_iso_times_with_z_and_without_zone_are_utc() -> None:
    assert iso_to_epoch("1970-01-01T01:00:00Z") == iso_to_epoch("1970-01-01T01:00:00") == 3600.0
