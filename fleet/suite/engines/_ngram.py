"""Prompt-lookup (n-gram) proposals with vLLM's exact choice of match, so acceptance counts agree.

vLLM (vllm/v1/spec_decode/ngram_proposer.py, `_find_longest_matched_ngram_and_propose_tokens`) runs a
KMP over the reversed context. What it computes: the longest n in [min_n, max_n] such that the last n
tokens occurred earlier (an earlier occurrence may overlap the suffix); among the occurrences of that
n-gram, the EARLIEST one; then the up to k tokens that followed it (which may run into the suffix).
This module states that directly; it is pure Python because contexts are a few hundred tokens.
"""

from __future__ import annotations

from collections.abc import Sequence


def propose_ngram(
    context: Sequence[int], *, min_n: int, max_n: int, k: int, max_model_len: int | None = None
) -> list[int]:
    """The tokens that followed the earliest earlier occurrence of the longest matching suffix n-gram."""
    total = len(context)
    if total < min_n:
        return []
    if max_model_len is not None:
        k = min(k, max_model_len - total)
    if k <= 0:
        return []
    tokens = list(context)
    for n in range(min(max_n, total - 1), min_n - 1, -1):
        suffix = tokens[total - n :]
        first = suffix[0]
        # Earlier occurrences start at 0 .. total-n-1; the suffix itself does not count.
        for start in range(total - n):
            if tokens[start] == first and tokens[start : start + n] == suffix:
                follow = start + n
                return tokens[follow : follow + k]
    return []
