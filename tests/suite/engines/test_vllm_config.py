"""What a cell asks of vLLM and whether this vLLM can do it, on the capabilities probed on the H200."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from fleet.errors import ConfigError
from fleet.model import Cell
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.suite.engines.vllm_config import (
    FIXED_LLM_ARGS,
    attention_backends,
    cache_root,
    classify_failure,
    flatten_literal,
    llm_arguments,
    log_tail,
    parse_capabilities,
    single_prompt_count,
    speculative_config,
    unsupported_reason,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vllm"
JOBS = Path(__file__).resolve().parents[3] / "jobs"


def probed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "capabilities-0.26.0.json").read_text(encoding="utf-8"))
    return document


def h200_cell(variant: str) -> Cell:
    cells = expand(load_tier(JOBS, "h200"), load_catalog(JOBS), tier_path="jobs/h200.yaml")
    return next(cell for cell in cells if cell.variant.name == variant)


def with_variant(cell: Cell, **changes: Any) -> Cell:
    return cell.model_copy(update={"variant": cell.variant.model_copy(update=changes)})


def test_capabilities_list_every_method_the_suite_knows_when_probed_on_vllm_0_26() -> None:
    caps = parse_capabilities(probed())
    assert caps.vllm_version == "0.26.0"
    assert {"ngram", "draft_model", "eagle", "eagle3", "mtp", "medusa", "suffix", "ngram_gpu"} <= caps.methods
    assert {"rejection_sample_method", "synthetic_acceptance_length", "prompt_lookup_min"} <= \
        caps.speculative_config_keys
    assert {"load_format", "disable_log_stats", "enforce_eager"} <= caps.llm_args


def test_nested_literals_flatten_when_methods_are_built_from_literal_unions() -> None:
    mtp = Literal["deepseek_mtp", "mtp"]
    eagle = Literal["eagle", mtp]
    method = Literal["ngram", eagle] | None
    assert flatten_literal(method) == ["ngram", "eagle", "deepseek_mtp", "mtp"]


@pytest.mark.parametrize("variant", ["ngram-k4", "draft_model-k4", "draft_model-synthetic-k4"])
def test_h200_cells_are_supported_when_run_on_the_probed_vllm(variant: str) -> None:
    assert unsupported_reason(parse_capabilities(probed()), h200_cell(variant)) is None


def test_cell_is_skipped_with_the_method_named_when_this_vllm_lacks_the_method() -> None:
    raw = probed()
    raw["methods"] = [m for m in raw["methods"] if m != "medusa"]  # as in vLLM 0.33, which removed it
    cell = with_variant(h200_cell("draft_model-k4"), method="medusa", name="medusa")
    reason = unsupported_reason(parse_capabilities(raw), cell)
    assert reason is not None and "'medusa'" in reason and "0.26.0" in reason


def test_cell_is_skipped_with_the_key_named_when_speculative_config_lacks_an_option() -> None:
    cell = with_variant(h200_cell("draft_model-k4"), options={"fly_window_size": 8})
    reason = unsupported_reason(parse_capabilities(probed()), cell)
    assert reason is not None and "'fly_window_size'" in reason


def test_cell_is_skipped_when_an_engine_option_is_no_llm_argument() -> None:
    options = {"per_request_spec_decode_metrics": "summary"}  # an engine argument of vLLM 0.29+
    cell = h200_cell("ngram-k4").model_copy(update={"engine_options": options})
    reason = unsupported_reason(parse_capabilities(probed()), cell)
    assert reason is not None and "'per_request_spec_decode_metrics'" in reason


def test_suffix_is_skipped_when_the_image_lacks_arctic_inference() -> None:
    caps = parse_capabilities(probed())
    assert caps.modules["arctic_inference"] is False  # as probed on the H200
    reason = unsupported_reason(caps, with_variant(h200_cell("ngram-k4"), method="suffix", options={}))
    assert reason is not None and "arctic_inference" in reason


def test_speculative_config_carries_draft_path_and_variant_options_when_built_for_synthetic_cell() -> None:
    config = speculative_config(h200_cell("draft_model-synthetic-k4"), "/models/draft")
    assert config == {"method": "draft_model", "num_speculative_tokens": 4, "model": "/models/draft",
                      "rejection_sample_method": "synthetic", "synthetic_acceptance_length": 3.0}


def test_llm_arguments_keep_log_stats_on_and_leave_fleet_options_out_when_both_are_given() -> None:
    cell = h200_cell("draft_model-synthetic-k4")
    cell = cell.model_copy(update={"engine_options": {**cell.engine_options, "disable_log_stats": True,
                                                      "single_prompts": 4, "ignore_eos": False}})
    args = llm_arguments(cell)
    assert args == {"load_format": "dummy", **FIXED_LLM_ARGS}
    assert args["disable_log_stats"] is False
    assert single_prompt_count(cell, measured=50) == 4
    assert single_prompt_count(h200_cell("ngram-k4"), measured=10) == 10


def test_compile_cache_is_keyed_by_vllm_version_and_hardware_when_shared() -> None:
    assert cache_root("/cache/", "vllm-0.26.0", "h200") == "/cache/vllm-0.26.0-h200"
    assert cache_root("/cache", "vllm-0.26.1.dev3+gabc/x", "h200") == "/cache/vllm-0.26.1.dev3+gabc-x-h200"


def test_attention_backend_is_read_from_the_log_when_vllm_logged_its_choice() -> None:
    log = (FIXTURES / "draft_model-k4-speculative.log").read_text(encoding="utf-8")
    assert attention_backends(log) == ["FLASH_ATTN"]


def test_failed_start_is_an_infrastructure_failure_with_the_cause_in_the_tail_when_vllm_rejects_it() -> None:
    log = (FIXTURES / "engine-start-failed.log").read_text(encoding="utf-8")
    kind = classify_failure(log, returncode=1, timed_out=False, timeout_s=600, phase="speculative")
    assert kind.reason == "engine_start_failed"
    assert "Invalid repository ID or local directory" in log_tail(log)


def test_failure_after_start_is_a_crash_when_the_ready_marker_was_printed() -> None:
    log = (FIXTURES / "ngram-k4-speculative.log").read_text(encoding="utf-8")
    crashed = log + "\nFLEET_VLLM_PHASE engine_ready\nRuntimeError: EngineCore encountered an issue\n"
    kind = classify_failure(crashed, returncode=1, timed_out=False, timeout_s=600, phase="speculative")
    assert kind.reason == "engine_crashed"


@pytest.mark.parametrize("line", ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                                  "ValueError: No available memory for the cache blocks. Try increasing"])
def test_out_of_memory_is_named_when_the_log_says_so(line: str) -> None:
    kind = classify_failure(f"INFO start\n{line}\n", returncode=1, timed_out=False, timeout_s=600,
                            phase="reference")
    assert kind.reason == "cuda_oom"


def test_timeout_wins_over_everything_when_the_child_was_killed_for_it() -> None:
    kind = classify_failure("CUDA out of memory", returncode=-15, timed_out=True, timeout_s=600,
                            phase="reference")
    assert kind.reason == "timeout" and "600" in kind.what


def test_log_tail_keeps_the_last_lines_when_the_log_is_long() -> None:
    tail = log_tail("\n".join(f"line {i}" for i in range(100)), lines=3)
    assert tail == "line 97\nline 98\nline 99"


# -- execution axes (issue 30) ----------------------------------------------------------------------


def with_execution(cell: Cell, options: dict[str, Any] | None = None, **execution: str) -> Cell:
    update: dict[str, Any] = {"execution": execution}
    if options is not None:
        update["engine_options"] = options
    return cell.model_copy(update=update)


def test_execution_axes_set_every_vllm_argument_explicitly_off_included() -> None:
    cell = with_execution(h200_cell("ngram-k4"), cudagraph="none", prefix_caching="off",
                          async_scheduling="off")

    args = llm_arguments(cell)

    assert args["compilation_config"] == {"cudagraph_mode": "NONE"}
    assert args["enforce_eager"] is False
    assert args["enable_prefix_caching"] is False
    assert args["async_scheduling"] is False


@pytest.mark.parametrize(("value", "mode"), [("full", "FULL"), ("piecewise", "PIECEWISE"), ("none", "NONE")])
def test_each_cudagraph_value_is_vllms_cudagraph_mode_name(value: str, mode: str) -> None:
    args = llm_arguments(with_execution(h200_cell("ngram-k4"), cudagraph=value))

    assert args["compilation_config"]["cudagraph_mode"] == mode


def test_the_cudagraph_mode_is_merged_into_the_cells_own_compilation_config() -> None:
    cell = with_execution(h200_cell("ngram-k4"), {"compilation_config": {"mode": 3}}, cudagraph="full")

    assert llm_arguments(cell)["compilation_config"] == {"mode": 3, "cudagraph_mode": "FULL"}


def test_the_reference_run_is_built_without_the_axes() -> None:
    plain = h200_cell("ngram-k4")
    cell = with_execution(plain, cudagraph="full", prefix_caching="on")

    assert llm_arguments(cell, with_execution=False) == llm_arguments(plain)


@pytest.mark.parametrize(("options", "axis"), [
    ({"enforce_eager": True}, {"cudagraph": "full"}),
    ({"enable_prefix_caching": True}, {"prefix_caching": "off"}),
])
def test_an_engine_option_that_the_axis_sets_is_a_config_error(options: dict[str, Any],
                                                               axis: dict[str, str]) -> None:
    cell = with_execution(h200_cell("ngram-k4"), options, **axis)

    with pytest.raises(ConfigError, match=r"sets .* itself"):
        llm_arguments(cell)


def test_a_vllm_without_the_axis_argument_skips_the_cell() -> None:
    raw = probed()
    raw["llm_args"] = [name for name in raw["llm_args"] if name != "async_scheduling"]
    cell = with_execution(h200_cell("ngram-k4"), async_scheduling="on")

    reason = unsupported_reason(parse_capabilities(raw), cell)

    assert reason is not None and "'async_scheduling'" in reason and "execution async_scheduling=on" in reason


def test_vllm_0_26_takes_every_argument_the_axes_set() -> None:
    cell = with_execution(h200_cell("draft_model-k4"), cudagraph="piecewise", prefix_caching="on",
                          async_scheduling="on")

    assert unsupported_reason(parse_capabilities(probed()), cell) is None
