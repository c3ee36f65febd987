"""Automatic prefix caching in the reference engine, as vLLM does it, and a fault that breaks it on purpose.

Why: issue 30's prefix_caching axis must run on CPU too, so that the differential judge is tested end to
end without a GPU; and a fault that reproduces vLLM #47930's mechanism must make that test fail.

What is cached (vllm/v1/core/kv_cache_manager.py, single_type_kv_cache_manager.py):
- full 16-token blocks of every prompt the engine prefilled (warm-up prompts included: they fill the
  cache, unmeasured, so a measured prompt that shares their prefix hits from its first request), keyed
  by the chain of block contents (vLLM hashes that chain); per block the target's KV, the draft model's
  KV (draft_model) and the target's hidden states at the EAGLE-3 head's layers (eagle3);
- a new prompt restores its longest run of cached leading blocks, at most (prompt tokens - 1) // 16 of
  them (vLLM never serves a whole prompt from the cache: the last token is always computed); for
  eagle3 the last matched block is dropped, as vLLM does for EAGLE methods;
- counters with vLLM's definitions (vllm:prefix_cache_queries / _hits): per measured request, queries
  += its prompt tokens, hits += the tokens restored. Decode blocks, which vLLM caches too, are not kept:
  the shipped workloads never repeat an output, and they would double the memory.

Restoring is lossless: the target's and the draft's KV of a position depend only on the tokens up to it,
and the EAGLE-3 head rebuilds its own cache from the restored hidden states (its entry at a position also
reads the next token, so it is not a function of one block). Greedy output and acceptance equal the
uncached run's, which the tests check.

Fault injection (off unless a cell asks): engine_options `fault_injection: drafter_loses_context_on_cache_hit`
(reference engine only). On a prefix-cache hit the drafter proposes without the restored context, as in
vLLM #47930, where tokens restored from the cache gave the EAGLE drafter no hidden states: what the
drafter reads for the restored positions is stale (seeded noise at the real values' scale, as a reused
buffer would hold): the EAGLE-3 head's hidden states, the draft model's KV (all-zero KV where no draft
block was cached); the n-gram lookup skips the restored tokens. The target still restores its own KV
and verifies every draft, so greedy output stays lossless while acceptance length falls; the
differential judge must catch it (docs/troubleshooting.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fleet.model import PrefixCacheCounters
from fleet.suite.engines._lm import KVBlock
from fleet.suite.engines.base import EngineConfigError

#: vLLM's default KV block size on CUDA.
BLOCK_SIZE = 16
#: The one fault the reference engine can inject (engine_options `fault_injection`).
DRAFTER_LOSES_CONTEXT = "drafter_loses_context_on_cache_hit"
FAULTS = (DRAFTER_LOSES_CONTEXT,)
#: Methods for which vLLM drops the last matched block (their drafter recomputes it from hidden states).
DROP_LAST_BLOCK_METHODS = frozenset({"eagle", "eagle3", "mtp"})

_Key = tuple[Any, tuple[int, ...]]


def fault_injection(engine_options: dict[str, Any]) -> str | None:
    """The fault a cell's engine options switch on, or None; an unknown name is an EngineConfigError."""
    fault = engine_options.get("fault_injection")
    if fault is None:
        return None
    if fault not in FAULTS:
        raise EngineConfigError(f"unknown fault_injection {fault!r} (known: {', '.join(FAULTS)})",
                                where="cell.engine_options.fault_injection",
                                fix="remove it, or use one of the known faults")
    return str(fault)


def stale_like(real: torch.Tensor) -> torch.Tensor:
    """What the fault hands the drafter instead of `real`: seeded noise of the same shape and scale."""
    generator = torch.Generator().manual_seed(int(real.numel()))
    return torch.randn(real.shape, generator=generator) * real.std()


@dataclass
class CachedBlock:
    target: KVBlock
    draft: KVBlock | None = None
    states: torch.Tensor | None = None


@dataclass(frozen=True)
class Hit:
    """What a prompt restores: `length` tokens (whole blocks) and their cached parts, in order."""

    length: int
    target: list[KVBlock]
    draft: list[KVBlock] | None
    states: torch.Tensor | None


@dataclass
class PrefixCache:
    """One engine start's prefix cache over full blocks, with vLLM's counters."""

    drop_last_block: bool = False
    block_size: int = BLOCK_SIZE
    queries: int = 0
    hits: int = 0
    _blocks: dict[_Key, CachedBlock] = field(default_factory=dict)

    def _keys(self, token_ids: Sequence[int], blocks: int) -> list[_Key]:
        keys: list[_Key] = []
        parent: Any = None
        for index in range(blocks):
            parent = (parent, tuple(token_ids[index * self.block_size:(index + 1) * self.block_size]))
            keys.append(parent)
        return keys

    def lookup(self, prompt_ids: Sequence[int], *, measured: bool) -> Hit:
        """The longest cached run of leading blocks of the prompt; counted when `measured`."""
        found: list[CachedBlock] = []
        for key in self._keys(prompt_ids, (len(prompt_ids) - 1) // self.block_size):
            block = self._blocks.get(key)
            if block is None:
                break
            found.append(block)
        if self.drop_last_block and found:
            found.pop()
        length = len(found) * self.block_size
        if measured:
            self.queries += len(prompt_ids)
            self.hits += length
        drafts = [block.draft for block in found]
        states = [block.states for block in found]
        return Hit(
            length=length, target=[block.target for block in found],
            draft=None if any(d is None for d in drafts) else [d for d in drafts if d is not None],
            states=torch.cat([s for s in states if s is not None]) if found and all(
                s is not None for s in states) else None,
        )

    def store(self, prompt_ids: Sequence[int], *, target: Any, draft: Any | None = None,
              states: torch.Tensor | None = None) -> None:
        """Keep the prompt's full blocks not cached yet. `target` / `draft` are Sessions holding the
        prompt's KV (a block whose draft KV is missing is kept without: a hit on it makes the draft
        recompute); `states`: the target's hidden states at the head's layers, a row per position."""
        size = self.block_size
        for index, key in enumerate(self._keys(prompt_ids, len(prompt_ids) // size)):
            start, end = index * size, (index + 1) * size
            if key in self._blocks or target.length < end:
                continue
            has_draft = draft is not None and draft.length >= end
            self._blocks[key] = CachedBlock(
                target=target.kv_block(start, end),
                draft=draft.kv_block(start, end) if draft is not None and has_draft else None,
                states=states[start:end].clone() if states is not None and states.shape[0] >= end else None,
            )

    def counters(self) -> PrefixCacheCounters:
        return PrefixCacheCounters(queries=self.queries, hits=self.hits)

    @property
    def blocks(self) -> int:
        return len(self._blocks)
