"""The gate's labelled set: real recorded runs with planted regressions, each judged by `fleet judge`.

What a maintainer calls a regression must not exit 0. The set starts from RunResults recorded by real
engines (evidence/cpu, evidence/h200; the runs the shipped baselines/ were recorded from), copies them
unchanged (A/A: must exit 0) and plants into them, consistently with their counters:
- acceptance length -5 / -10 / -13 % (every per-position accepted count scaled down, rounded down, so
  the drop is at least the planted one; acceptance rate and per-position rates follow);
- acceptance rate -13 % (the accepted tokens scaled down);
- match rate halved (half the prompts, rounded down, no longer match);
- TPOT +30 / +100 % (every tpot_* percentile; only cells whose baseline judges TPOT).
Each file is judged alone, as `fleet judge FILE` does (the tier file's rerun budget: a single run of a
five-run budget). tests/judge/test_judge_labelled_set.py asserts the exits; this prints the table.

Usage:  python benchmarks/labelled_set.py
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: One recorded run of every cell that has a baseline in baselines/.
SOURCES = (
    "evidence/cpu/r1/ngram-k4__tiny-stdlib-target__cpu.json",
    "evidence/cpu/r1/draft_model-k4__tiny-stdlib-target__cpu.json",
    "evidence/h200/series/s1/ngram-k4__tiny-stdlib-target__h200.json",
    "evidence/h200/series/s1/draft_model-k4__tiny-stdlib-target__h200.json",
    "evidence/h200/mseries/ms1/draft_model-synthetic-k4__llama-8b-shape-target__h200.json",
)

Document = dict[str, Any]


def _accepted(document: Document, scaled: Callable[[int], int]) -> Document:
    counters = document["counters"]
    drafts = counters["num_drafts"]
    accepted = [scaled(count) for count in counters["accepted_per_position"]]
    counters["accepted_per_position"] = accepted
    counters["num_accepted_tokens"] = sum(accepted)
    metrics = document["metrics"]
    metrics["acceptance_length"] = 1.0 + sum(accepted) / drafts
    metrics["acceptance_rate"] = sum(accepted) / counters["num_draft_tokens"]
    for index, count in enumerate(accepted):
        metrics[f"acceptance_rate_pos_{index}"] = count / drafts
    return document


def acceptance_length_drop(share: float) -> Callable[[Document], Document]:
    def plant(document: Document) -> Document:
        counters = document["counters"]
        total = sum(counters["accepted_per_position"])
        length = 1.0 + total / counters["num_drafts"]
        factor = (length * (1.0 - share) - 1.0) * counters["num_drafts"] / total
        return _accepted(document, lambda count: math.floor(count * factor))
    return plant


def acceptance_rate_drop(share: float) -> Callable[[Document], Document]:
    return lambda document: _accepted(document, lambda count: math.floor(count * (1.0 - share)))


def match_halved(document: Document) -> Document:
    match = document["match"]
    kept = match["exact_token_matches"] // 2
    match["exact_token_matches"] = kept
    if match.get("exact_text_matches") is not None:
        match["exact_text_matches"] = min(match["exact_text_matches"], kept)
    document["metrics"]["match_rate"] = kept / match["num_prompts"]
    return document


def tpot_rise(share: float) -> Callable[[Document], Document]:
    def plant(document: Document) -> Document:
        for name in [n for n in document["metrics"] if n.startswith("tpot_")]:
            document["metrics"][name] *= 1.0 + share
        return document
    return plant


#: (label, plant, the baseline metric the plant needs judged, or None).
PLANTS: tuple[tuple[str, Callable[[Document], Document], str | None], ...] = (
    ("A/A copy", lambda document: document, None),
    ("acceptance_length -5%", acceptance_length_drop(0.05), "acceptance_length"),
    ("acceptance_length -10%", acceptance_length_drop(0.10), "acceptance_length"),
    ("acceptance_length -13%", acceptance_length_drop(0.13), "acceptance_length"),
    ("acceptance_rate -13%", acceptance_rate_drop(0.13), "acceptance_rate"),
    ("match_rate halved", match_halved, "match_rate"),
    ("tpot +30%", tpot_rise(0.30), "tpot_p50_ms"),
    ("tpot +100%", tpot_rise(1.00), "tpot_p50_ms"),
)


def baseline_metrics(source: Document) -> set[str]:
    cell = source["cell"]
    model = cell["model"].replace("bundled:", "").replace("/", "-")
    path = REPO / "baselines" / cell["hardware"]["name"] / f"{cell['variant']['name']}__{model}.json"
    return set(json.loads(path.read_text())["baselines"]) if path.exists() else set()


def cases() -> list[tuple[str, str, Callable[[Document], Document]]]:
    """Every (source file, label, plant) the set holds: every plant into every source whose baseline
    judges the planted metric."""
    out = []
    for source in SOURCES:
        judged = baseline_metrics(json.loads((REPO / source).read_text()))
        out += [(source, label, plant) for label, plant, needs in PLANTS if needs is None or needs in judged]
    return out


def planted_file(source: str, plant: Callable[[Document], Document], folder: Path) -> Path:
    document = plant(json.loads((REPO / source).read_text()))
    path = folder / Path(source).name
    path.write_text(json.dumps(document))
    return path


def judge(path: Path) -> tuple[int, str]:
    """`fleet judge PATH` against the repository's baselines and tier files: (exit code, overall line)."""
    import contextlib
    import io

    from fleet.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["judge", str(path), "--baselines", str(REPO / "baselines"), "--jobs", str(REPO / "jobs")])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 0
    overall = [line for line in out.getvalue().splitlines() if "overall" in line]
    return code, overall[-1] if overall else ""


def main() -> int:
    print(f"{'source':72s} {'plant':24s} exit  verdict")
    with tempfile.TemporaryDirectory() as folder:
        for source, label, plant in cases():
            code, overall = judge(planted_file(source, plant, Path(folder)))
            verdict = overall.rsplit("overall ", 1)[-1] if overall else "?"
            print(f"{source:72s} {label:24s} {code:4d}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
