"""Greedy speculative decoding for one request, counting drafts exactly as vLLM's scheduler does.

Why these counting rules (vllm/v1/core/sched/scheduler.py, `update_from_output`, and
vllm/v1/spec_decode/metrics.py): a step counts as a draft only if it verified at least one proposed
token; its draft tokens and accepted tokens are counted from the verification itself, before the
output is truncated at max_tokens. So a final step that accepts more tokens than the request still
needs counts them all, while the output keeps only max_tokens tokens. Steps whose proposer found
nothing (an n-gram miss) are plain decode steps and count nowhere.

Verification: the target reads [last token, d1..dk] in one forward; d_i is accepted while it equals the
target's greedy token at its position; the target's token after the accepted prefix (the correction,
or the bonus token when all k were accepted) is emitted too. In float32 this reproduces plain greedy
decoding token for token, which the tests check on every shipped prompt.

Hidden states: a proposer that names `target_layers` (EAGLE-3) gets the target's hidden states there for
every position the target has verified (the prompt after the prefill; the last token and the accepted
drafts after each verification), as vLLM hands them to its EAGLE proposer; rejected positions' are dropped.

Prefix caching (_prefix_cache.py): with a cache, the prefill restores the prompt's cached leading blocks
(the target's KV; the draft's KV or the target's hidden states for the drafter) and computes the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from fleet.model import SpecCounters
from fleet.suite.engines._lm import KVBlock, LoadedModel, Session, zero_block
from fleet.suite.engines._ngram import propose_ngram
from fleet.suite.engines._prefix_cache import DRAFTER_LOSES_CONTEXT, PrefixCache, stale_like


class Proposer(Protocol):
    #: Target layers whose hidden states the proposer reads (transformers' indices); () for none.
    target_layers: tuple[int, ...]

    def begin(self, restored: Sequence[KVBlock] = (), blind: int = 0) -> None:
        """A new request starts: forget the previous one. `restored`: the drafter's own KV blocks of the
        context's first positions (a prefix-cache hit); `blind`: that many leading context tokens were
        restored, but the injected fault withholds them from the drafter (_prefix_cache.py)."""
        ...

    def cache_source(self) -> Session | None:
        """The drafter's own KV session, for the prefix cache to keep, when it holds the true context."""
        ...

    def propose(self, context: list[int]) -> list[int]:
        """Up to k draft tokens that would follow `context` (prompt + output so far)."""
        ...

    def keep(self, length: int) -> None:
        """Only the first `length` tokens of the last context plus drafts were right; drop the rest."""
        ...

    def observe(self, states: torch.Tensor) -> None:
        """The target's hidden states (at target_layers) of the next positions it has verified."""
        ...


@dataclass
class NgramProposer:
    """vLLM's `ngram` method: prompt lookup over the prompt and the output so far."""

    k: int
    min_n: int
    max_n: int
    target_layers: tuple[int, ...] = ()
    _offset: int = 0

    def begin(self, restored: Sequence[KVBlock] = (), blind: int = 0) -> None:
        self._offset = blind

    def cache_source(self) -> Session | None:
        return None

    def observe(self, states: torch.Tensor) -> None:
        return None

    def propose(self, context: list[int]) -> list[int]:
        return propose_ngram(context[self._offset:], min_n=self.min_n, max_n=self.max_n, k=self.k)

    def keep(self, length: int) -> None:
        return None


class DraftModelProposer:
    """vLLM's `draft_model` method: a small LM drafts k tokens greedily, with its own KV cache."""

    target_layers: tuple[int, ...] = ()

    def __init__(self, draft: LoadedModel, k: int) -> None:
        self.k = k
        self._draft = draft
        self._session = Session(draft)
        self._blind = False

    def begin(self, restored: Sequence[KVBlock] = (), blind: int = 0) -> None:
        # Blind (the injected fault): the restored positions come back as stale KV, which the draft
        # then attends to for the whole request.
        if blind:
            restored = [tuple((stale_like(k), stale_like(v)) for k, v in block) for block in restored] \
                or [zero_block(self._draft, blind)]
        self._session = Session(self._draft, restored)
        self._blind = blind > 0

    def cache_source(self) -> Session | None:
        return None if self._blind else self._session

    def propose(self, context: list[int]) -> list[int]:
        # The cache holds a prefix of the context (cropped to the accepted tokens); feed the rest.
        pending = context[self._session.length :]
        drafts = [int(self._session.feed(pending, last_only=True)[-1])]
        while len(drafts) < self.k:
            drafts.append(int(self._session.feed([drafts[-1]])[-1]))
        return drafts

    def keep(self, length: int) -> None:
        self._session.crop(length)

    def observe(self, states: torch.Tensor) -> None:
        return None


@dataclass
class DraftCounters:
    """vLLM's four counters, accumulated over requests, plus per-request detail for auditing."""

    k: int
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    verify_steps: int = 0
    plain_decode_steps: int = 0
    per_request: list[dict[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.accepted_per_position:
            self.accepted_per_position = [0] * self.k

    def begin_request(self) -> None:
        self.per_request.append({"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0})

    def record_verification(self, proposed: int, accepted: int) -> None:
        self.num_drafts += 1
        self.num_draft_tokens += proposed
        self.num_accepted_tokens += accepted
        for position in range(accepted):
            self.accepted_per_position[position] += 1
        self.verify_steps += 1
        request = self.per_request[-1]
        request["num_drafts"] += 1
        request["num_draft_tokens"] += proposed
        request["num_accepted_tokens"] += accepted

    def record_plain_step(self) -> None:
        self.plain_decode_steps += 1

    def to_spec_counters(self) -> SpecCounters:
        return SpecCounters(
            num_drafts=self.num_drafts,
            num_draft_tokens=self.num_draft_tokens,
            num_accepted_tokens=self.num_accepted_tokens,
            accepted_per_position=list(self.accepted_per_position),
        )


@dataclass(frozen=True)
class Generation:
    token_ids: list[int]
    ttft_s: float
    e2e_s: float


def generate(
    target: LoadedModel,
    prompt_ids: list[int],
    *,
    max_tokens: int,
    stop_ids: frozenset[int] = frozenset(),
    proposer: Proposer | None = None,
    counters: DraftCounters | None = None,
    clock: Callable[[], float] = time.perf_counter,
    prefix: PrefixCache | None = None,
    measured: bool = True,
    fault: str | None = None,
) -> Generation:
    """Greedy decoding of one request; speculative when a proposer is given, plain otherwise.

    `prefix`: the engine start's prefix cache (None: caching off), counted when `measured`; `fault`:
    the injected fault (_prefix_cache.py), which acts on a cache hit only."""
    started = clock()
    hit = prefix.lookup(prompt_ids, measured=measured) if prefix is not None else None
    cached = hit.length if hit is not None else 0
    session = Session(target, hit.target if hit is not None else ())
    layers = proposer.target_layers if proposer is not None else ()
    blind = cached if fault == DRAFTER_LOSES_CONTEXT else 0

    def verify(token_ids: list[int], *, last_only: bool = False) -> list[int]:
        """The target's greedy tokens after each fed token; hidden states go to the proposer."""
        if not layers:
            return [int(t) for t in session.feed(token_ids, last_only=last_only).tolist()]
        greedy, states = session.feed_with_states(token_ids, layers, last_only=last_only)
        pending_states.append(states)
        return [int(t) for t in greedy.tolist()]

    pending_states: list[torch.Tensor] = []
    # After the prefill the cache holds the prompt; from then on it holds every token but the last.
    output = [verify(prompt_ids[cached:], last_only=True)[-1]]
    ttft = clock() - started
    restored_states = hit.states if hit is not None and cached and layers else None
    if cached and layers and restored_states is None:
        raise RuntimeError("a prefix-cache hit without the target's hidden states for the EAGLE-3 head")
    prompt_states = torch.cat([s for s in (restored_states, *pending_states) if s is not None]) \
        if layers else None
    if proposer is not None:
        proposer.begin(restored=hit.draft or () if hit is not None else (), blind=blind)
        if restored_states is not None:
            # Blind (the injected fault): the head gets stale values, not the restored tokens' states.
            proposer.observe(stale_like(restored_states) if blind else restored_states)
        for states in pending_states:
            proposer.observe(states)
        pending_states.clear()
    if counters is not None:
        counters.begin_request()

    def finished() -> bool:
        return len(output) >= max_tokens or output[-1] in stop_ids

    while not finished():
        context = prompt_ids + output
        drafts = proposer.propose(context) if proposer is not None else []
        if proposer is None or not drafts:
            output.append(verify([output[-1]])[-1])
            if proposer is not None and pending_states:
                proposer.observe(pending_states.pop())
            if counters is not None:
                counters.record_plain_step()
            continue
        greedy = verify([output[-1], *drafts])
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == greedy[accepted]:
            accepted += 1
        if counters is not None:
            counters.record_verification(len(drafts), accepted)
        session.crop(len(context) + accepted)
        proposer.keep(len(context) + accepted)
        if pending_states:
            # Only the states of the last context token and the accepted drafts are the target's.
            proposer.observe(pending_states.pop()[: accepted + 1])
        for token in [*drafts[:accepted], greedy[accepted]]:
            output.append(int(token))
            if finished():
                break
    if prefix is not None:
        prefix.store(prompt_ids, target=session, states=prompt_states,
                     draft=proposer.cache_source() if proposer is not None else None)
    return Generation(token_ids=output, ttft_s=ttft, e2e_s=clock() - started)
