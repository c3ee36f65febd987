"""Recording a baseline from replicate results: centre, spread, and a tolerance with its reason."""

from __future__ import annotations

import datetime as dt

import pytest

from fleet.baselines.record import FLOORS_PCT, MIN_COUNTS, SPREAD_MULTIPLIER, metric_baseline, record_baseline
from fleet.model import Hardware, MatchSummary, RunResult, SpecCounters
from tests.builders import make_cell, ok_result


def replicate(metrics: dict[str, float], *, drafts: int = 1000, gpu: bool = False) -> RunResult:
    cell = make_cell()
    if gpu:
        cell = cell.model_copy(update={"hardware": Hardware(name="h200", vendor="nvidia")})
    counters = SpecCounters(num_drafts=drafts, num_draft_tokens=4 * drafts, num_accepted_tokens=drafts)
    return ok_result(cell).model_copy(update={
        "metrics": metrics, "counters": counters,
        "match": MatchSummary(num_prompts=50, exact_token_matches=45),
    })


def test_a_metric_without_spread_gets_its_class_floor_and_says_so() -> None:
    recorded = metric_baseline("acceptance_length", [2.0, 2.0, 2.0], n_trials=10_000)
    assert recorded.tolerance_pct == FLOORS_PCT["acceptance"]
    assert recorded.reason is not None and "floor" in recorded.reason


def test_a_noisy_metric_gets_a_band_of_four_recorded_deviations() -> None:
    values = [10.0, 12.0, 8.0, 11.0, 9.0]
    recorded = metric_baseline("speedup", values)
    spread = 100 * SPREAD_MULTIPLIER * recorded.std / recorded.expected  # type: ignore[operator]
    assert recorded.tolerance_pct == pytest.approx(spread, abs=0.01)
    assert recorded.tolerance_pct > FLOORS_PCT["latency"]
    assert recorded.values == values and recorded.n == 5


def test_a_rate_over_few_events_is_never_bounded_tighter_than_three_counts() -> None:
    recorded = metric_baseline("acceptance_rate_pos_3", [0.1, 0.1], n_trials=100)
    assert recorded.tolerance_pct == pytest.approx(100 * MIN_COUNTS / (100 * 0.1))
    assert recorded.reason is not None and "3 counts in 100" in recorded.reason


def test_cpu_baselines_leave_every_latency_class_metric_out() -> None:
    metrics = {"acceptance_length": 2.0, "ttft_p50_ms": 20.0, "tpot_p50_ms": 3.0, "speedup": 1.1,
               "match_rate": 1.0}
    baseline = record_baseline([replicate(metrics), replicate(metrics)], command="fleet baseline record")
    assert set(baseline.baselines) == {"acceptance_length", "match_rate"}
    assert "not baselined" in baseline.notes


def test_gpu_baselines_keep_latency() -> None:
    metrics = {"acceptance_length": 2.0, "tpot_p50_ms": 3.0}
    results = [replicate(metrics, gpu=True), replicate(metrics, gpu=True)]
    baseline = record_baseline(results, command="c", today=dt.date(2026, 11, 28))
    assert set(baseline.baselines) == {"acceptance_length", "tpot_p50_ms"}
    assert baseline.hardware == "h200" and baseline.last_updated == "2026-11-28" and baseline.runs == 2


def test_only_metrics_every_replicate_measured_are_recorded() -> None:
    first = replicate({"acceptance_length": 2.0, "match_rate": 1.0})
    second = replicate({"acceptance_length": 2.0})
    assert set(record_baseline([first, second], command="c").baselines) == {"acceptance_length"}


def test_replicates_of_different_cells_or_failed_ones_are_refused() -> None:
    good = replicate({"acceptance_length": 2.0})
    other = good.model_copy(update={"cell": make_cell("other")})
    with pytest.raises(ValueError, match="same cell"):
        record_baseline([good, other], command="c")
    with pytest.raises(ValueError, match="no results"):
        record_baseline([], command="c")
