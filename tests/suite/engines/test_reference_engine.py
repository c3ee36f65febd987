"""The reference engine on the real bundled tiny models: lossless, counted as vLLM counts, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from fleet.model import Cell
from fleet.suite.engines._ngram import propose_ngram
from fleet.suite.engines.base import EngineConfigError, EngineRun
from fleet.suite.engines.reference import ReferenceEngine
from fleet.suite.model_refs import resolve_model
from fleet.suite.prompts import load_prompts

TARGET = "bundled:tiny-stdlib/target"
DRAFT = "bundled:tiny-stdlib/draft"
EAGLE3 = "bundled:tiny-stdlib/eagle3"


def make_cell(method: str = "ngram", *, k: int = 4, num_prompts: int = 50, max_tokens: int = 64,
              draft: str | None = DRAFT, model: str = TARGET, options: dict[str, Any] | None = None) -> Cell:
    variant: dict[str, Any] = {"name": f"{method}-k{k}", "method": method, "num_speculative_tokens": k}
    if method == "ngram":
        variant["options"] = options or {"prompt_lookup_min": 2, "prompt_lookup_max": 4}
    return Cell.model_validate({
        "tier": "test", "variant": variant, "model": model,
        "draft_model": draft if method != "ngram" else None,
        "hardware": {"name": "cpu-local", "vendor": "cpu", "gpu_count": 0},
        "workload": {"num_prompts": num_prompts, "max_tokens": max_tokens, "warmup_prompts": 0},
        "engine": "reference",
    })


# -- prompt lookup, as vLLM's ngram proposer picks ---------------------------------------------------


def test_ngram_proposes_the_tokens_after_the_longest_matching_suffix() -> None:
    # vLLM's own docstring example: [4,2,3] has no match, [2,3] matches; 3 tokens remain after it.
    assert propose_ngram([1, 2, 3, 4, 2, 3], min_n=2, max_n=3, k=4) == [4, 2, 3]


def test_ngram_prefers_a_longer_match_over_an_earlier_shorter_one() -> None:
    context = [7, 9, 1, 5, 8, 9, 1, 6, 8, 9, 1]
    assert propose_ngram(context, min_n=2, max_n=3, k=1) == [6]


def test_ngram_takes_the_earliest_occurrence_when_matches_tie() -> None:
    context = [1, 2, 5, 1, 2, 6, 1, 2]
    assert propose_ngram(context, min_n=2, max_n=2, k=2) == [5, 1]


def test_ngram_may_match_an_occurrence_overlapping_the_suffix() -> None:
    assert propose_ngram([3, 3, 3], min_n=2, max_n=2, k=4) == [3]


def test_ngram_proposes_nothing_when_no_ngram_of_allowed_length_recurs() -> None:
    assert propose_ngram([1, 2, 3, 4], min_n=1, max_n=3, k=4) == []
    assert propose_ngram([1], min_n=2, max_n=3, k=4) == []
    assert propose_ngram([5, 1, 2, 5], min_n=2, max_n=3, k=4) == []


# -- configuration errors --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> ReferenceEngine:
    return ReferenceEngine()


def test_variants_the_reference_engine_does_not_implement_are_unsupported(engine: ReferenceEngine) -> None:
    reason = engine.unsupported_reason(make_cell("mtp"))
    assert reason is not None and "mtp" in reason
    for method in ("ngram", "draft_model", "eagle3", "eagle", "medusa"):
        assert engine.unsupported_reason(make_cell(method)) is None


def test_missing_model_path_is_a_config_error_naming_it(engine: ReferenceEngine, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(EngineConfigError, match="no-such-model"):
        engine.run_reference(make_cell(model=str(missing)), ["def f():"])


def test_draft_model_without_a_draft_is_a_config_error(engine: ReferenceEngine) -> None:
    with pytest.raises(EngineConfigError, match="no draft model"):
        engine.run_speculative(make_cell("draft_model", draft=None), ["def f():"])


def test_missing_draft_path_is_a_config_error_naming_it(engine: ReferenceEngine, tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError, match="absent-draft"):
        engine.run_speculative(make_cell("draft_model", draft=str(tmp_path / "absent-draft")), ["x"])


def test_eagle3_without_a_head_is_a_config_error(engine: ReferenceEngine) -> None:
    with pytest.raises(EngineConfigError, match="no draft model"):
        engine.run_speculative(make_cell("eagle3", draft=None), ["def f():"])


def test_an_eagle3_head_reading_layers_the_target_lacks_is_a_config_error(
    engine: ReferenceEngine, tmp_path: Path
) -> None:
    head = tmp_path / "head"
    shutil.copytree(resolve_model(EAGLE3), head)
    config = json.loads((head / "config.json").read_text())
    config["eagle_aux_hidden_state_layer_ids"] = [1, 3, 9]
    (head / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineConfigError, match="target layers"):
        engine.run_speculative(make_cell("eagle3", draft=str(head)), ["x"])


def test_a_draft_model_folder_is_not_an_eagle3_head(engine: ReferenceEngine) -> None:
    with pytest.raises(EngineConfigError, match="eagle_aux_hidden_state_layer_ids"):
        engine.run_speculative(make_cell("eagle3", draft=DRAFT), ["x"])


def test_the_bundled_eagle3_head_is_in_the_layout_vllm_loads() -> None:
    folder = Path(resolve_model(EAGLE3))
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"] and config["num_hidden_layers"] == 1
    assert len(config["eagle_aux_hidden_state_layer_ids"]) == 3
    tensors = load_file(str(folder / "model.safetensors"))
    hidden, draft_vocab = config["hidden_size"], config["draft_vocab_size"]
    assert tensors["fc.weight"].shape == (hidden, 3 * hidden)
    assert tensors["midlayer.self_attn.q_proj.weight"].shape[1] == 2 * hidden
    assert tensors["lm_head.weight"].shape == (draft_vocab, hidden)
    d2t = tensors["d2t"]
    assert d2t.dtype == torch.int64 and d2t.shape == (draft_vocab,)
    target_ids = torch.arange(draft_vocab) + d2t
    assert target_ids.min() >= 0 and target_ids.max() < config["vocab_size"]
    assert bool((target_ids[1:] > target_ids[:-1]).all())  # one target token per draft token
    assert torch.equal(tensors["t2d"].nonzero().flatten(), target_ids)
    assert "embed_tokens.weight" not in tensors  # vLLM shares the target's embedding


def test_inverted_lookup_bounds_are_a_config_error(engine: ReferenceEngine) -> None:
    cell = make_cell("ngram", options={"prompt_lookup_min": 4, "prompt_lookup_max": 2})
    with pytest.raises(EngineConfigError, match="prompt_lookup"):
        engine.run_speculative(cell, ["x"])


def test_draft_with_another_vocabulary_is_a_config_error(engine: ReferenceEngine, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=64)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "small-vocab")
    cell = make_cell("draft_model", draft=str(tmp_path / "small-vocab"))
    with pytest.raises(EngineConfigError, match="vocabulary"):
        engine.run_speculative(cell, ["x"])


def test_requests_longer_than_the_model_allows_are_a_config_error(engine: ReferenceEngine) -> None:
    cell = make_cell("ngram", num_prompts=1, max_tokens=2000)
    with pytest.raises(EngineConfigError, match="positions"):
        engine.run_speculative(cell, load_prompts(cell.workload))


# -- counting at the edges, with the target as its own draft (every draft token is accepted) ----------


def test_a_draft_identical_to_the_target_reaches_acceptance_length_k_plus_one(
    engine: ReferenceEngine,
) -> None:
    cell = make_cell("draft_model", k=3, num_prompts=3, max_tokens=17, draft=TARGET)
    run = engine.run_speculative(cell, load_prompts(cell.workload))
    counters = run.counters
    assert counters is not None
    # 16 tokens after the prefill's one, 4 per step: 4 steps per prompt, each accepting all 3 drafts.
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (12, 36, 36)
    assert counters.accepted_per_position == [12, 12, 12]


def test_acceptances_past_max_tokens_are_counted_but_not_emitted(engine: ReferenceEngine) -> None:
    cell = make_cell("draft_model", k=4, num_prompts=1, max_tokens=3, draft=TARGET)
    run = engine.run_speculative(cell, load_prompts(cell.workload))
    assert run.counters is not None
    assert (run.counters.num_drafts, run.counters.num_accepted_tokens) == (1, 4)
    assert [len(ids) for ids in run.measurement.token_ids] == [3]
    assert run.measurement.timings[0].output_tokens == 3


# -- the full shipped prompt set: lossless, with consistent counters ---------------------------------


@pytest.fixture(scope="module")
def shipped_runs(engine: ReferenceEngine) -> dict[str, EngineRun]:
    """Plain greedy and the three methods over all 50 shipped prompts x 64 tokens (about 1 min on 2 cores)."""
    prompts = load_prompts(make_cell().workload)
    return {
        "reference": engine.run_reference(make_cell("ngram"), prompts),
        "draft_model": engine.run_speculative(make_cell("draft_model"), prompts),
        "ngram": engine.run_speculative(make_cell("ngram"), prompts),
        "eagle3": engine.run_speculative(make_cell("eagle3", draft=EAGLE3), prompts),
    }


@pytest.mark.slow
@pytest.mark.parametrize("method", ["draft_model", "ngram", "eagle3"])
def test_speculative_output_equals_plain_greedy_on_every_shipped_prompt(
    shipped_runs: dict[str, EngineRun], method: str
) -> None:
    reference = shipped_runs["reference"].measurement
    speculative = shipped_runs[method].measurement
    assert len(reference.token_ids) == 50
    assert all(len(ids) == 64 for ids in reference.token_ids)
    mismatched = [i for i, (a, b) in enumerate(zip(reference.token_ids, speculative.token_ids, strict=True))
                  if a != b]
    assert mismatched == []
    assert reference.texts == speculative.texts


@pytest.mark.slow
@pytest.mark.parametrize("method", ["draft_model", "ngram", "eagle3"])
def test_counters_are_consistent_and_speculation_accepts_tokens(
    shipped_runs: dict[str, EngineRun], method: str
) -> None:
    counters, detail = shipped_runs[method].counters, shipped_runs[method].engine_counters
    assert counters is not None and detail is not None
    per_position = counters.accepted_per_position
    assert len(per_position) == 4 and sum(per_position) == counters.num_accepted_tokens
    assert per_position == sorted(per_position, reverse=True)  # position i accepted implies i-1 was
    per_request_drafts = sum(r["num_drafts"] for r in detail["per_request"])
    assert counters.num_drafts == detail["verify_steps"] == per_request_drafts
    assert counters.num_draft_tokens <= 4 * counters.num_drafts
    assert 1.0 + counters.num_accepted_tokens / counters.num_drafts > 1.2
    if method in ("draft_model", "eagle3"):  # model drafters propose k tokens on every step
        assert counters.num_draft_tokens == 4 * counters.num_drafts
        assert detail["plain_decode_steps"] == 0
    else:
        assert detail["plain_decode_steps"] > 0  # prompt lookup misses on most steps


@pytest.mark.slow
def test_runs_record_timings_and_provenance(shipped_runs: dict[str, EngineRun]) -> None:
    run = shipped_runs["draft_model"]
    timing = run.measurement.timings[0]
    assert timing.prompt_tokens == 200 and timing.output_tokens == 64
    assert 0 < timing.ttft_s < timing.e2e_s and timing.tpot_s is not None
    assert run.provenance["dtype"] == "float32" and run.provenance["cpu_threads"] >= 1
    assert run.provenance["draft_path"] == resolve_model(DRAFT)
