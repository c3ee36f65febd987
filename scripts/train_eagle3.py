"""Train the EAGLE-3 head for the bundled tiny-stdlib target (fleet/assets/tiny-stdlib/eagle3).

Usage (repo root; a GPU if there is one, else CPU):
    python scripts/train_eagle3.py --out fleet/assets/tiny-stdlib/eagle3 [--steps 1500] [--seed 0]

What it does, and why:
- Corpus: the running Python's stdlib, split exactly as the target's own training (train_tiny_stdlib.py:
  sorted files, random.seed(0) shuffle, the first 60 held out; the shipped prompts come from those 60),
  so on Python 3.12, the target's corpus, the head never sees a prompt's file.
- Data: 64-token windows of training files, continued greedily by the target for 192 tokens. The
  speculative workload is greedy continuation, so the head learns the target's own outputs.
- Draft vocabulary: the `--draft-vocab` tokens the target emits most often in its continuations; d2t maps
  draft id i to target id i + d2t[i] (vLLM's layout), t2d marks them in the target vocabulary.
- Head: fleet.suite.engines._eagle3.Eagle3Head (the module the reference engine drafts with), fusing
  target layers 1, 3, 5 (vLLM ids: inputs of those layers); lm_head and norm start from the target's.
- Loss: cross-entropy against the target's next-token distribution over the draft vocabulary, with
  EAGLE-3's training-time test: `--ttt` unrolled steps, step s fed the head's own prenorm hidden state
  of step s-1 and attending to the target-state keys up to its anchor plus its own chain, exactly what
  the head sees at draft position s. Step s weighs 0.8**(s-1).
- Seeded (torch, random); same device and library versions reproduce the same weights.
Writes config.json, model.safetensors (bf16 weights, int64 d2t, bool t2d) and train_log.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import random
import sysconfig
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LlamaConfig

from fleet.suite.engines._eagle3 import Eagle3Head
from fleet.suite.model_refs import resolve_model

AUX_LAYERS = [1, 3, 5]


def corpus_files() -> tuple[list[str], list[str]]:
    std = sysconfig.get_paths()["stdlib"]
    # The same listing as train_tiny_stdlib.py, so the shuffle holds out the same files.
    files = sorted(f for f in glob.glob(std + "/**/*.py", recursive=True) if "site-packages" not in f)  # noqa: PTH207
    random.seed(0)
    random.shuffle(files)
    return files[60:], files[:60]


def windows(tokenizer: Any, files: list[str], count: int, length: int, rng: random.Random) -> torch.Tensor:
    encoded = []
    for path in files:
        ids = tokenizer(Path(path).read_text(errors="ignore")).input_ids
        if len(ids) > length + 1:
            encoded.append(ids)
    picks = []
    for _ in range(count):
        ids = encoded[rng.randrange(len(encoded))]
        start = rng.randrange(len(ids) - length)
        picks.append(ids[start : start + length])
    return torch.tensor(picks, dtype=torch.long)


@torch.no_grad()
def greedy_continuations(target: Any, prompts: torch.Tensor, new_tokens: int, batch: int) -> torch.Tensor:
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch].to(target.device)
        done = target.generate(input_ids=chunk, attention_mask=torch.ones_like(chunk), do_sample=False,
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=2)
        out.append(done.cpu())
    return torch.cat(out)


def ttt_mask(length: int, step: int, device: torch.device) -> torch.Tensor:
    """Keys of steps 1..step for queries of `step`: step-1 keys up to the anchor, then the chain diagonal."""
    p = torch.arange(length, device=device)[:, None]
    q = torch.arange(length, device=device)[None, :]
    blocks = [q <= p - (step - 1)] + [q == p - step + j for j in range(2, step + 1)]
    allowed = torch.cat(blocks, dim=1)
    return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))[None, None]


def head_config(target_config: Any, draft_vocab: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
        "hidden_size": target_config.hidden_size, "intermediate_size": target_config.intermediate_size,
        "num_attention_heads": target_config.num_attention_heads,
        "num_key_value_heads": target_config.num_key_value_heads, "head_dim": target_config.head_dim,
        "num_hidden_layers": 1, "hidden_act": "silu", "rms_norm_eps": target_config.rms_norm_eps,
        "max_position_embeddings": target_config.max_position_embeddings,
        "rope_parameters": dict(target_config.rope_parameters),
        "vocab_size": target_config.vocab_size, "draft_vocab_size": draft_vocab,
        "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
        "eagle_aux_hidden_state_layer_ids": AUX_LAYERS,
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": AUX_LAYERS, "use_aux_hidden_state": True},
    }


def seeded_training_data(args: Any, started: float) -> tuple[torch.device, Any, torch.Tensor, torch.Tensor]:
    """What every drafter of the bundled target trains on, seeded by args.seed: the target (float32, on
    the GPU where there is one), args.sequences 64-token windows of its corpus and its greedy
    continuations of args.new_tokens; args.threads sets torch's CPU threads (0: its default)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = resolve_model(args.target)
    tokenizer = AutoTokenizer.from_pretrained(path)
    target: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    train_files, held = corpus_files()
    prompts = windows(tokenizer, train_files, args.sequences, 64, rng)
    data = greedy_continuations(target, prompts, args.new_tokens, 512 if device.type == "cuda" else 64)
    print(f"data {tuple(data.shape)} from {len(train_files)} files ({len(held)} held out), "
          f"{time.time() - started:.0f} s", flush=True)
    return device, target, prompts, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fleet/assets/tiny-stdlib/eagle3")
    parser.add_argument("--target", default="bundled:tiny-stdlib/target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequences", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ttt", type=int, default=4)
    parser.add_argument("--draft-vocab", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--new-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    started = time.time()
    device, target, prompts, data = seeded_training_data(args, started)

    # The continuations are the target's own greedy tokens: the draft vocabulary is their most frequent.
    counts = torch.bincount(data[:, prompts.shape[1] :].flatten(), minlength=target.config.vocab_size)
    chosen = counts.argsort(descending=True, stable=True)[: args.draft_vocab].sort().values
    coverage = float(counts[chosen].sum() / counts.sum())
    print(f"draft vocab {args.draft_vocab} covers {coverage:.4f} of the target's greedy tokens", flush=True)

    raw_config = head_config(target.config, args.draft_vocab)
    config = LlamaConfig(**{k: v for k, v in raw_config.items() if k not in ("architectures", "model_type")})
    config._attn_implementation = "sdpa"
    head = Eagle3Head(config).to(device)
    with torch.no_grad():
        head.d2t.copy_(chosen.to(device) - torch.arange(args.draft_vocab, device=device))
        head.t2d.zero_()
        head.t2d[chosen.to(device)] = True
        head.lm_head.weight.copy_(target.get_output_embeddings().weight[chosen.to(device)])
        head.norm.weight.copy_(target.model.norm.weight)
    embed = target.get_input_embeddings()
    draft_ids = chosen.to(device)
    # The target's outputs never change: compute them once (bf16 to hold them in memory).
    with torch.no_grad():
        auxes, teachers = [], []
        for i in range(0, len(data), 64):
            out = target(input_ids=data[i : i + 64, :-1].to(device), output_hidden_states=True)
            auxes.append(torch.cat([out.hidden_states[j] for j in AUX_LAYERS], dim=-1).to(torch.bfloat16))
            # Position p reads token p + 1 and is taught the target's distribution after it.
            teachers.append(torch.log_softmax(out.logits[:, 1:, draft_ids], dim=-1).to(torch.bfloat16))
        aux_all, teacher_all = torch.cat(auxes), torch.cat(teachers)
    print(f"target outputs cached, {time.time() - started:.0f} s", flush=True)
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    length = data.shape[1] - 2
    masks = [ttt_mask(length, s, device) for s in range(1, args.ttt + 1)]
    positions = torch.arange(length, device=device)[None]
    log: list[dict[str, Any]] = []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        picked = torch.randint(0, len(data), (args.batch,))
        batch = data[picked].to(device)
        aux, teacher = aux_all[picked].float(), teacher_all[picked].float()
        tokens = embed(batch[:, 1 : length + 1])
        hidden = head.fc(aux)[:, :length]
        cache = DynamicCache(config=config)
        loss = torch.zeros((), device=device)
        accuracy = []
        for s in range(1, args.ttt + 1):
            normed, prenorm = head(tokens, hidden, positions, masks[s - 1], cache)
            logits = torch.log_softmax(head.lm_head(normed), dim=-1)
            valid = slice(s - 1, None)
            loss = loss + 0.8 ** (s - 1) * -(teacher[:, valid].exp() * logits[:, valid]).sum(-1).mean()
            hits = logits[:, valid].argmax(-1) == teacher[:, valid].argmax(-1)
            accuracy.append(float(hits.float().mean()))
            hidden = torch.cat([torch.zeros_like(prenorm[:, :1]), prenorm[:, :-1]], dim=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            entry = {"step": step, "loss": round(float(loss.detach()), 4),
                     "top1_per_step": [round(a, 4) for a in accuracy], "s": round(time.time() - started, 1)}
            log.append(entry)
            print(entry, flush=True)

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: (t.to(torch.bfloat16) if t.is_floating_point() else t).detach().cpu().contiguous()
             for name, t in head.state_dict().items() if not name.startswith("rotary.")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(raw_config, indent=2) + "\n")
    summary = {"args": vars(args), "device": str(device), "torch": torch.__version__,
               "data_shape": list(data.shape), "draft_vocab_coverage": coverage,
               "seconds": round(time.time() - started, 1), "log": log}
    (folder / "train_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {folder} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
