"""The reference engine: greedy speculative decoding over transformers on CPU, the local default and CI.

It makes fleet's whole pipeline real without a GPU: the same cells, counters with vLLM's definitions
and latencies measured the same way, on the bundled tiny models. Requests run one at a time (batch
size 1) in float32, where speculative greedy output equals plain greedy output token for token.

Choices (and why):
- Output length: EOS is ignored by default (vLLM's `ignore_eos=True`), so every request produces
  exactly max_tokens tokens like the shipped vLLM measurements; `engine_options: {ignore_eos: false}`
  stops at the model's EOS instead.
- Counting: as vLLM's scheduler (see _speculation.py); acceptances past max_tokens in the last step
  are counted, the output is truncated.
- Timing: time.perf_counter around each request; TTFT is the prefill and its greedy token
  (tokenization excluded), TPOT = (e2e - TTFT) / (output tokens - 1).
- Warm-up: the workload's warm-up prompts (the end of the prompt list) run first, unmeasured.
- Execution axes: `prefix_caching` only (no CUDA graphs, no scheduler: other axes are refused). With
  it on, the speculative run keeps a prefix cache over the engine start, warm-up included, counted as
  vLLM counts it (_prefix_cache.py); the non-speculative reference run, shared by every cell of an
  entry, runs without. The speculative run always reports the counters (0 of 0 with caching off, as
  vLLM's counters read then).
- Fault injection: engine_options `fault_injection: drafter_loses_context_on_cache_hit` (_prefix_cache.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch
import transformers

from fleet.model import Cell, Measurement, PrefixCacheCounters, RequestTiming
from fleet.suite.engines._eagle1 import Eagle1Head, Eagle1Proposer, load_eagle1_head
from fleet.suite.engines._eagle3 import Eagle3Head, Eagle3Proposer, load_eagle3_head
from fleet.suite.engines._lm import LoadedModel, check_model_dir, load_model, load_tokenizer
from fleet.suite.engines._medusa import MedusaHeads, MedusaProposer, load_medusa_heads
from fleet.suite.engines._prefix_cache import DROP_LAST_BLOCK_METHODS, PrefixCache, fault_injection
from fleet.suite.engines._speculation import (
    DraftCounters,
    DraftModelProposer,
    NgramProposer,
    Proposer,
    generate,
)
from fleet.suite.engines.base import EngineConfigError, EngineRun
from fleet.suite.model_refs import resolve_model
from fleet.suite.prompts import load_warmup_prompts
from fleet.suite.provenance import fleet_version, host_facts

SUPPORTED_METHODS = ("ngram", "draft_model", "eagle3", "eagle", "medusa")

#: Tokens generated per warm-up prompt: enough to exercise prefill, drafting and verification.
WARMUP_TOKENS = 16


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def lookup_bounds(options: dict[str, Any]) -> tuple[int, int]:
    """prompt_lookup_min/max with vLLM's defaults: both missing -> 5; one missing -> the other."""
    low, high = options.get("prompt_lookup_min"), options.get("prompt_lookup_max")
    if low is None and high is None:
        low = high = 5
    low = high if low is None else low
    high = low if high is None else high
    if not isinstance(low, int) or not isinstance(high, int) or not 1 <= low <= high:
        raise EngineConfigError(
            f"prompt_lookup_min={low!r}, prompt_lookup_max={high!r} are not 1 <= min <= max integers",
            where="variant.options", fix="set integers with 1 <= prompt_lookup_min <= prompt_lookup_max",
        )
    return low, high


def prefix_cache_for(cell: Cell, *, speculative: bool) -> PrefixCache | None:
    """The speculative run's prefix cache when the cell's prefix_caching axis is on; other axes are an
    EngineConfigError (fleet plan refuses them first; a hand-written cell gets here)."""
    others = sorted(set(cell.execution) - {"prefix_caching"})
    if others:
        raise EngineConfigError(
            f"execution axis {', '.join(others)} cannot run on the reference engine: it has no CUDA graphs "
            "and no scheduler", where="cell.execution",
            fix="remove the axis, or run the cell with engine 'vllm'")
    if not speculative or cell.execution.get("prefix_caching") != "on":
        return None
    return PrefixCache(drop_last_block=cell.variant.method in DROP_LAST_BLOCK_METHODS)


def check_length(target: LoadedModel, needed: int, prompt_index: int) -> None:
    """vLLM refuses requests longer than max_model_len; say so instead of failing inside attention."""
    limit = getattr(target.model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and needed > limit:
        raise EngineConfigError(
            f"prompt {prompt_index} plus max_tokens and drafts needs {needed} positions; "
            f"the model has {limit}", where="workload.max_tokens",
            fix="lower workload.max_tokens or use shorter prompts",
        )


class ReferenceEngine:
    name = "reference"

    def __init__(self) -> None:
        self.version = fleet_version()
        self._models: dict[str, LoadedModel] = {}
        self._tokenizers: dict[str, Any] = {}
        self._heads: dict[str, Eagle3Head] = {}
        self._eagle1_heads: dict[str, Eagle1Head] = {}
        self._medusa_heads: dict[str, MedusaHeads] = {}
        self._threads = available_cpus()
        torch.set_num_threads(self._threads)

    # -- the Engine protocol ---------------------------------------------------------------------

    def unsupported_reason(self, cell: Cell) -> str | None:
        method = cell.variant.method
        if method not in SUPPORTED_METHODS:
            return (f"the reference engine implements {', '.join(SUPPORTED_METHODS)} only, "
                    f"not {method!r}; run this variant with engine 'vllm'")
        return None

    def run_reference(self, cell: Cell, prompts: Sequence[str]) -> EngineRun:
        return self._run(cell, prompts, speculative=False)

    def run_speculative(self, cell: Cell, prompts: Sequence[str], *, latency_only: bool = False) -> EngineRun:
        # Its timings are those of the prompts it decodes, so a latency-only start decodes them all too.
        return self._run(cell, prompts, speculative=True)

    # -- internals -------------------------------------------------------------------------------

    def _model(self, ref: str, field: str) -> LoadedModel:
        path = resolve_model(ref)
        check_model_dir(path, field=field)
        if path not in self._models:
            self._models[path] = load_model(path, field=field)
        return self._models[path]

    def _tokenizer(self, path: str) -> Any:
        if path not in self._tokenizers:
            self._tokenizers[path] = load_tokenizer(path)
        return self._tokenizers[path]

    def _proposer(self, cell: Cell, target: LoadedModel) -> tuple[Proposer, str | None]:
        variant = cell.variant
        k = variant.num_speculative_tokens
        if variant.method == "ngram":
            low, high = lookup_bounds(variant.options)
            return NgramProposer(k=k, min_n=low, max_n=high), None
        draft_ref = cell.draft_model or variant.draft_model
        if not draft_ref:
            raise EngineConfigError(
                f"variant {variant.name!r} ({variant.method}) has no draft model", where="cell.draft_model",
                fix="set draft_model in the tier entry or the variant",
            )
        if variant.method == "eagle3":
            return self._eagle3(draft_ref, target, k)
        if variant.method == "eagle":
            return self._eagle1(draft_ref, target, k)
        if variant.method == "medusa":
            return self._medusa(draft_ref, target, k)
        draft = self._model(draft_ref, "cell.draft_model")
        if draft.vocab_size != target.vocab_size:
            raise EngineConfigError(
                f"draft vocabulary ({draft.vocab_size}, {draft.path}) differs from the target's "
                f"({target.vocab_size}, {target.path})", where="cell.draft_model",
                cause="draft_model speculation needs one shared vocabulary (vLLM refuses it too)",
                fix="pair the target with a draft trained on the same tokenizer",
            )
        return DraftModelProposer(draft, k), draft.path

    def _eagle3(self, ref: str, target: LoadedModel, k: int) -> tuple[Proposer, str]:
        path = resolve_model(ref)
        check_model_dir(path, field="cell.draft_model")
        if path not in self._heads:
            self._heads[path] = load_eagle3_head(path)
        head = self._heads[path]
        config = target.model.config
        layers = int(config.num_hidden_layers)
        if head.config.vocab_size != target.vocab_size or head.config.hidden_size != config.hidden_size:
            raise EngineConfigError(
                f"EAGLE-3 head {path} (vocab {head.config.vocab_size}, hidden {head.config.hidden_size}) "
                f"was not made for target {target.path} (vocab {target.vocab_size}, hidden "
                f"{config.hidden_size})", where="cell.draft_model",
                fix="pair the target with a head trained on it (scripts/train_eagle3.py)",
            )
        if not all(0 < layer < layers for layer in head.aux_layers):
            raise EngineConfigError(
                f"EAGLE-3 head {path} reads target layers {list(head.aux_layers)}; the target has "
                f"{layers}", where="cell.draft_model", fix="retrain the head for this target",
            )
        return Eagle3Proposer(head, target, k), path

    def _eagle1(self, ref: str, target: LoadedModel, k: int) -> tuple[Proposer, str]:
        path = resolve_model(ref)
        check_model_dir(path, field="cell.draft_model")
        if path not in self._eagle1_heads:
            self._eagle1_heads[path] = load_eagle1_head(path)
        head = self._eagle1_heads[path]
        config = target.model.config
        if head.config.vocab_size != target.vocab_size or head.config.hidden_size != config.hidden_size:
            raise EngineConfigError(
                f"EAGLE-1 head {path} (vocab {head.config.vocab_size}, hidden {head.config.hidden_size}) "
                f"was not made for target {target.path} (vocab {target.vocab_size}, hidden "
                f"{config.hidden_size})", where="cell.draft_model",
                fix="pair the target with a head trained on it (scripts/train_eagle1.py)",
            )
        return Eagle1Proposer(head, target, k), path

    def _medusa(self, ref: str, target: LoadedModel, k: int) -> tuple[Proposer, str]:
        path = resolve_model(ref)
        check_model_dir(path, field="cell.draft_model")
        if path not in self._medusa_heads:
            self._medusa_heads[path] = load_medusa_heads(path)
        heads = self._medusa_heads[path]
        hidden = int(target.model.config.hidden_size)
        if heads.vocab_size != target.vocab_size or heads.hidden_size != hidden:
            raise EngineConfigError(
                f"Medusa checkpoint {path} (vocab {heads.vocab_size}, hidden {heads.hidden_size}) was not "
                f"made for target {target.path} (vocab {target.vocab_size}, hidden {hidden})",
                where="cell.draft_model",
                fix="pair the target with heads trained on it (scripts/train_medusa.py)",
            )
        if heads.num_heads != k:
            raise EngineConfigError(
                f"Medusa checkpoint {path} has {heads.num_heads} heads; the variant drafts k={k}",
                where="variant.num_speculative_tokens",
                cause="vLLM sets the heads' count to num_speculative_tokens, so k must equal num_heads",
                fix=f"set num_speculative_tokens: {heads.num_heads}",
            )
        return MedusaProposer(heads, target, k), path

    def _run(self, cell: Cell, prompts: Sequence[str], *, speculative: bool) -> EngineRun:
        load_started = time.perf_counter()
        target = self._model(cell.model, "cell.model")
        tokenizer = self._tokenizer(target.path)
        proposer, draft_path = self._proposer(cell, target) if speculative else (None, None)
        engine_start_s = time.perf_counter() - load_started
        workload = cell.workload
        ignore_eos = bool(cell.engine_options.get("ignore_eos", True))
        fault = fault_injection(cell.engine_options)
        prefix = prefix_cache_for(cell, speculative=speculative)
        eos = target.eos_token_id
        stop_ids: frozenset[int] = frozenset() if ignore_eos or eos is None else frozenset({eos})

        def encode(text: str) -> list[int]:
            # Special tokens are added as vLLM adds them to a text prompt (none for tiny-stdlib).
            return [int(token) for token in tokenizer(text).input_ids]

        k = cell.variant.num_speculative_tokens
        encoded = [encode(text) for text in prompts]
        for index, prompt_ids in enumerate(encoded):
            check_length(target, len(prompt_ids) + workload.max_tokens + k, index)

        with torch.inference_mode():
            for text in load_warmup_prompts(workload):
                generate(target, encode(text), max_tokens=min(WARMUP_TOKENS, workload.max_tokens),
                         stop_ids=stop_ids, proposer=proposer,
                         counters=DraftCounters(k=k) if speculative else None,
                         prefix=prefix, measured=False, fault=fault)
            counters = DraftCounters(k=k) if speculative else None
            results = [generate(target, prompt_ids, max_tokens=workload.max_tokens, stop_ids=stop_ids,
                                proposer=proposer, counters=counters, prefix=prefix, fault=fault)
                       for prompt_ids in encoded]

        outputs = [result.token_ids for result in results]
        timings = [
            RequestTiming(
                prompt_index=index, prompt_tokens=len(prompt_ids), output_tokens=len(result.token_ids),
                ttft_s=result.ttft_s, e2e_s=result.e2e_s,
                tpot_s=(result.e2e_s - result.ttft_s) / (len(result.token_ids) - 1)
                if len(result.token_ids) > 1 else None,
            )
            for index, (prompt_ids, result) in enumerate(zip(encoded, results, strict=True))
        ]
        measurement = Measurement(
            token_ids=outputs,
            texts=[tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs],
            timings=timings,
            engine_start_s=engine_start_s,
        )
        provenance: dict[str, Any] = {
            **host_facts(),
            "engine_version": self.version,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "dtype": "float32",
            "cpu_threads": self._threads,
            "model_runner": "transformers-greedy",
            "ignore_eos": ignore_eos,
            "batch_size_effective": 1,
            "target_path": target.path,
            "prefix_caching": prefix is not None,
        }
        if fault is not None:
            provenance["fault_injection"] = fault
        if draft_path is not None:
            provenance["draft_path"] = draft_path
        if counters is None:
            return EngineRun(measurement=measurement, provenance=provenance)
        engine_counters: dict[str, Any] = {
            "verify_steps": counters.verify_steps,
            "plain_decode_steps": counters.plain_decode_steps,
            "per_request": counters.per_request,
        }
        if prefix is not None:
            engine_counters["prefix_cache_blocks"] = prefix.blocks
        return EngineRun(measurement=measurement, counters=counters.to_spec_counters(),
                         engine_counters=engine_counters, provenance=provenance,
                         prefix_cache=prefix.counters() if prefix is not None
                         else PrefixCacheCounters(queries=0, hits=0))
