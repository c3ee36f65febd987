"""Reading vLLM's counters and request stats, on snapshots captured from real H200 runs (vLLM 0.26.0)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from fleet.suite.engines.vllm_metrics import (
    ACCEPTED_PER_POS,
    CounterReset,
    MissingRequestStats,
    canonical_name,
    prefix_cache_delta,
    prometheus_text_entries,
    request_timing,
    snapshot_delta,
    spec_delta,
    spec_totals,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vllm"


def child_result(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return document


def vllm_own_delta(result: dict[str, Any]) -> dict[str, Any]:
    """The same window as vLLM's own example code summed it on the machine (recorded beside the snapshots)."""
    own = result["vllm_example_counts"]
    before, after = own["before"], own["after"]
    delta = {key: after[key] - before[key] for key in after if key != "accepted_per_position"}
    delta["accepted_per_position"] = [a - b for a, b in zip(after["accepted_per_position"],
                                                            before["accepted_per_position"], strict=True)]
    return delta


SPECULATIVE_RUNS = ["draft_model-k4-speculative", "ngram-k4-speculative", "synthetic-k4-speculative"]


@pytest.mark.parametrize("name", SPECULATIVE_RUNS)
def test_snapshot_delta_equals_vllms_own_count_when_read_from_a_real_run(name: str) -> None:
    result = child_result(name)
    counters = snapshot_delta(result["metrics_before"], result["metrics_after"])
    assert counters is not None
    assert counters.model_dump() == vllm_own_delta(result)


def test_per_position_counts_form_a_vector_of_k_that_sums_to_accepted_when_read_from_a_real_run() -> None:
    result = child_result("draft_model-k4-speculative")
    counters = snapshot_delta(result["metrics_before"], result["metrics_after"])
    assert counters is not None
    assert len(counters.accepted_per_position) == 4
    assert sum(counters.accepted_per_position) == counters.num_accepted_tokens


def test_synthetic_sampler_counts_accept_exactly_two_positions_when_acceptance_length_is_three() -> None:
    result = child_result("synthetic-k4-speculative")
    counters = snapshot_delta(result["metrics_before"], result["metrics_after"])
    assert counters is not None
    assert counters.accepted_per_position[2:] == [0, 0]
    assert counters.num_accepted_tokens == 2 * counters.num_drafts


def test_counters_are_summed_over_label_sets_when_two_engines_report() -> None:
    result = child_result("draft_model-k4-speculative")
    single = spec_totals(result["metrics_after"])
    second_engine = copy.deepcopy([e for e in result["metrics_after"] if "spec_decode" in e["name"]])
    for entry in second_engine:
        entry["labels"]["engine"] = "1"
    doubled = spec_totals(result["metrics_after"] + second_engine)
    assert single is not None and doubled is not None
    assert doubled.num_drafts == 2 * single.num_drafts
    assert doubled.accepted_per_position == tuple(2 * v for v in single.accepted_per_position)
    assert (single.label_sets, doubled.label_sets) == (1, 2)


def test_underscore_spelling_and_total_suffix_read_the_same_when_names_use_vllm_underscore() -> None:
    result = child_result("ngram-k4-speculative")
    respelled = copy.deepcopy(result["metrics_after"])
    for entry in respelled:
        entry["name"] = entry["name"].replace("vllm:", "vllm_") + "_total"
    assert spec_totals(respelled) == spec_totals(result["metrics_after"])
    assert canonical_name("vllm_spec_decode_num_drafts_total") == "vllm:spec_decode_num_drafts"


def test_prometheus_text_gives_the_same_delta_when_read_from_the_same_real_run() -> None:
    result = child_result("draft_model-k4-speculative")
    from_text = snapshot_delta(prometheus_text_entries(result["prometheus"]["before"]),
                               prometheus_text_entries(result["prometheus"]["after"]))
    assert from_text == snapshot_delta(result["metrics_before"], result["metrics_after"])


def test_per_position_counters_fold_into_a_vector_when_given_one_counter_per_position_label() -> None:
    entries = prometheus_text_entries(child_result("ngram-k4-speculative")["prometheus"]["after"])
    per_position = [e for e in entries if canonical_name(e["name"]) == ACCEPTED_PER_POS]
    totals = spec_totals(entries)
    assert len(per_position) == 4
    assert totals is not None and len(totals.accepted_per_position) == 4


def test_delta_is_none_when_the_run_had_no_speculation() -> None:
    result = child_result("tiny-stdlib-reference")
    assert snapshot_delta(result["metrics_before"], result["metrics_after"]) is None


def test_counter_reset_is_an_error_when_snapshots_come_in_the_wrong_order() -> None:
    result = child_result("draft_model-k4-speculative")
    with pytest.raises(CounterReset):
        spec_delta(spec_totals(result["metrics_after"]), spec_totals(result["metrics_before"]))


def test_ttft_and_tpot_come_from_engine_durations_when_stats_mix_wall_and_monotonic_clocks() -> None:
    request = child_result("draft_model-k4-speculative")["batch"]["requests"][0]
    stats = request["stats"]
    assert stats["arrival_time"] - stats["first_token_ts"] > 1e6  # two clocks: never subtract across them
    timing = request_timing(0, prompt_tokens=request["prompt_tokens"],
                            output_tokens=len(request["token_ids"]), stats=stats)
    decode = stats["last_token_ts"] - stats["first_token_ts"]
    assert timing.ttft_s == pytest.approx(stats["first_token_latency"])
    assert timing.tpot_s == pytest.approx(decode / (stats["num_generation_tokens"] - 1))
    assert timing.e2e_s == pytest.approx(timing.ttft_s + decode)
    assert 0 < timing.ttft_s < 1 and 0 < timing.e2e_s < 10


def test_end_to_end_is_the_clients_measurement_when_a_request_was_sent_alone() -> None:
    single = child_result("draft_model-k4-speculative")["singles"][0]
    timing = request_timing(0, prompt_tokens=single["prompt_tokens"], output_tokens=len(single["token_ids"]),
                            stats=single["stats"], client_e2e_s=single["client_e2e_s"])
    assert timing.e2e_s == single["client_e2e_s"]
    assert timing.e2e_s >= timing.ttft_s


def test_missing_request_stats_is_an_error_when_log_stats_were_off() -> None:
    with pytest.raises(MissingRequestStats):
        request_timing(0, prompt_tokens=10, output_tokens=5, stats=None)


def with_timestamps(text: str) -> str:
    """The same scrape with a millisecond timestamp after every sample, as the text format allows."""
    return "\n".join(f"{line} 1795892200493" if line.strip() else line for line in text.splitlines())


def test_prometheus_text_gives_the_same_delta_when_samples_carry_timestamps() -> None:
    prometheus = child_result("draft_model-k4-speculative")["prometheus"]
    from_text = snapshot_delta(prometheus_text_entries(with_timestamps(prometheus["before"])),
                               prometheus_text_entries(with_timestamps(prometheus["after"])))
    assert from_text == snapshot_delta(prometheus_text_entries(prometheus["before"]),
                                       prometheus_text_entries(prometheus["after"]))
    [drafts] = [e for e in prometheus_text_entries(with_timestamps(prometheus["after"]))
                if canonical_name(e["name"]) == "vllm:spec_decode_num_drafts"]
    assert drafts["value"] == 5208 and drafts["labels"] == {"engine": "0",
                                                            "model_name": "fleet/assets/tiny-stdlib/target"}


def test_prometheus_text_gives_the_same_delta_when_tabs_separate_the_value() -> None:
    prometheus = child_result("ngram-k4-speculative")["prometheus"]
    tabbed = {key: prometheus[key].replace("} ", "}\t") for key in ("before", "after")}
    assert tabbed["after"] != prometheus["after"]
    from_text = snapshot_delta(prometheus_text_entries(tabbed["before"]),
                               prometheus_text_entries(tabbed["after"]))
    assert from_text is not None
    assert from_text == snapshot_delta(prometheus_text_entries(prometheus["before"]),
                                       prometheus_text_entries(prometheus["after"]))


def test_escaped_label_values_read_unescaped_and_keep_label_sets_apart() -> None:
    text = "\n".join([
        '# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.',
        '# TYPE vllm:spec_decode_num_drafts_total counter',
        'vllm:spec_decode_num_drafts_total{engine="0",model_name="org/m \\"v2\\", a\\\\b"} 3.0',
        'vllm:spec_decode_num_drafts_total{engine="0",model_name="org/m \\"v2\\", c\\nd"} 4.0',
    ]) + "\n"
    entries = prometheus_text_entries(text)
    assert [e["labels"]["model_name"] for e in entries] == ['org/m "v2", a\\b', 'org/m "v2", c\nd']
    totals = spec_totals(entries)
    assert totals is not None and (totals.num_drafts, totals.label_sets) == (7, 2)


def test_counters_read_from_text_equal_what_prometheus_client_exported() -> None:
    registry = prometheus_client.CollectorRegistry()
    drafts = prometheus_client.Counter("vllm:spec_decode_num_drafts", "drafts", ["engine", "model_name"],
                                       registry=registry)
    per_pos = prometheus_client.Counter("vllm:spec_decode_num_accepted_tokens_per_pos", "accepted",
                                        ["engine", "model_name", "position"], registry=registry)
    awkward = 'C:\\models\\"draft", v1\n'
    drafts.labels("0", awkward).inc(11)
    drafts.labels("1", awkward).inc(5)
    for position, count in enumerate([9, 4, 1]):
        per_pos.labels("0", awkward, str(position)).inc(count)
    entries = prometheus_text_entries(prometheus_client.generate_latest(registry).decode("utf-8"))
    assert {e["labels"]["model_name"] for e in entries} == {awkward}
    totals = spec_totals(entries)
    assert totals is not None
    assert (totals.num_drafts, totals.accepted_per_position, totals.label_sets) == (16, (9, 4, 1), 2)


def test_a_counter_family_without_the_total_suffix_is_read_as_a_counter() -> None:
    text = "# TYPE vllm:spec_decode_num_drafts counter\nvllm:spec_decode_num_drafts{engine=\"0\"} 8\n" \
           "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\"} 2\n"
    [drafts] = prometheus_text_entries(text)
    assert (drafts["name"], drafts["labels"], drafts["value"]) == (
        "vllm:spec_decode_num_drafts_total", {"engine": "0"}, 8)


# -- prefix cache (issue 30) ---------------------------------------------------------------------------


def test_prefix_cache_delta_counts_prompt_tokens_of_the_measured_window_when_read_from_a_real_run() -> None:
    result = child_result("ngram-k4-speculative")

    counters = prefix_cache_delta(result["metrics_before"], result["metrics_after"])

    # 50 batch + 16 single requests of 200 prompt tokens; the singles re-send cached prompts and the 8
    # warm-up prompts are the batch's last 8 (12 full 16-token blocks each): 24 x 192 tokens hit.
    assert counters is not None
    assert (counters.queries, counters.hits) == (66 * 200, 24 * 192)


def test_only_vllms_own_prefix_cache_counters_are_read_not_external_or_deprecated_ones() -> None:
    def entry(name: str, value: int) -> dict[str, Any]:
        return {"name": name, "kind": "counter", "labels": {"engine": "0"}, "value": value}

    after = [entry("vllm:prefix_cache_queries", 100), entry("vllm:prefix_cache_hits", 64),
             entry("vllm:external_prefix_cache_queries", 999), entry("vllm:gpu_prefix_cache_hits", 999),
             {**entry("vllm_prefix_cache_hits_total", 16), "labels": {"engine": "1"}}]

    counters = prefix_cache_delta([], after)

    assert counters is not None and (counters.queries, counters.hits) == (100, 80)


def test_prefix_cache_delta_is_none_when_vllm_exposes_no_prefix_cache_counter() -> None:
    assert prefix_cache_delta([], [{"name": "vllm:spec_decode_num_drafts", "value": 3}]) is None


def test_a_prefix_cache_counter_that_went_down_is_a_counter_reset() -> None:
    def snapshot(queries: int, hits: int) -> list[dict[str, Any]]:
        return [{"name": "vllm:prefix_cache_queries", "value": queries},
                {"name": "vllm:prefix_cache_hits", "value": hits}]

    before, after = snapshot(10, 5), snapshot(4, 5)

    with pytest.raises(CounterReset):
        prefix_cache_delta(before, after)
