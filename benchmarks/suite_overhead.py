"""What the suite costs on top of vLLM itself: engine starts, wall time per cell, warm vs cold starts.

Three questions, answered from a real run of scripts/h200_run.sh on the GPU machine:
1. Engine starts per model per run: the runner must start one reference engine per model and one
   speculative engine per variant, never more (bar: starts <= 1 + number of variants).
2. Suite wall time per cell against a bare script doing the same vLLM work (the same `LLM(...)`,
   warm-up, batch and single requests, one process per configuration, no fleet engine, runner or
   JSON round trips): bar <= 1.2x.
3. Engine start with a cold compile cache (first start on a fresh machine) against a warm one.

Usage (on the GPU machine, from the repo root, vLLM importable):
    python benchmarks/suite_overhead.py bare --cell CELL.json --phase reference --out BARE.json
and anywhere, on the folder the driver filled:
    python benchmarks/suite_overhead.py analyze WORKDIR --out overhead.json
    python benchmarks/suite_overhead.py show RESULT.json          # one line per RunResult
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BAR_WALL_RATIO = 1.2


def bare(cell_path: Path, phase: str, out: Path) -> None:
    """The same vLLM work as one suite child, written as a user would write it."""
    started = time.perf_counter()
    from fleet.model import Cell
    from fleet.suite.model_refs import resolve_model
    from fleet.suite.prompts import load_prompts, load_warmup_prompts

    cell = Cell.model_validate_json(cell_path.read_text())
    prompts, warmup = load_prompts(cell.workload), load_warmup_prompts(cell.workload)
    from vllm import LLM, SamplingParams

    imported = time.perf_counter()
    spec = None
    if phase == "speculative":
        variant = cell.variant
        spec = {"method": variant.method, "num_speculative_tokens": variant.num_speculative_tokens,
                **variant.options}
        draft = cell.draft_model or variant.draft_model
        if draft:
            spec["model"] = resolve_model(draft)
    llm = LLM(model=resolve_model(cell.model), speculative_config=spec, disable_log_stats=False,
              **cell.engine_options)
    ready = time.perf_counter()
    params = SamplingParams(temperature=0.0, max_tokens=cell.workload.max_tokens, ignore_eos=True)
    llm.generate(warmup, params, use_tqdm=False)
    llm.generate(prompts, params, use_tqdm=False)
    for prompt in prompts[:16]:
        llm.generate([prompt], params, use_tqdm=False)
    done = time.perf_counter()
    out.write_text(json.dumps({"phase": phase, "cell": cell.id, "import_s": imported - started,
                               "init_s": ready - imported, "generate_s": done - ready,
                               "in_process_s": done - started}))
    sys.stdout.flush()
    import os

    os._exit(0)  # as the suite's child does: do not wait for vLLM's shutdown


def show(path: Path) -> str:
    doc = json.loads(path.read_text())
    if doc["status"] != "ok":
        error = doc.get("error") or {}
        return f"{doc['cell']['id']}: {doc['status']} {doc.get('skip_reason') or error.get('message')}"
    metrics, counters = doc["metrics"], doc.get("counters") or {}
    own = (doc.get("engine_counters") or {}).get("vllm_reported")
    same = own == counters if own is not None else None
    starts = (doc["reference"].get("engine_start_s"), doc["speculative"].get("engine_start_s"))
    return (f"{doc['cell']['id']}: AL {metrics.get('acceptance_length', float('nan')):.4f} "
            f"counters {counters} equal-vllm {same} speedup {metrics.get('speedup', float('nan')):.3f} "
            f"match {metrics.get('match_rate', float('nan')):.2f} starts {starts} "
            f"reused {doc['reference'].get('reused_from') is not None}")


def _timing(workdir: Path) -> list[dict[str, Any]]:
    rows = []
    path = workdir / "timing.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        kind, replicate, name, start, end, code = line.split("\t")
        rows.append({"kind": kind, "replicate": replicate, "name": name, "wall_s": float(end) - float(start),
                     "rc": int(code)})
    return rows


def _results(workdir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """RunResults by replicate: WORKDIR/<replicate>/results/*.json (the driver) or runs/<replicate>/*.json."""
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for path in sorted([*workdir.glob("r*/results/*.json"), *workdir.glob("runs/r*/*.json")]):
        replicate = path.parent.parent.name if path.parent.name == "results" else path.parent.name
        found[replicate][path.stem] = json.loads(path.read_text())
    return found


def engine_starts(workdir: Path) -> list[dict[str, Any]]:
    """Per replicate and model: engines the suite started (a reference not reused, each speculative run).

    Counted from the RunResults; the driver's keep folders (one per child process) agree where present.
    """
    rows = []
    for replicate, docs in sorted(_results(workdir).items()):
        per_model: dict[str, dict[str, Any]] = defaultdict(lambda: {"starts": 0, "variants": set()})
        for doc in docs.values():
            if doc["status"] != "ok":
                continue
            model = doc["cell"]["id"].split("__")[1]
            per_model[model]["variants"].add(doc["cell"]["variant"]["name"])
            per_model[model]["starts"] += 1 + (doc["reference"].get("reused_from") is None)
        keep = workdir / replicate / "keep"
        launches = [p.name for p in keep.iterdir()] if keep.is_dir() else None
        for model, seen in sorted(per_model.items()):
            bar = 1 + len(seen["variants"])
            processes = None if launches is None else sum(
                f"__{model}__" in name and ("-reference-" in name or "-speculative-" in name)
                for name in launches)
            rows.append({"replicate": replicate, "model": model, "engine_starts": seen["starts"],
                         "engine_processes_seen": processes, "variants": len(seen["variants"]), "bar": bar,
                         "ok": seen["starts"] <= bar})
    return rows


def wall_ratio(workdir: Path) -> dict[str, Any]:
    """Suite wall time of each cell that ran its own reference, against bare reference + speculative."""
    timing = _timing(workdir)
    bare_rows = [row for row in timing if row["kind"] == "bare" and row["rc"] == 0]
    by_phase = {row["name"].rsplit(":", 1)[1]: row for row in bare_rows}
    if {"reference", "speculative"} - set(by_phase):
        return {"measured": False}
    cell = bare_rows[0]["name"].rsplit(":", 1)[0]
    bare_total = by_phase["reference"]["wall_s"] + by_phase["speculative"]["wall_s"]
    suite = [row for row in timing if row["kind"] == "suite" and row["name"] == cell and row["rc"] == 0]
    ratios = [{"replicate": row["replicate"], "suite_wall_s": round(row["wall_s"], 2),
               "ratio": round(row["wall_s"] / bare_total, 3)} for row in suite]
    warm = [r["ratio"] for r in ratios if r["replicate"] != "r1"]
    return {"measured": True, "cell": cell, "bare_reference_s": round(by_phase["reference"]["wall_s"], 2),
            "bare_speculative_s": round(by_phase["speculative"]["wall_s"], 2),
            "bare_total_s": round(bare_total, 2), "suite": ratios, "warm_median_ratio":
            round(statistics.median(warm), 3) if warm else None, "bar": BAR_WALL_RATIO,
            "ok": bool(warm) and statistics.median(warm) <= BAR_WALL_RATIO}


def start_times(workdir: Path) -> list[dict[str, Any]]:
    """Engine start (LLM(...) construction) per configuration: replicate r1 is cold, later ones warm."""
    rows = []
    for replicate, docs in sorted(_results(workdir).items()):
        for cell_id, doc in sorted(docs.items()):
            if doc["status"] != "ok":
                continue
            for phase in ("reference", "speculative"):
                measurement = doc[phase]
                if phase == "reference" and measurement.get("reused_from"):
                    continue
                rows.append({"replicate": replicate, "cell": cell_id, "phase": phase,
                             "engine_start_s": round(measurement["engine_start_s"], 2)})
    return rows


def analyze(workdir: Path, out: Path) -> None:
    starts = start_times(workdir)
    cold = defaultdict(list)
    for row in starts:
        key = f"{row['cell'].split('__')[1]}:{row['phase'] if row['phase'] == 'reference' else row['cell']}"
        cold[key].append((row["replicate"], row["engine_start_s"]))
    summary = {key: {"cold_r1_s": next((v for r, v in values if r == "r1"), None),
                     "warm_median_s": round(statistics.median([v for r, v in values if r != "r1"]), 2)
                     if any(r != "r1" for r, _ in values) else None}
               for key, values in sorted(cold.items())}
    report = {"engine_starts": engine_starts(workdir), "wall_ratio": wall_ratio(workdir),
              "engine_start_s": starts, "cold_vs_warm": summary,
              "timing": _timing(workdir)}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("engine_starts", "wall_ratio", "cold_vs_warm")}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("bare")
    one.add_argument("--cell", type=Path, required=True)
    one.add_argument("--phase", choices=("reference", "speculative"), required=True)
    one.add_argument("--out", type=Path, required=True)
    many = sub.add_parser("analyze")
    many.add_argument("workdir", type=Path)
    many.add_argument("--out", type=Path, required=True)
    view = sub.add_parser("show")
    view.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "bare":
        bare(args.cell, args.phase, args.out)
    elif args.command == "analyze":
        analyze(args.workdir, args.out)
    else:
        for path in args.results:
            print(show(path))


if __name__ == "__main__":
    main()
