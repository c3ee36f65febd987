"""Train Medusa heads for the bundled tiny-stdlib target (vLLM's MedusaModel layout).

Usage (repo root; a GPU if there is one, else CPU):
    python scripts/train_medusa.py --out fleet/assets/tiny-stdlib/medusa [--heads 4] [--steps 2500]
    python scripts/train_medusa.py --out /tmp/smoke --sequences 8 --new-tokens 16 --steps 3 --batch 4

What it does, and why (the data and schedule are scripts/train_eagle3.py's, imported from it):
- Corpus and data: 64-token windows of the stdlib files the target trained on (the 60 held-out files,
  the source of prompts.json, excluded), continued greedily by the target for 192 tokens: the heads
  learn the target's own greedy outputs, the workload they draft for.
- Heads: fleet.suite.engines._medusa.MedusaHeads (the module the reference engine drafts with), `--heads`
  heads (vLLM drafts num_speculative_tokens = heads tokens), each one ResidualBlock (x + SiLU(W x)) over
  the target's last hidden state at p (after the final norm: the state vLLM hands its Medusa proposer)
  and its own lm_head over the full vocabulary. Medusa-1's initialisation: W = 0 and every lm_head a
  copy of the target's, so each head starts as the target's own next-token head.
- Loss: head i (0-based) at position p predicts the token at p + 2 + i (the target's own token at
  p + 1 is the one it just emitted); cross-entropy against the target's distribution there (its logits
  at p + 1 + i), head i weighing 0.8**i, as Medusa-1 weighs its heads.
- Seeded (torch, random); same device and library versions reproduce the same weights.
Writes config.json, model.safetensors (bf16) and train_log.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from train_eagle1 import final_states
from train_eagle3 import seeded_training_data

from fleet.suite.engines._medusa import MedusaHeads, checkpoint_config, save_heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fleet/assets/tiny-stdlib/medusa")
    parser.add_argument("--target", default="bundled:tiny-stdlib/target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=1, help="residual layers per head")
    parser.add_argument("--sequences", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--new-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    started = time.time()
    device, target, _, data = seeded_training_data(args, started)
    target.requires_grad_(False)

    raw_config = checkpoint_config(target.config, heads=args.heads, layers=args.layers)
    heads = MedusaHeads(raw_config).to(device)
    lm_head = target.get_output_embeddings()
    with torch.no_grad():
        for block in heads.blocks:
            for layer in block.layers:  # type: ignore[union-attr]
                layer.weight.zero_()
        for head_lm in heads.lm_heads:
            head_lm.weight.copy_(lm_head.weight)
    feats_all = final_states(target, data, device)
    print(f"target states cached, {time.time() - started:.0f} s", flush=True)
    trainable = [p for name, p in heads.named_parameters() if name != "token_map"]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    length = feats_all.shape[1]  # positions 0 .. T-2 of each sequence
    log: list[dict[str, Any]] = []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        picked = torch.randint(0, len(data), (args.batch,))
        feats = feats_all[picked].float()
        loss = torch.zeros((), device=device)
        accuracy = []
        for i, block in enumerate(heads.blocks):
            usable = length - 1 - i  # positions p with a target state at p + 1 + i
            with torch.no_grad():
                teacher = torch.log_softmax(lm_head(feats[:, 1 + i : 1 + i + usable]), dim=-1)
            logits = torch.log_softmax(heads.lm_heads[i](block(feats[:, :usable])), dim=-1)
            loss = loss + 0.8**i * -(teacher.exp() * logits).sum(-1).mean()
            accuracy.append(float((logits.argmax(-1) == teacher.argmax(-1)).float().mean()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            entry = {"step": step, "loss": round(float(loss.detach()), 4),
                     "top1_per_head": [round(a, 4) for a in accuracy], "s": round(time.time() - started, 1)}
            log.append(entry)
            print(entry, flush=True)

    folder = Path(args.out)
    save_heads(heads, raw_config, folder)
    summary = {"args": vars(args), "device": str(device), "torch": torch.__version__,
               "data_shape": list(data.shape), "seconds": round(time.time() - started, 1), "log": log}
    (folder / "train_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {folder} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
