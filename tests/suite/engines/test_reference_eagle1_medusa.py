"""EAGLE-1 and Medusa on the reference engine: lossless with any head, counted as vLLM counts, vLLM's layout.

The heads are randomly initialised and saved to tmp_path in the checkpoint layout vLLM 0.26.0 loads
(llama_eagle.py's EagleLlamaForCausalLM, medusa.py's MedusaModel): greedy speculative decoding must
reproduce plain greedy decoding token for token whatever the drafter proposes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from fleet.model import Cell
from fleet.suite.engines import _eagle1, _medusa
from fleet.suite.engines.base import EngineConfigError, EngineRun
from fleet.suite.engines.reference import ReferenceEngine
from fleet.suite.model_refs import resolve_model
from fleet.suite.prompts import load_prompts

TARGET = "bundled:tiny-stdlib/target"
K = 4


def make_cell(method: str, draft: str | None, *, k: int = K, num_prompts: int = 3,
              max_tokens: int = 12) -> Cell:
    return Cell.model_validate({
        "tier": "test", "variant": {"name": f"{method}-k{k}", "method": method, "num_speculative_tokens": k},
        "model": TARGET, "draft_model": draft,
        "hardware": {"name": "cpu-local", "vendor": "cpu", "gpu_count": 0},
        "workload": {"num_prompts": num_prompts, "max_tokens": max_tokens, "warmup_prompts": 0},
        "engine": "reference",
    })


def target_config() -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_model(TARGET))


@pytest.fixture(scope="module")
def engine() -> ReferenceEngine:
    return ReferenceEngine()


@pytest.fixture(scope="module")
def eagle1_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    raw = _eagle1.checkpoint_config(target_config())
    folder = tmp_path_factory.mktemp("eagle1-random")
    _eagle1.save_head(_eagle1.build_head(raw), raw, folder)
    return folder


@pytest.fixture(scope="module")
def medusa_heads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    raw = _medusa.checkpoint_config(target_config(), heads=K)
    heads = _medusa.MedusaHeads(raw)
    folder = tmp_path_factory.mktemp("medusa-random")
    _medusa.save_heads(heads, raw, folder)
    return folder


@pytest.fixture(scope="module")
def runs(engine: ReferenceEngine, eagle1_head: Path, medusa_heads: Path) -> dict[str, EngineRun]:
    """Plain greedy, EAGLE-1 and Medusa on 3 shipped prompts x 12 tokens (seconds on 2 cores)."""
    prompts = load_prompts(make_cell("eagle", None).workload)
    return {
        "reference": engine.run_reference(make_cell("eagle", None), prompts),
        "eagle": engine.run_speculative(make_cell("eagle", str(eagle1_head)), prompts),
        "medusa": engine.run_speculative(make_cell("medusa", str(medusa_heads)), prompts),
    }


# -- layouts vLLM loads ------------------------------------------------------------------------------


def test_an_eagle1_head_is_saved_with_the_names_and_shapes_vllm_loads(eagle1_head: Path) -> None:
    config = json.loads((eagle1_head / "config.json").read_text())
    assert config["architectures"] == ["EagleLlamaForCausalLM"] and config["num_hidden_layers"] == 1
    tensors = load_file(str(eagle1_head / "model.safetensors"))
    hidden = config["hidden_size"]
    assert tensors["fc.weight"].shape == (hidden, 2 * hidden)
    assert tensors["layers.0.self_attn.q_proj.weight"].shape == (hidden, hidden)
    assert "layers.0.post_attention_layernorm.weight" in tensors
    # vLLM's layer 0 has no input norm, and EagleLlamaForCausalLM shares embed_tokens and lm_head.
    assert not any(name.startswith(("layers.0.input_layernorm", "embed_tokens", "lm_head", "norm"))
                   for name in tensors)


def test_medusa_heads_are_saved_with_the_names_and_shapes_vllm_loads(medusa_heads: Path) -> None:
    config = json.loads((medusa_heads / "config.json").read_text())
    assert config["architectures"] == ["MedusaModel"] and config["model_type"] == "medusa"
    assert config["num_heads"] == K and config["truncated_vocab_size"] == config["vocab_size"]
    tensors = load_file(str(medusa_heads / "model.safetensors"))
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    for i in range(K):
        assert tensors[f"blocks.{i}.layers.0.weight"].shape == (hidden, hidden)
        assert tensors[f"lm_heads.{i}.weight"].shape == (vocab, hidden)
    assert "token_map" not in tensors  # only with a truncated vocabulary


# -- lossless, counted as vLLM counts -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["eagle", "medusa"])
def test_speculative_output_equals_plain_greedy(runs: dict[str, EngineRun], method: str) -> None:
    reference, speculative = runs["reference"].measurement, runs[method].measurement
    assert [len(ids) for ids in reference.token_ids] == [12, 12, 12]
    assert speculative.token_ids == reference.token_ids
    assert speculative.texts == reference.texts


@pytest.mark.parametrize("method", ["eagle", "medusa"])
def test_counters_are_consistent(runs: dict[str, EngineRun], method: str) -> None:
    counters, detail = runs[method].counters, runs[method].engine_counters
    assert counters is not None and detail is not None
    per_position = counters.accepted_per_position
    assert len(per_position) == K and sum(per_position) == counters.num_accepted_tokens
    assert per_position == sorted(per_position, reverse=True)
    assert counters.num_accepted_tokens <= counters.num_draft_tokens == K * counters.num_drafts
    assert counters.num_drafts == detail["verify_steps"] > 0 and detail["plain_decode_steps"] == 0
    # 11 tokens after the prefill's one per prompt: every step emits 1 + its accepted tokens.
    emitted = 3 * 11
    assert counters.num_drafts + counters.num_accepted_tokens >= emitted
    assert counters.num_drafts <= emitted


def test_medusa_heads_over_a_truncated_vocabulary_draft_token_map_ids_and_stay_lossless(
    engine: ReferenceEngine, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    raw = {**_medusa.checkpoint_config(target_config(), heads=K), "truncated_vocab_size": 1024}
    heads = _medusa.MedusaHeads(raw)
    token_map = torch.randperm(raw["vocab_size"])[:1024].sort().values
    heads.token_map.copy_(token_map)
    _medusa.save_heads(heads, raw, tmp_path / "medusa")
    assert torch.equal(load_file(str(tmp_path / "medusa" / "model.safetensors"))["token_map"], token_map)
    loaded = _medusa.load_medusa_heads(str(tmp_path / "medusa"))
    with torch.no_grad():
        drafts = loaded.draft(torch.randn(raw["hidden_size"]))
    assert len(drafts) == K and set(drafts) <= set(token_map.tolist())
    cell = make_cell("medusa", str(tmp_path / "medusa"), num_prompts=2, max_tokens=8)
    prompts = load_prompts(cell.workload)
    assert engine.run_speculative(cell, prompts).measurement.token_ids == \
        engine.run_reference(cell, prompts).measurement.token_ids


# -- configuration errors --------------------------------------------------------------------------------


def test_medusa_with_k_other_than_its_head_count_is_a_config_error(
    engine: ReferenceEngine, medusa_heads: Path
) -> None:
    with pytest.raises(EngineConfigError, match="4 heads"):
        engine.run_speculative(make_cell("medusa", str(medusa_heads), k=3), ["x"])


def test_an_eagle3_head_is_not_an_eagle1_head(engine: ReferenceEngine) -> None:
    with pytest.raises(EngineConfigError, match="not an EAGLE-1 head"):
        engine.run_speculative(make_cell("eagle", "bundled:tiny-stdlib/eagle3"), ["x"])


def test_a_llama_draft_model_is_not_an_eagle1_head(engine: ReferenceEngine) -> None:
    # vLLM reads a LlamaForCausalLM config as an EAGLE-1 head too; its weight names are what differ.
    with pytest.raises(EngineConfigError, match=r"does not match its config: missing \['fc.weight'"):
        engine.run_speculative(make_cell("eagle", "bundled:tiny-stdlib/draft"), ["x"])


def test_a_draft_model_folder_is_not_a_medusa_checkpoint(engine: ReferenceEngine) -> None:
    with pytest.raises(EngineConfigError, match="not a Medusa checkpoint"):
        engine.run_speculative(make_cell("medusa", "bundled:tiny-stdlib/draft"), ["x"])


def test_a_truncated_medusa_vocabulary_without_a_token_map_is_a_config_error(
    engine: ReferenceEngine, medusa_heads: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "truncated"
    folder.mkdir()
    config = json.loads((medusa_heads / "config.json").read_text())
    config["truncated_vocab_size"] = 1024
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((medusa_heads / "model.safetensors").read_bytes())
    with pytest.raises(EngineConfigError, match="token_map"):
        engine.run_speculative(make_cell("medusa", str(folder)), ["x"])


# -- the head's KV cache: drafting incrementally equals drafting from scratch ----------------------------


def test_eagle1_drafts_from_its_cache_equal_drafts_from_all_target_states(eagle1_head: Path) -> None:
    # The proposer keeps a KV cache over verified positions and drops its speculative entries; whatever
    # was accepted, its drafts must equal those of a fresh proposer fed every target state at once.
    from fleet.suite.engines._lm import load_model, load_tokenizer
    from fleet.suite.engines._speculation import generate

    target = load_model(resolve_model(TARGET), field="cell.model")
    head = _eagle1.load_eagle1_head(str(eagle1_head))
    prompt = load_tokenizer(target.path)(load_prompts(make_cell("eagle", None).workload)[0]).input_ids
    with torch.inference_mode():
        greedy = generate(target, prompt, max_tokens=20).token_ids
        layer = int(target.model.config.num_hidden_layers)
        states = target.model(input_ids=torch.tensor([prompt + greedy]),
                              output_hidden_states=True).hidden_states[layer][0]
        proposer = _eagle1.Eagle1Proposer(head, target, K)
        proposer.begin()
        proposer.observe(states[: len(prompt)])
        emitted, steps = 1, 0
        for accepted in [0, 2, 4, 1, 3, 0, 4]:
            context = prompt + greedy[:emitted]
            fresh = _eagle1.Eagle1Proposer(head, target, K)
            fresh.observe(states[: len(context) - 1])
            assert proposer.propose(context) == fresh.propose(context), (emitted, accepted)
            proposer.keep(len(context) + accepted)
            # The target verified the last context token and the accepted drafts.
            proposer.observe(states[len(context) - 1 : len(context) + accepted])
            emitted, steps = emitted + accepted + 1, steps + 1
    assert steps == 7 and emitted == 1 + 14 + 7


# -- prefix caching: restored hidden states draft as computed ones ---------------------------------------


@pytest.mark.parametrize("method", ["eagle", "medusa"])
def test_prefix_cache_hits_leave_output_and_counters_unchanged(
    engine: ReferenceEngine, eagle1_head: Path, medusa_heads: Path, method: str
) -> None:
    folder = eagle1_head if method == "eagle" else medusa_heads
    plain = make_cell(method, str(folder), num_prompts=2, max_tokens=6).model_dump(exclude={"id"})
    plain["workload"]["prompts"] = "bundled:tiny-stdlib/shared-prefix"
    cached = {**plain, "execution": {"prefix_caching": "on"}}
    runs = [engine.run_speculative(Cell.model_validate(doc), load_prompts(Cell.model_validate(doc).workload))
            for doc in (plain, cached)]
    assert runs[1].prefix_cache is not None and runs[1].prefix_cache.hits > 0
    assert runs[1].measurement.token_ids == runs[0].measurement.token_ids
    assert runs[1].counters == runs[0].counters
