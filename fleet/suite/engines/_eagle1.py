"""The EAGLE(-1) draft head in vLLM's checkpoint layout, and the proposer that drafts with it as vLLM does.

Why it is built here: transformers has no EAGLE model, but it has every part of one. The head is
vLLM's `EagleLlamaForCausalLM` (vllm/model_executor/models/llama_eagle.py) assembled from transformers'
Llama modules, with the checkpoint's parameter names (fc, layers.N.*), so the same safetensors file
loads here and in vLLM:
- fc maps [embed(token), hidden] (2 x hidden wide) to one hidden state; `hidden` is the target's last
  hidden state (after its final norm: what vLLM's target model returns, transformers'
  `hidden_states[num_layers]`) or, from draft 2 on, the head's own output.
- `num_hidden_layers` Llama decoder layers; the first has no input_layernorm (vLLM replaces it with
  nn.Identity, as the EAGLE reference code does), so the checkpoint has no `layers.0.input_layernorm`.
- No final norm: the output (last layer's hidden + residual) is both what the lm_head scores and the
  hidden state of the next draft step.
- lm_head and embed_tokens are the target's (vLLM 0.26.0's EagleLlamaForCausalLM defines neither and
  shares the target's); a checkpoint `lm_head.weight` is used if present, `embed_tokens.weight` never
  (vLLM skips it without pipeline parallelism).

Drafting (vllm/v1/spec_decode/eagle.py, `propose`) is EAGLE-3's: every position p whose target hidden
state is known is fed once with the token at p + 1; the last one yields draft 1; drafts 2..k feed the
previous draft with the head's own output at the next position; those speculative entries are dropped.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache, LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaAttention,
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
)

from fleet.suite.engines._eagle3 import HiddenStateProposer, causal_mask
from fleet.suite.engines._lm import LoadedModel
from fleet.suite.engines.base import EngineConfigError

#: Checkpoint tensors vLLM's EAGLE-1 loader skips (they are the target's).
SHARED_WITH_TARGET = ("embed_tokens.weight",)


class Eagle1Layer(nn.Module):
    """A Llama decoder layer (pre-norm, two residuals); layer 0 has no input norm, as in vLLM."""

    def __init__(self, config: LlamaConfig, index: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.input_layernorm: nn.Module = (
            nn.Identity() if index == 0 else LlamaRMSNorm(hidden, eps=config.rms_norm_eps))
        self.self_attn = LlamaAttention(config, layer_idx=index)
        # transformers renamed past_key_values to cache (5.2x); the layer takes whichever this one has.
        parameters = inspect.signature(LlamaAttention.forward).parameters
        self._cache_keyword = "cache" if "cache" in parameters else "past_key_values"
        self.post_attention_layernorm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        make_mlp: Any = LlamaMLP  # transformers' modules are untyped
        self.mlp = make_mlp(config)

    def forward(self, hidden: torch.Tensor, position_embeddings: Any, mask: torch.Tensor,
                cache: DynamicCache | None) -> torch.Tensor:
        attended, _ = self.self_attn(self.input_layernorm(hidden), position_embeddings=position_embeddings,
                                     attention_mask=mask, **{self._cache_keyword: cache})
        residual = hidden + attended
        out: torch.Tensor = residual + self.mlp(self.post_attention_layernorm(residual))
        return out


class Eagle1Head(nn.Module):
    """fc + decoder layers (+ an optional own lm_head); parameter names as in the checkpoint."""

    def __init__(self, config: LlamaConfig, *, own_lm_head: bool = False) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.config = config
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        self.layers = nn.ModuleList(Eagle1Layer(config, i) for i in range(config.num_hidden_layers))
        self.lm_head: nn.Linear | None = (
            nn.Linear(hidden, config.vocab_size, bias=False) if own_lm_head else None)
        self.rotary = LlamaRotaryEmbedding(config)

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, cache: DynamicCache | None = None) -> torch.Tensor:
        """The head's output hidden states for [batch, seq] inputs; `mask` is additive, [b, 1, q, kv]."""
        position_embeddings = self.rotary(embeds, positions)
        out = self.fc(torch.cat([embeds, hidden], dim=-1))
        for layer in self.layers:
            out = layer(out, position_embeddings, mask, cache)
        return cast(torch.Tensor, out)


def checkpoint_config(target: Any, *, layers: int = 1) -> dict[str, Any]:
    """config.json of an EAGLE-1 head for a Llama `target` config: its shapes, vLLM's architecture name."""
    return {
        "architectures": ["EagleLlamaForCausalLM"], "model_type": "llama",
        "hidden_size": target.hidden_size, "intermediate_size": target.intermediate_size,
        "num_attention_heads": target.num_attention_heads,
        "num_key_value_heads": target.num_key_value_heads, "head_dim": target.head_dim,
        "num_hidden_layers": layers, "hidden_act": "silu", "rms_norm_eps": target.rms_norm_eps,
        "max_position_embeddings": target.max_position_embeddings,
        "rope_parameters": dict(target.rope_parameters), "vocab_size": target.vocab_size,
        "bos_token_id": target.bos_token_id, "eos_token_id": target.eos_token_id,
        "pad_token_id": target.pad_token_id, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
    }


def build_head(raw: dict[str, Any]) -> Eagle1Head:
    """A freshly initialised head for a checkpoint_config() dict."""
    config = LlamaConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
    config._attn_implementation = "sdpa"
    return Eagle1Head(config)


def save_head(head: Eagle1Head, raw: dict[str, Any], folder: Path,
              dtype: torch.dtype = torch.bfloat16) -> None:
    """Write config.json and model.safetensors as vLLM's loader reads them (no rotary buffers)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to(dtype).cpu().contiguous()
             for name, tensor in head.state_dict().items() if not name.startswith("rotary.")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n")


def head_config(folder: Path) -> LlamaConfig:
    raw = json.loads((folder / "config.json").read_text())
    architectures = raw.get("architectures") or []
    # vLLM's EAGLEConfig maps LlamaForCausalLM (the published EAGLE-1 heads' name) to EagleLlamaForCausalLM.
    llama = {"EagleLlamaForCausalLM", "LlamaForCausalLM"}
    if "eagle_aux_hidden_state_layer_ids" in raw or not architectures or not set(architectures) <= llama:
        raise EngineConfigError(
            f"{folder} is not an EAGLE-1 head (architectures {architectures})", where="cell.draft_model",
            cause="method 'eagle' needs an EagleLlamaForCausalLM checkpoint (fc over [embed, hidden], "
                  "no aux layers); an EAGLE-3 head runs with method 'eagle3'",
            fix="point draft_model at an EAGLE-1 head folder (scripts/train_eagle1.py writes one)",
        )
    keep = {key: value for key, value in raw.items() if key not in ("architectures", "model_type")}
    config = LlamaConfig(**keep)
    config._attn_implementation = "sdpa"
    return config


def load_eagle1_head(path: str) -> Eagle1Head:
    """An EAGLE-1 head folder (config.json + model.safetensors, as vLLM loads it), in float32."""
    folder = Path(path)
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise EngineConfigError(
            f"EAGLE-1 head {path} lacks config.json or model.safetensors", where="cell.draft_model",
            fix="point draft_model at a head folder written by scripts/train_eagle1.py",
        )
    config = head_config(folder)
    state = {name: tensor.float() for name, tensor in load_file(str(weights)).items()
             if name not in SHARED_WITH_TARGET}
    head = Eagle1Head(config, own_lm_head="lm_head.weight" in state)
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("rotary.")]
    if missing or unexpected:
        raise EngineConfigError(
            f"EAGLE-1 head {path} does not match its config: missing {missing}, unexpected {unexpected}",
            where="cell.draft_model", fix="retrain or re-export the head (scripts/train_eagle1.py)",
        )
    head.eval()
    return head


class Eagle1Proposer(HiddenStateProposer):
    """vLLM's `eagle` method: the head drafts k tokens from the target's last hidden states."""

    method = "EAGLE-1"

    def __init__(self, head: Eagle1Head, target: LoadedModel, k: int) -> None:
        super().__init__(head.config, k)
        # transformers' hidden_states[num_layers] is the final norm's output, the state vLLM hands over.
        self.target_layers: tuple[int, ...] = (int(target.model.config.num_hidden_layers),)
        self._head = head
        self._embed = target.model.get_input_embeddings()
        self._lm_head = head.lm_head if head.lm_head is not None else target.model.get_output_embeddings()

    def _step(self, tokens: list[int], hidden: torch.Tensor, start: int) -> tuple[int, torch.Tensor]:
        embeds = self._embed(torch.tensor([tokens], dtype=torch.long))
        positions = torch.arange(start, start + len(tokens))[None]
        out = self._head(embeds, hidden[None], positions,
                         causal_mask(len(tokens), self._cache.get_seq_length()), self._cache)
        last = out[0, -1:]
        return int(self._lm_head(last).argmax(dim=-1)), last

    def propose(self, context: list[int]) -> list[int]:
        states = self._verified_states(context)
        start = self._fed
        # Position p is fed the token at p + 1: the head predicts the token after next.
        token, hidden = self._step(context[start + 1 :], states, start)
        self._fed = len(context) - 1
        drafts = [token]
        while len(drafts) < self.k:
            token, hidden = self._step([drafts[-1]], hidden, self._fed + len(drafts) - 1)
            drafts.append(token)
        return drafts
