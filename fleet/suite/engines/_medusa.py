"""Medusa heads in vLLM's checkpoint layout, and the proposer that drafts with them as vLLM does.

Why it is built here: Medusa is a few residual MLP blocks and linear heads, so the model is written
out with the checkpoint's parameter names (vllm/model_executor/models/medusa.py, architecture
`MedusaModel`, config model_type `medusa`), and the same safetensors file loads here and in vLLM:
- `blocks.i.layers.j.weight` (and `.bias` when config `medusa_fc_bias`): head i's ResidualBlock,
  x = x + SiLU(W_j x) for j < num_hidden_layers, over the target's last hidden state (after its final
  norm: what vLLM's target model returns, transformers' `hidden_states[num_layers]`).
- `lm_heads.i.weight` (truncated_vocab_size x hidden), or one shared `lm_head` stored as
  `lm_heads.0.weight` when config `original_lm_head`; with truncated_vocab_size < vocab_size, the
  `token_map` tensor maps head column c to target id token_map[c] (other ids score -inf).

Drafting (vllm/v1/spec_decode/medusa.py, `MedusaProposer.propose`): one pass of every head over the
target's hidden state at the position that produced the last emitted token; draft i is head i's argmax
(top-1 only, no tree). vLLM sets the config's num_heads to num_speculative_tokens (MedusaConfig's
`num_lookahead_tokens`), so k must equal the checkpoint's number of heads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fleet.suite.engines._lm import KVBlock, LoadedModel, Session
from fleet.suite.engines.base import EngineConfigError


class ResidualBlock(nn.Module):
    def __init__(self, hidden: int, layers: int, bias: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden, bias=bias) for _ in range(layers))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + self.act(layer(x))
        return x


class MedusaHeads(nn.Module):
    """num_heads residual blocks, each with its lm_head (or one shared); names as in the checkpoint."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden, self.num_heads = int(config["hidden_size"]), int(config["num_heads"])
        self.hidden_size = hidden
        self.vocab_size = int(config["vocab_size"])
        self.truncated_vocab_size = int(config.get("truncated_vocab_size") or self.vocab_size)
        self.shared_lm_head = bool(config.get("original_lm_head", False))
        bias = bool(config.get("medusa_fc_bias", False))
        layers = int(config.get("num_hidden_layers", 1))
        self.blocks = nn.ModuleList(ResidualBlock(hidden, layers, bias) for _ in range(self.num_heads))
        heads = 1 if self.shared_lm_head else self.num_heads
        self.lm_heads = nn.ModuleList(
            nn.Linear(hidden, self.truncated_vocab_size, bias=False) for _ in range(heads))
        self.register_buffer("token_map", torch.arange(self.truncated_vocab_size))

    def draft(self, hidden: torch.Tensor) -> list[int]:
        """Head i's top-1 token (target ids) for one target hidden state [hidden]."""
        drafts = []
        token_map = cast(torch.Tensor, self.token_map)
        for i, block in enumerate(self.blocks):
            lm_head = self.lm_heads[0 if self.shared_lm_head else i]
            column = int(lm_head(block(hidden)).argmax(dim=-1))
            drafts.append(int(token_map[column]))
        return drafts


def checkpoint_config(target: Any, *, heads: int, layers: int = 1) -> dict[str, Any]:
    """config.json of Medusa heads for a `target` config (full vocabulary, one lm_head per head)."""
    return {
        "architectures": ["MedusaModel"], "model_type": "medusa", "hidden_size": target.hidden_size,
        "vocab_size": target.vocab_size, "truncated_vocab_size": target.vocab_size, "num_heads": heads,
        "num_hidden_layers": layers, "original_lm_head": False, "medusa_fc_bias": False,
        "torch_dtype": "bfloat16",
    }


def save_heads(heads: MedusaHeads, raw: dict[str, Any], folder: Path,
               dtype: torch.dtype = torch.bfloat16) -> None:
    """Write config.json and model.safetensors as vLLM's loader reads them (token_map only if truncated)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to(dtype).cpu().contiguous()
             for name, tensor in heads.state_dict().items() if name != "token_map"}
    if heads.truncated_vocab_size < heads.vocab_size:
        state["token_map"] = cast(torch.Tensor, heads.token_map).detach().cpu().contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n")


def read_config(folder: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") != "medusa" or "num_heads" not in raw:
        raise EngineConfigError(
            f"{folder} is not a Medusa checkpoint (model_type {raw.get('model_type')!r})",
            where="cell.draft_model",
            cause="method 'medusa' needs vLLM's MedusaModel layout: config model_type 'medusa', num_heads",
            fix="point draft_model at a Medusa folder (scripts/train_medusa.py writes one)",
        )
    return raw


def load_medusa_heads(path: str) -> MedusaHeads:
    """A Medusa folder (config.json + model.safetensors, as vLLM loads it), in float32."""
    folder = Path(path)
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise EngineConfigError(
            f"Medusa checkpoint {path} lacks config.json or model.safetensors", where="cell.draft_model",
            fix="point draft_model at a folder written by scripts/train_medusa.py",
        )
    heads = MedusaHeads(read_config(folder))
    # vLLM strips a `medusa_heads.` prefix that some converters leave.
    state = {name.replace("medusa_heads.", ""): tensor
             for name, tensor in load_file(str(weights)).items()}
    truncated = heads.truncated_vocab_size < heads.vocab_size
    if truncated and "token_map" not in state:
        raise EngineConfigError(
            f"Medusa checkpoint {path} has truncated_vocab_size {heads.truncated_vocab_size} < vocab_size "
            f"{heads.vocab_size} but no token_map", where="cell.draft_model",
            cause="vLLM asserts a token_map whenever the heads score a truncated vocabulary",
            fix="store token_map (int64, one target id per head column) or set truncated_vocab_size "
                "to vocab_size",
        )
    if not truncated:
        state.pop("token_map", None)  # vLLM ignores it then
    state = {name: tensor if name == "token_map" else tensor.float() for name, tensor in state.items()}
    for name, tensor in list(state.items()):
        # Full-vocabulary heads with a token_map are cut down to its rows, as vLLM's loader does.
        if truncated and name.startswith("lm_heads.") and tensor.shape[0] > heads.truncated_vocab_size:
            state[name] = tensor[state["token_map"]]
    if heads.shared_lm_head:
        state = {name: tensor for name, tensor in state.items()
                 if not name.startswith("lm_heads.") or name == "lm_heads.0.weight"}
    missing, unexpected = heads.load_state_dict(state, strict=False)
    missing = [name for name in missing if name != "token_map"]
    # vLLM skips tensors of heads beyond num_heads; anything else unknown is a layout error here.
    unexpected = [name for name in unexpected
                  if not (name.split(".")[0] in ("blocks", "lm_heads") and name.split(".")[1].isdigit()
                          and int(name.split(".")[1]) >= heads.num_heads)]
    if missing or unexpected:
        raise EngineConfigError(
            f"Medusa checkpoint {path} does not match its config: missing {missing}, unexpected {unexpected}",
            where="cell.draft_model", fix="retrain or re-export the heads (scripts/train_medusa.py)",
        )
    heads.eval()
    return heads


class MedusaProposer:
    """vLLM's `medusa` method: every head drafts one token from the target's last hidden state."""

    def __init__(self, heads: MedusaHeads, target: LoadedModel, k: int) -> None:
        self.k = k
        # transformers' hidden_states[num_layers] is the final norm's output, the state vLLM hands over.
        self.target_layers: tuple[int, ...] = (int(target.model.config.num_hidden_layers),)
        self._heads = heads
        self._last: torch.Tensor | None = None

    def begin(self, restored: Sequence[KVBlock] = (), blind: int = 0) -> None:
        # It reads only the state of the prompt's last position, which the prefill always computes, so a
        # prefix-cache hit (and the injected fault, which acts on restored positions) changes nothing.
        self._last = None

    def cache_source(self) -> Session | None:
        return None

    def observe(self, states: torch.Tensor) -> None:
        if states.shape[0]:
            self._last = states[-1]

    def propose(self, context: list[int]) -> list[int]:
        if self._last is None:
            raise RuntimeError("Medusa proposer has no target hidden state for this request")
        return self._heads.draft(self._last)[: self.k]

    def keep(self, length: int) -> None:
        return None
