"""Derived metrics: vLLM's acceptance definitions, match summaries, latency percentiles, speedup."""

from __future__ import annotations

import pytest

from fleet.model import Measurement, RequestTiming, SpecCounters
from fleet.model.metrics import METRICS, metric_info, position_metric
from fleet.suite.derive import derive_metrics, first_divergence, match_summary


def _timing(index: int, e2e: float, ttft: float = 0.01, out: int = 11) -> RequestTiming:
    return RequestTiming(prompt_index=index, prompt_tokens=5, output_tokens=out, ttft_s=ttft,
                         tpot_s=(e2e - ttft) / (out - 1), e2e_s=e2e)


def _measurement(tokens: list[list[int]], e2e: list[float], texts: list[str] | None = None) -> Measurement:
    return Measurement(token_ids=tokens, texts=texts, timings=[_timing(i, s) for i, s in enumerate(e2e)])


def test_acceptance_metrics_follow_vllm_definitions_when_drafts_exist() -> None:
    counters = SpecCounters(num_drafts=10, num_draft_tokens=40, num_accepted_tokens=12,
                            accepted_per_position=[6, 3, 2, 1])
    ref = _measurement([[1, 2]], [1.0])
    metrics, _ = derive_metrics(ref, ref, counters)
    assert metrics["acceptance_length"] == pytest.approx(2.2)
    assert metrics["acceptance_rate"] == pytest.approx(0.3)
    assert [metrics[position_metric(i)] for i in range(4)] == pytest.approx([0.6, 0.3, 0.2, 0.1])


def test_acceptance_length_is_one_and_rates_zero_when_nothing_was_drafted() -> None:
    counters = SpecCounters(num_drafts=0, num_draft_tokens=0, num_accepted_tokens=0,
                            accepted_per_position=[0, 0])
    ref = _measurement([[1]], [1.0])
    metrics, _ = derive_metrics(ref, ref, counters)
    assert metrics["acceptance_length"] == 1.0
    assert metrics["acceptance_rate"] == 0.0
    assert metrics["acceptance_rate_pos_0"] == metrics["acceptance_rate_pos_1"] == 0.0


def test_no_acceptance_metrics_when_the_engine_reported_no_counters() -> None:
    ref = _measurement([[1]], [1.0])
    metrics, _ = derive_metrics(ref, ref, None)
    assert "acceptance_length" not in metrics
    assert metrics["match_rate"] == 1.0


def test_latency_percentiles_are_linear_and_in_milliseconds() -> None:
    spec = _measurement([[1]] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])
    metrics, _ = derive_metrics(spec, spec, None)
    assert metrics["e2e_p50_ms"] == pytest.approx(3000.0)
    assert metrics["e2e_p90_ms"] == pytest.approx(4600.0)
    assert metrics["e2e_p99_ms"] == pytest.approx(4960.0)
    assert metrics["ttft_p50_ms"] == pytest.approx(10.0)
    assert metrics["tpot_p50_ms"] == pytest.approx((3.0 - 0.01) / 10 * 1000)


def test_speedup_is_the_ratio_of_summed_latencies_over_common_prompts() -> None:
    ref = _measurement([[1], [2]], [2.0, 4.0])
    spec = _measurement([[1], [2]], [1.0, 2.0])
    metrics, _ = derive_metrics(ref, spec, None)
    assert metrics["speedup"] == pytest.approx(2.0)
    median_tpot_s = ((2.0 - 0.01) / 10 + (4.0 - 0.01) / 10) / 2
    assert metrics["reference_tpot_p50_ms"] == pytest.approx(median_tpot_s * 1000)


def test_throughput_appears_only_when_a_batch_was_timed() -> None:
    spec = _measurement([[1], [2]], [1.0, 1.0])
    assert "throughput_tok_s" not in derive_metrics(spec, spec, None)[0]
    batched = spec.model_copy(update={"batch_wall_s": 2.0})
    assert derive_metrics(spec, batched, None)[0]["throughput_tok_s"] == pytest.approx(11.0)


def test_match_summary_reports_the_first_divergence_per_prompt() -> None:
    ref = _measurement([[1, 2, 3], [4, 5, 6], [7, 8]], [1, 1, 1], texts=["a", "b", "c"])
    spec = _measurement([[1, 2, 3], [4, 9, 6], [7, 8, 9]], [1, 1, 1], texts=["a", "x", "c"])
    summary = match_summary(ref, spec)
    assert summary.num_prompts == 3
    assert summary.exact_token_matches == 1
    assert summary.exact_text_matches == 2
    assert summary.first_divergence == [None, 1, 2]
    assert derive_metrics(ref, spec, None)[0]["match_rate"] == pytest.approx(1 / 3)


def test_text_matches_are_unknown_when_a_run_has_no_texts() -> None:
    ref = _measurement([[1]], [1.0], texts=["a"])
    spec = _measurement([[1]], [1.0])
    assert match_summary(ref, spec).exact_text_matches is None


def test_first_divergence_is_none_only_for_identical_sequences() -> None:
    assert first_divergence([1, 2], [1, 2]) is None
    assert first_divergence([], [5]) == 0
    assert first_divergence([1, 2], [1]) == 1


def test_registry_knows_direction_and_class_of_every_metric_derive_can_produce() -> None:
    counters = SpecCounters(num_drafts=1, num_draft_tokens=3, num_accepted_tokens=1,
                            accepted_per_position=[1, 0, 0])
    ref = _measurement([[1]], [1.0])
    metrics, _ = derive_metrics(ref, ref.model_copy(update={"batch_wall_s": 1.0}), counters)
    for name in metrics:
        assert metric_info(name) is not None, name
    assert metric_info("acceptance_rate_pos_2") is not None
    assert metric_info("acceptance_rate_pos_2").kind == "acceptance"  # type: ignore[union-attr]
    assert metric_info("acceptance_rate_pos_x") is None
    assert METRICS["ttft_p50_ms"].better == "lower" and METRICS["ttft_p50_ms"].kind == "latency"
    assert METRICS["match_rate"].kind == "match" and METRICS["speedup"].better == "higher"
