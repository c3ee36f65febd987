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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from fleet.model import SpecCounters
from fleet.suite.engines._lm import LoadedModel, Session
from fleet.suite.engines._ngram import propose_ngram


class Proposer(Protocol):
    #: Target layers whose hidden states the proposer reads (transformers' indices); () for none.
    target_layers: tuple[int, ...]

    def begin(self) -> None:
        """A new request starts: forget the previous one."""
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

    def begin(self) -> None:
        return None

    def observe(self, states: torch.Tensor) -> None:
        return None

    def propose(self, context: list[int]) -> list[int]:
        return propose_ngram(context, min_n=self.min_n, max_n=self.max_n, k=self.k)

    def keep(self, length: int) -> None:
        return None


class DraftModelProposer:
    """vLLM's `draft_model` method: a small LM drafts k tokens greedily, with its own KV cache."""

    target_layers: tuple[int, ...] = ()

    def __init__(self, draft: LoadedModel, k: int) -> None:
        self.k = k
        self._draft = draft
        self._session = Session(draft)

    def begin(self) -> None:
        self._session = Session(self._draft)

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
) -> Generation:
    """Greedy decoding of one request; speculative when a proposer is given, plain otherwise."""
    started = clock()
    session = Session(target)
    layers = proposer.target_layers if proposer is not None else ()

    def verify(token_ids: list[int], *, last_only: bool = False) -> list[int]:
        """The target's greedy tokens after each fed token; hidden states go to the proposer."""
        if not layers:
            return [int(t) for t in session.feed(token_ids, last_only=last_only).tolist()]
        greedy, states = session.feed_with_states(token_ids, layers, last_only=last_only)
        pending_states.append(states)
        return [int(t) for t in greedy.tolist()]

    pending_states: list[torch.Tensor] = []
    # After the prefill the cache holds the prompt; from then on it holds every token but the last.
    output = [verify(prompt_ids, last_only=True)[-1]]
    ttft = clock() - started
    if proposer is not None:
        proposer.begin()
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
    return Generation(token_ids=output, ttft_s=ttft, e2e_s=clock() - started)
