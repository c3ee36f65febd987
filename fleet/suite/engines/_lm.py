"""Loading a causal LM for the reference engine and stepping it greedily over a croppable KV cache.

Kept apart from the decoding loop so that the loop reads as the algorithm (propose, verify, accept)
and the transformers API details (which change between releases) live in one place.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as hf_logging

from fleet.suite.engines.base import EngineConfigError


@dataclass(frozen=True)
class LoadedModel:
    path: str
    model: Any
    vocab_size: int
    eos_token_id: int | None


def check_model_dir(path: str, *, field: str) -> Path:
    """A local Hugging Face model folder, or an EngineConfigError that names the path and the field."""
    folder = Path(path)
    if not folder.is_dir():
        raise EngineConfigError(
            f"model path {path} does not exist",
            where=field,
            cause="the reference engine runs local Hugging Face folders only (no hub downloads)",
            fix="point it at a folder with config.json and weights, or use bundled:tiny-stdlib/target",
        )
    if not (folder / "config.json").is_file():
        raise EngineConfigError(
            f"model path {path} has no config.json", where=field,
            fix="point it at a Hugging Face model folder",
        )
    return folder


def load_model(path: str, *, field: str) -> LoadedModel:
    """Load weights (often bf16) and cast them to float32, where greedy speculation is lossless."""
    folder = check_model_dir(path, field=field)
    quiet: Any = hf_logging  # loading progress bars would bury the suite's own output
    quiet.disable_progress_bar()
    quiet.set_verbosity_error()
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise EngineConfigError(
            f"cannot load model from {path}: {err}".replace("\n", " "), where=field,
            fix="check that the folder holds a causal LM in Hugging Face format",
        ) from err
    model.eval()
    eos = model.config.eos_token_id
    eos_id = eos[0] if isinstance(eos, list) and eos else eos
    return LoadedModel(
        path=str(folder),
        model=model,
        vocab_size=int(model.config.vocab_size),
        eos_token_id=eos_id if isinstance(eos_id, int) else None,
    )


def load_tokenizer(path: str) -> Any:
    return AutoTokenizer.from_pretrained(path)


#: One stretch of positions of a model's KV cache: (keys, values) per layer, [1, heads, positions, dim].
KVBlock = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def zero_block(loaded: LoadedModel, length: int) -> KVBlock:
    """`length` positions of all-zero KV for every layer: a cache block that came back empty."""
    config = loaded.model.config
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    shape = (1, heads, length, dim)
    return tuple((torch.zeros(shape), torch.zeros(shape)) for _ in range(int(config.num_hidden_layers)))


class Session:
    """One request's view of a model: a KV cache holding a prefix of the context, fed token by token.

    `restored`: KV blocks of the context's first positions, in order (a prefix-cache hit); the session
    then starts after them, as if it had been fed their tokens."""

    def __init__(self, loaded: LoadedModel, restored: Sequence[KVBlock] = ()) -> None:
        self._model = loaded.model
        self._cache_keyword = (
            "cache" if "cache" in inspect.signature(self._model.forward).parameters else "past_key_values"
        )
        self._cache = DynamicCache(config=self._model.config)
        for layer in range(len(restored[0]) if restored else 0):
            keys = torch.cat([block[layer][0] for block in restored], dim=-2)
            values = torch.cat([block[layer][1] for block in restored], dim=-2)
            self._cache.update(keys, values, layer)

    def kv_block(self, start: int, end: int) -> KVBlock:
        """A copy of positions [start, end) of every layer's KV cache, for a prefix cache to keep."""
        layers: Any = self._cache.layers  # DynamicLayer: keys / values, [batch, heads, positions, dim]
        return tuple((layer.keys[:, :, start:end].clone(), layer.values[:, :, start:end].clone())
                     for layer in layers)

    @property
    def length(self) -> int:
        return int(self._cache.get_seq_length())

    def feed(self, token_ids: list[int], *, last_only: bool = False) -> torch.Tensor:
        """Append tokens to the cache; the greedy next token after each of them (or after the last)."""
        kwargs: dict[str, Any] = {self._cache_keyword: self._cache, "use_cache": True}
        if last_only:
            kwargs["logits_to_keep"] = 1
        out = self._model(input_ids=torch.tensor([token_ids], dtype=torch.long), **kwargs)
        greedy: torch.Tensor = out.logits[0].argmax(dim=-1)
        return greedy

    def feed_with_states(self, token_ids: list[int], layers: tuple[int, ...], *,
                         last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """As `feed`, plus the hidden states at `layers` (transformers indices): [tokens, layers x hidden]."""
        kwargs: dict[str, Any] = {self._cache_keyword: self._cache, "use_cache": True,
                                  "output_hidden_states": True}
        if last_only:
            kwargs["logits_to_keep"] = 1
        out = self._model(input_ids=torch.tensor([token_ids], dtype=torch.long), **kwargs)
        greedy: torch.Tensor = out.logits[0].argmax(dim=-1)
        states = torch.cat([out.hidden_states[layer][0] for layer in layers], dim=-1)
        return greedy, states

    def crop(self, length: int) -> None:
        """Forget everything after the first `length` tokens (rejected drafts)."""
        current = self.length
        if length >= current:
            return
        # A negative argument removes that many tokens in every transformers 5 release (the meaning of a
        # positive one changed from "keep" to "refused").
        self._cache.crop(length - current)
