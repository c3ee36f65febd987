"""Train an EAGLE(-1) head for the bundled tiny-stdlib target (vLLM's EagleLlamaForCausalLM layout).

Usage (repo root; a GPU if there is one, else CPU):
    python scripts/train_eagle1.py --out fleet/assets/tiny-stdlib/eagle [--steps 2500] [--seed 0]
    python scripts/train_eagle1.py --out /tmp/smoke --sequences 8 --new-tokens 16 --steps 3 --batch 4

What it does, and why (the data and schedule are scripts/train_eagle3.py's, imported from it):
- Corpus and data: 64-token windows of the stdlib files the target trained on (the 60 held-out files,
  the source of prompts.json, excluded), continued greedily by the target for 192 tokens: the head
  learns the target's own greedy outputs, the workload it drafts for.
- Head: fleet.suite.engines._eagle1.Eagle1Head (the module the reference engine drafts with): fc over
  [embed(token at p+1), target's last hidden state at p] (after the final norm: the state vLLM hands an
  EAGLE-1 drafter), one decoder layer without input norm, no final norm; embed_tokens and lm_head are
  the target's, frozen, and not saved (vLLM 0.26.0 shares them).
- Loss, EAGLE-1's: smooth-L1 regression of the next feature (the target's hidden state at p+1) plus
  `--w-cls` x cross-entropy of lm_head(prediction) against the target's distribution at p+1, with a
  training-time-test unroll over `--ttt` draft steps (step s fed the head's own output of step s-1 and
  attending to the target-state keys up to its anchor plus its own chain, as at draft position s),
  step s weighing 0.8**(s-1).
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
from train_eagle3 import seeded_training_data, ttt_mask
from transformers import DynamicCache

from fleet.suite.engines._eagle1 import build_head, checkpoint_config, save_head


@torch.no_grad()
def final_states(target: Any, data: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The target's last hidden state (after its final norm) at every position but the last, bf16."""
    out = []
    for i in range(0, len(data), 64):
        states = target(input_ids=data[i : i + 64, :-1].to(device), output_hidden_states=True).hidden_states
        out.append(states[-1].to(torch.bfloat16))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fleet/assets/tiny-stdlib/eagle")
    parser.add_argument("--target", default="bundled:tiny-stdlib/target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequences", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ttt", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--w-cls", type=float, default=0.1, help="EAGLE-1's weight of the token loss")
    parser.add_argument("--new-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    started = time.time()
    device, target, _, data = seeded_training_data(args, started)
    target.requires_grad_(False)

    raw_config = checkpoint_config(target.config)
    head = build_head(raw_config).to(device)
    embed, lm_head = target.get_input_embeddings(), target.get_output_embeddings()
    feats_all = final_states(target, data, device)
    print(f"target states cached, {time.time() - started:.0f} s", flush=True)
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
        feats = feats_all[picked].float()
        tokens = embed(batch[:, 1 : length + 1])
        hidden = feats[:, :length]
        # Position p reads the token at p + 1 and is taught the target's state and distribution there.
        goal = feats[:, 1 : length + 1]
        with torch.no_grad():
            teacher = torch.log_softmax(lm_head(goal), dim=-1)
        cache = DynamicCache(config=head.config)
        loss = torch.zeros((), device=device)
        accuracy = []
        for s in range(1, args.ttt + 1):
            out = head(tokens, hidden, positions, masks[s - 1], cache)
            logits = torch.log_softmax(lm_head(out), dim=-1)
            valid = slice(s - 1, None)
            regression = torch.nn.functional.smooth_l1_loss(out[:, valid], goal[:, valid])
            token_loss = -(teacher[:, valid].exp() * logits[:, valid]).sum(-1).mean()
            loss = loss + 0.8 ** (s - 1) * (regression + args.w_cls * token_loss)
            hits = logits[:, valid].argmax(-1) == teacher[:, valid].argmax(-1)
            accuracy.append(float(hits.float().mean()))
            hidden = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)
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
    save_head(head, raw_config, folder)
    summary = {"args": vars(args), "device": str(device), "torch": torch.__version__,
               "data_shape": list(data.shape), "seconds": round(time.time() - started, 1), "log": log}
    (folder / "train_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {folder} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
