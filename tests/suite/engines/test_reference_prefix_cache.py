"""Prefix caching in the reference engine: vLLM's block rules and counters, lossless, and the fault."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fleet.model import Cell
from fleet.suite.engines._prefix_cache import PrefixCache
from fleet.suite.engines.base import EngineConfigError, EngineRun
from fleet.suite.engines.reference import ReferenceEngine
from fleet.suite.prompts import load_prompts

FAULT = {"fault_injection": "drafter_loses_context_on_cache_hit"}


class FakeSession:
    """What PrefixCache.store reads of a Session: its length and KV blocks (position numbers here)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def kv_block(self, start: int, end: int) -> Any:
        return ((torch.arange(start, end, dtype=torch.float32), torch.zeros(end - start)),)


def cached(*prompts: list[int], drop_last_block: bool = False) -> PrefixCache:
    cache = PrefixCache(drop_last_block=drop_last_block)
    for prompt in prompts:
        cache.store(prompt, target=FakeSession(len(prompt)))
    return cache


# -- vLLM's block rules, on a fake session -------------------------------------------------------------


def test_a_prompt_hits_the_full_blocks_it_shares_with_an_earlier_one_and_counts_its_tokens() -> None:
    cache = cached(list(range(40)))

    hit = cache.lookup([*range(35), 99, 98], measured=True)

    assert hit.length == 32 and len(hit.target) == 2
    assert (cache.queries, cache.hits) == (37, 32)


def test_the_last_prompt_token_is_never_served_from_the_cache() -> None:
    cache = cached(list(range(32)))

    assert cache.lookup(list(range(32)), measured=True).length == 16  # (32 - 1) // 16 blocks
    assert cache.lookup(list(range(33)), measured=True).length == 32


def test_a_block_hits_only_behind_the_same_blocks() -> None:
    cache = cached(list(range(32)))

    assert cache.lookup([*range(100, 116), *range(16, 40)], measured=True).length == 0


def test_eagle_methods_drop_the_last_matched_block_as_vllm_does() -> None:
    assert cached(list(range(48)), drop_last_block=True).lookup(list(range(50)), measured=True).length == 32


def test_warm_up_lookups_fill_nothing_in_the_counters() -> None:
    cache = cached(list(range(40)))

    cache.lookup(list(range(40)), measured=False)

    assert (cache.queries, cache.hits) == (0, 0)


def test_only_full_blocks_are_stored_and_an_existing_block_is_kept() -> None:
    cache = cached(list(range(40)), list(range(40)))

    assert cache.blocks == 2


# -- the real engine on the shared-prefix prompts ------------------------------------------------------


def shared_prefix_cell(method: str, prefix_caching: str, *, fault: bool = False,
                       num_prompts: int = 3, max_tokens: int = 24) -> Cell:
    variant: dict[str, Any] = {"name": f"{method}-k4", "method": method, "num_speculative_tokens": 4}
    if method == "ngram":
        variant["options"] = {"prompt_lookup_min": 2, "prompt_lookup_max": 4}
    draft = {"draft_model": "bundled:tiny-stdlib/draft", "eagle3": "bundled:tiny-stdlib/eagle3"}.get(method)
    return Cell.model_validate({
        "tier": "test", "variant": variant, "model": "bundled:tiny-stdlib/target", "draft_model": draft,
        "hardware": {"name": "cpu-local", "vendor": "cpu", "gpu_count": 0},
        "workload": {"prompts": "bundled:tiny-stdlib/shared-prefix", "num_prompts": num_prompts,
                     "max_tokens": max_tokens, "warmup_prompts": 1},
        "engine": "reference", "execution": {"prefix_caching": prefix_caching},
        "engine_options": FAULT if fault else {},
    })


@pytest.fixture(scope="module")
def engine() -> ReferenceEngine:
    return ReferenceEngine()


def speculative(engine: ReferenceEngine, cell: Cell) -> EngineRun:
    return engine.run_speculative(cell, load_prompts(cell.workload))


def acceptance_length(run: EngineRun) -> float:
    assert run.counters is not None
    return 1 + run.counters.num_accepted_tokens / run.counters.num_drafts


@pytest.mark.slow
@pytest.mark.parametrize("method", ["draft_model", "eagle3", "ngram"])
def test_prefix_caching_changes_neither_outputs_nor_counts_but_hits_the_cache(
        engine: ReferenceEngine, method: str) -> None:
    off = speculative(engine, shared_prefix_cell(method, "off"))
    on = speculative(engine, shared_prefix_cell(method, "on"))
    plain = engine.run_reference(shared_prefix_cell(method, "on"), load_prompts(shared_prefix_cell(
        method, "on").workload))

    assert on.measurement.token_ids == off.measurement.token_ids == plain.measurement.token_ids
    assert on.counters == off.counters
    assert off.prefix_cache is not None and (off.prefix_cache.queries, off.prefix_cache.hits) == (0, 0)
    assert on.prefix_cache is not None and on.prefix_cache.hits > 0
    assert on.prefix_cache.queries == sum(t.prompt_tokens for t in on.measurement.timings)


@pytest.mark.slow
def test_the_shared_prefix_prompts_hit_the_cache_for_more_than_half_their_tokens(
        engine: ReferenceEngine) -> None:
    # The first measured prompt's group is not the warm-up prompt's, so it alone misses.
    run = speculative(engine, shared_prefix_cell("ngram", "on", num_prompts=6, max_tokens=4))

    assert run.prefix_cache is not None and run.prefix_cache.hit_rate is not None
    assert run.prefix_cache.hit_rate >= 0.5


@pytest.mark.slow
@pytest.mark.parametrize("method", ["draft_model", "eagle3"])
def test_the_injected_fault_lowers_acceptance_on_cache_hits_and_stays_lossless(
        engine: ReferenceEngine, method: str) -> None:
    clean = speculative(engine, shared_prefix_cell(method, "on"))
    faulty = speculative(engine, shared_prefix_cell(method, "on", fault=True))
    faulty_off = speculative(engine, shared_prefix_cell(method, "off", fault=True))

    assert faulty.measurement.token_ids == clean.measurement.token_ids
    assert acceptance_length(faulty) < 0.95 * acceptance_length(clean)
    assert faulty_off.counters == speculative(engine, shared_prefix_cell(method, "off")).counters
    assert faulty.provenance["fault_injection"] == FAULT["fault_injection"]


def test_an_unknown_fault_is_a_config_error(engine: ReferenceEngine) -> None:
    cell = shared_prefix_cell("ngram", "on").model_copy(update={"engine_options": {"fault_injection": "x"}})

    with pytest.raises(EngineConfigError, match="unknown fault_injection 'x'"):
        speculative(engine, cell)


def test_a_cuda_graph_axis_is_refused_by_the_reference_engine(engine: ReferenceEngine) -> None:
    cell = shared_prefix_cell("ngram", "on").model_copy(update={"execution": {"cudagraph": "none"}})

    with pytest.raises(EngineConfigError, match="no CUDA graphs"):
        speculative(engine, cell)
