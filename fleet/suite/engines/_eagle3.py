"""The EAGLE-3 draft head in vLLM's checkpoint layout, and the proposer that drafts with it as vLLM does.

Why it is built here: transformers has no EAGLE-3 model, but it has every part of one. The head is
vLLM's `Eagle3LlamaForCausalLM` (vllm/model_executor/models/llama_eagle3.py) assembled from
transformers' Llama modules, with the checkpoint's parameter names (fc, midlayer.*, norm, lm_head, d2t,
t2d), so the same safetensors file loads here and in vLLM:
- fc fuses the target's hidden states at three layers (config `eagle_aux_hidden_state_layer_ids`;
  vLLM's id j is the input of target layer j, transformers' `hidden_states[j]`) into one hidden state.
- One decoder layer whose attention reads [input_layernorm(embed(token)), hidden_norm(hidden)]
  (2 x hidden wide); the residual is the un-normed hidden.
- The final norm's input (the "prenorm" hidden) is the hidden state of the next draft step.
- lm_head scores a draft vocabulary; d2t maps draft id i to target id i + d2t[i].

Drafting (vllm/v1/spec_decode/eagle.py, `propose`): every position p whose target hidden state is
known is fed once with the token at p + 1 (so the head's KV cache is built from target states only);
the last one yields draft 1; drafts 2..k feed the previous draft token with the head's own prenorm
hidden state at the next position. Those speculative entries are dropped before the next step.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import DynamicCache, LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaAttention,
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
)

from fleet.suite.engines._lm import KVBlock, LoadedModel, Session
from fleet.suite.engines.base import EngineConfigError


class Eagle3Layer(nn.Module):
    """vLLM's first (and here only) EAGLE-3 decoder layer, norm after residual."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.input_layernorm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        self.hidden_norm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx=0)
        # The attention reads the concatenated [embeds, hidden]: q/k/v are twice as wide as in Llama.
        attn: Any = self.self_attn
        for name in ("q_proj", "k_proj", "v_proj"):
            old = getattr(attn, name)
            setattr(attn, name, nn.Linear(2 * hidden, old.out_features, bias=old.bias is not None))
        # transformers renamed past_key_values to cache (5.2x); the layer takes whichever this one has.
        parameters = inspect.signature(LlamaAttention.forward).parameters
        self._cache_keyword = "cache" if "cache" in parameters else "past_key_values"
        self.post_attention_layernorm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        make_mlp: Any = LlamaMLP  # transformers' modules are untyped
        self.mlp = make_mlp(config)

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor, position_embeddings: Any,
                mask: torch.Tensor, cache: DynamicCache | None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden
        joined = torch.cat([self.input_layernorm(embeds), self.hidden_norm(hidden)], dim=-1)
        attended, _ = self.self_attn(joined, position_embeddings=position_embeddings,
                                     attention_mask=mask, **{self._cache_keyword: cache})
        residual = attended + residual
        return self.mlp(self.post_attention_layernorm(residual)), residual


class Eagle3Head(nn.Module):
    """fc + one decoder layer + norm + lm_head over a draft vocabulary; parameter names as in the file."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        target_hidden = int(getattr(config, "target_hidden_size", None) or hidden)
        self.config = config
        self.aux_layers = tuple(int(i) for i in config.eagle_aux_hidden_state_layer_ids)
        self.draft_vocab_size = int(getattr(config, "draft_vocab_size", None) or config.vocab_size)
        self.fc = nn.Linear(len(self.aux_layers) * target_hidden, hidden, bias=False)
        self.midlayer = Eagle3Layer(config)
        self.norm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(hidden, self.draft_vocab_size, bias=False)
        self.register_buffer("d2t", torch.zeros(self.draft_vocab_size, dtype=torch.long))
        self.register_buffer("t2d", torch.zeros(config.vocab_size, dtype=torch.bool))
        self.rotary = LlamaRotaryEmbedding(config)

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, cache: DynamicCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(normed, prenorm) hidden states for [batch, seq] inputs; `mask` is additive, [b, 1, q, kv]."""
        position_embeddings = self.rotary(embeds, positions)
        out, residual = self.midlayer(embeds, hidden, position_embeddings, mask, cache)
        prenorm = out + residual
        return self.norm(prenorm), prenorm

    def target_ids(self) -> torch.Tensor:
        d2t = cast(torch.Tensor, self.d2t)
        return torch.arange(self.draft_vocab_size) + d2t

    def greedy_target_token(self, normed: torch.Tensor) -> int:
        """The draft token in target ids: argmax over the draft vocabulary, mapped through d2t."""
        draft_id = int(self.lm_head(normed).argmax(dim=-1))
        return int(self.target_ids()[draft_id])


def causal_mask(query: int, past: int) -> torch.Tensor:
    """Additive mask for `query` new positions after `past` cached ones (no padding, one request)."""
    rows = torch.arange(query)[:, None] + past
    allowed = torch.arange(past + query)[None, :] <= rows
    mask = torch.zeros(query, past + query)
    return mask.masked_fill(~allowed, float("-inf"))[None, None]


def head_config(folder: Path) -> LlamaConfig:
    raw = json.loads((folder / "config.json").read_text())
    if "eagle_aux_hidden_state_layer_ids" not in raw:
        raise EngineConfigError(
            f"{folder} has no eagle_aux_hidden_state_layer_ids in config.json", where="cell.draft_model",
            cause="the reference engine needs to know which three target layers the head fuses",
            fix="add the layer ids the head was trained on (vLLM reads the same key)",
        )
    keep = {key: value for key, value in raw.items() if key not in ("architectures", "model_type")}
    config = LlamaConfig(**keep)
    config._attn_implementation = "sdpa"
    return config


def load_eagle3_head(path: str) -> Eagle3Head:
    """An EAGLE-3 head folder (config.json + model.safetensors, as vLLM loads it), in float32."""
    folder = Path(path)
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise EngineConfigError(
            f"EAGLE-3 head {path} lacks config.json or model.safetensors", where="cell.draft_model",
            fix="point draft_model at a head folder such as bundled:tiny-stdlib/eagle3",
        )
    head = Eagle3Head(head_config(folder))
    state = {name: tensor if tensor.dtype in (torch.long, torch.bool) else tensor.float()
             for name, tensor in load_file(str(weights)).items()}
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("rotary.")]
    if missing or unexpected:
        raise EngineConfigError(
            f"EAGLE-3 head {path} does not match its config: missing {missing}, unexpected {unexpected}",
            where="cell.draft_model", fix="retrain or re-export the head (scripts/train_eagle3.py)",
        )
    head.eval()
    return head


class HiddenStateProposer:
    """What the EAGLE-1 and EAGLE-3 proposers share: a head with a KV cache of its own, fed the target's
    hidden states of the positions the target has verified. Its cache is rebuilt for every request from
    those states, restored ones included (the injected fault's stand-ins where it withholds them): an
    entry at a position also reads the next token, so it is not a function of one cached block."""

    #: How the head is named in an error.
    method = "EAGLE"

    def __init__(self, config: LlamaConfig, k: int) -> None:
        self.k = k
        self._config = config
        self._cache = DynamicCache(config=config)
        self._fed = 0  # positions whose target state the head's cache holds
        self._pending: list[torch.Tensor] = []

    def begin(self, restored: Sequence[KVBlock] = (), blind: int = 0) -> None:
        self._cache = DynamicCache(config=self._config)
        self._fed = 0
        self._pending = []

    def cache_source(self) -> Session | None:
        return None

    def observe(self, states: torch.Tensor) -> None:
        """Target states of the next positions that the target has verified (in order)."""
        self._pending.append(states)

    def _verified_states(self, context: list[int]) -> torch.Tensor:
        """The target states observed since the last proposal: one per context position not yet fed."""
        states = torch.cat(self._pending) if self._pending else None
        self._pending.clear()
        if states is None or self._fed + states.shape[0] != len(context) - 1:
            known = self._fed + (0 if states is None else states.shape[0])
            raise RuntimeError(f"{self.method} proposer has target states for {known} positions, "
                               f"the context needs {len(context) - 1}")
        return states

    def keep(self, length: int) -> None:
        # Draft steps 2..k wrote speculative entries; the next step refeeds them from target states.
        current = int(self._cache.get_seq_length())
        if current > self._fed:
            self._cache.crop(self._fed - current)


class Eagle3Proposer(HiddenStateProposer):
    """vLLM's `eagle3` method: the head drafts k tokens from the target's fused hidden states."""

    method = "EAGLE-3"

    def __init__(self, head: Eagle3Head, target: LoadedModel, k: int) -> None:
        super().__init__(head.config, k)
        self.target_layers = head.aux_layers
        self._head = head
        self._embed = target.model.get_input_embeddings()

    def _step(self, tokens: list[int], hidden: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self._embed(torch.tensor([tokens], dtype=torch.long))
        positions = torch.arange(start, start + len(tokens))[None]
        normed, prenorm = self._head(embeds, hidden[None], positions,
                                     causal_mask(len(tokens), self._cache.get_seq_length()), self._cache)
        return normed[0, -1], prenorm[0, -1:]

    def propose(self, context: list[int]) -> list[int]:
        states = self._verified_states(context)
        start = self._fed
        # Position p is fed the token at p + 1: the head predicts the token after next.
        normed, hidden = self._step(context[start + 1 :], self._head.fc(states), start)
        self._fed = len(context) - 1
        drafts = [self._head.greedy_target_token(normed)]
        while len(drafts) < self.k:
            normed, hidden = self._step([drafts[-1]], hidden, self._fed + len(drafts) - 1)
            drafts.append(self._head.greedy_target_token(normed))
        return drafts
