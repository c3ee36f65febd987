"""Build fleet/assets/tiny-stdlib/shared-prefix/prompts.json: prompts that really hit a prefix cache.

Issue 30's prefix-caching cells need prompts whose tokens a prefix cache can serve: five groups, each a
shared context (one bundled tiny-stdlib prompt, 200 tokens: 12 full 16-token KV blocks) followed by a
distinct suffix (a quarter of another bundled prompt, about 50 tokens). Reproducible: a seeded shuffle of
the bundled prompts, no network, no model.

Why not longer: the tiny models were trained on 512-token sequences (scripts/train_tiny_stdlib.py) and
the EAGLE-3 head on 256-token ones, so beyond that their acceptance collapses whatever the engine does
(~700-token prompts measured 1.02 for eagle3 and 1.14 for draft_model on the reference engine), which
would leave a collapse under prefix caching nothing to fall from. Prompt plus 128 generated tokens stay
within 512 positions, far below max_position_embeddings (2048).

Order matters, because the suite measures the FIRST num_prompts prompts and warms up on the LAST
warmup_prompts (fleet/suite/prompts.py): prompts 0-49 are the groups one after another (ten each), so a
small num_prompts still shares a prefix; prompts 50-59 take the groups in turn (g0..g4, g0..g4), so the
last eight, the H200 tier's warm-up, put every group's prefix in the cache before the measurement.

    python scripts/make_shared_prefix_prompts.py           # rewrite the file
    python scripts/make_shared_prefix_prompts.py --check   # exit 1 if the file is not what this builds

Prints, with the bundled tokenizer where transformers is installed, each prompt's length in tokens and the
share of prompt tokens in full blocks of the group's shared prefix (a bound on what a cache can hit).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path

SEED = 30
GROUPS = 5
PER_GROUP = 10  # measured prompts per group (prompts 0-49)
EXTRA_ROUNDS = 2  # then each group once per round (prompts 50-59)
CONTEXT_PROMPTS = 1  # bundled prompts joined into one group's shared prefix
PIECES = 4  # suffixes cut from each remaining bundled prompt
BLOCK = 16  # vLLM's default KV block size

ASSETS = Path(__file__).resolve().parent.parent / "fleet" / "assets" / "tiny-stdlib"
SOURCE = ASSETS / "prompts.json"
TARGET = ASSETS / "shared-prefix" / "prompts.json"


def pieces(text: str, count: int) -> list[str]:
    """A prompt cut into `count` pieces, each at the last newline before an even cut (or at the cut)."""
    cuts = [0]
    for index in range(1, count):
        even = len(text) * index // count
        newline = text.rfind("\n", cuts[-1] + 1, even)
        cuts.append(newline if newline > cuts[-1] else even)
    cuts.append(len(text))
    return [text[start:end] for start, end in itertools.pairwise(cuts)]


def build(source: list[str]) -> list[str]:
    rng = random.Random(SEED)
    order = rng.sample(range(len(source)), len(source))
    contexts = [order[g * CONTEXT_PROMPTS:(g + 1) * CONTEXT_PROMPTS] for g in range(GROUPS)]
    rest = order[GROUPS * CONTEXT_PROMPTS:]
    suffixes = [piece for index in rest for piece in pieces(source[index], PIECES) if piece.strip()]
    needed = GROUPS * (PER_GROUP + EXTRA_ROUNDS)
    if len(suffixes) < needed:
        raise SystemExit(f"{len(suffixes)} suffixes for {needed} prompts: fewer groups or prompts per group")
    rng.shuffle(suffixes)
    prefixes = ["\n".join(source[i] for i in context) + "\n\n" for context in contexts]
    groups = [g for g in range(GROUPS) for _ in range(PER_GROUP)]
    groups += [g for _ in range(EXTRA_ROUNDS) for g in range(GROUPS)]
    return [prefixes[g] + suffixes[n] for n, g in enumerate(groups)]


def report(prompts: list[str]) -> None:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return
    tokenizer = AutoTokenizer.from_pretrained(str(ASSETS / "target"))
    lengths = [len(tokenizer(p).input_ids) for p in prompts]
    shared = 0
    groups = [g for g in range(GROUPS) for _ in range(PER_GROUP)]
    groups += [g for _ in range(EXTRA_ROUNDS) for g in range(GROUPS)]
    for index, prompt in enumerate(prompts):
        ids = tokenizer(prompt).input_ids
        # Another prompt of the same group: what the two have in common is what a cache can share.
        mate = next(other for n, other in enumerate(prompts) if n != index and groups[n] == groups[index])
        mate_ids = tokenizer(mate).input_ids
        common = next((n for n, (a, b) in enumerate(zip(ids, mate_ids, strict=False)) if a != b),
                      min(len(ids), len(mate_ids)))
        shared += (min(common, len(ids) - 1) // BLOCK) * BLOCK
    mean = sum(lengths) / len(lengths)
    print(f"{len(prompts)} prompts, {min(lengths)}-{max(lengths)} tokens (mean {mean:.0f}); "
          f"{shared / sum(lengths):.1%} of prompt tokens in full blocks of a shared prefix")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    prompts = build(json.loads(SOURCE.read_text(encoding="utf-8")))
    text = json.dumps(prompts, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
        if current != text:
            print(f"{TARGET} is not what this script builds: run it without --check", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    report(prompts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
