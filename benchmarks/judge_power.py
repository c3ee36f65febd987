"""Judge power: false alarms per nightly run and detection of planted regressions, fleet vs the RFC rule.

The question a CI owner asks: if the nightly runs every night, how often does it cry wolf, and does it
catch a 5 % acceptance-length drop or a 10 % TPOT rise? Answered by simulation, both judges scored on the
same simulated runs, with noise fitted from real repeated RunResults (benchmarks/judge_noise.py says how).
Simulated nightly: CELLS cells (profiles assigned round robin) x 6 metrics (acceptance_length,
acceptance_rate, match_rate, tpot_p50_ms, ttft_p50_ms, speedup); each cell's baseline is recorded by
fleet's own `record_baseline` from --baseline-runs simulated runs.
- A/A nightlies: nothing changed; any FAIL is a false alarm (family-wise, per nightly).
- Planted: in PLANTED cells of a nightly, acceptance length -3/-5/-10 % (per-position rates scaled) or
  TPOT +5/+10/+20 % (speedup falls by the TPOT share of e2e). Detection = the planted cell FAILs.
  A miss is either a PASS (a run read well enough to end the cell's reruns) or INCONCLUSIVE after
  --max-runs runs; the table prints both shares.
- --engine-starts M and --latency-noise gpu-bound: see benchmarks/judge_noise.py.
fleet's judge runs as the controller does: judge the cell, rerun it while INCONCLUSIVE up to
--max-runs runs, then judge the whole nightly with Holm. The RFC rule judges one run per cell with
±10 % (acceptance, match) and ±15 % (TPOT, TTFT, speedup) around the baseline's mean.

Usage:  python benchmarks/judge_power.py [--hardware cpu|h200] [--latency-noise own|gpu-bound]
        [--nightlies 200] [--seed 1] [--baseline-runs 10] [--max-runs 5] [--bootstrap shrunk|plain]
        [--latency-metrics p50|all] [--engine-starts 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from h200_cells import GPU_BOUND_MODEL
from judge_noise import (
    REPO,
    YARDSTICK,
    Profile,
    core_of,
    fit_profiles,
    judged,
    latency_row,
    per_run,
    with_gpu_bound_latency,
)
from markdown_section import markdown_section

from fleet.baselines.record import record_baseline
from fleet.judge.decide import ALPHA, decide, family_size_of, gather, pooled_spreads
from fleet.judge.noisy import MIN_PRIOR_CELLS
from fleet.judge.rfc_rule import judge_metric
from fleet.judge.verdicts import CellCase, judge_cells
from fleet.model import (
    Cell,
    Hardware,
    MatchSummary,
    MetricBaseline,
    Provenance,
    RunResult,
    SpecCounters,
    Variant,
    Workload,
)

#: The RFC rule's tolerance, in percent: acceptance and match +-10 %, every latency metric +-15 %.
RFC_COUNTS_TOLERANCE = {"acceptance_length": 10.0, "acceptance_rate": 10.0, "match_rate": 10.0}
RFC_LATENCY_TOLERANCE = 15.0
REGRESSIONS = (
    ("acceptance_length", -0.03),
    ("acceptance_length", -0.05),
    ("acceptance_length", -0.10),
    ("tpot_p50_ms", 0.05),
    ("tpot_p50_ms", 0.10),
    ("tpot_p50_ms", 0.20),
)
BARS = {"false_alarm": 0.01, ("acceptance_length", -0.05): 0.95, ("tpot_p50_ms", 0.10): 0.95}


def make_cell(index: int, hardware: str = "gpu", starts: int = 1) -> Cell:
    return Cell(
        tier="sim-nightly",
        variant=Variant(name=f"sim{index:02d}", method="ngram", num_speculative_tokens=4),
        model="sim/target",
        hardware=Hardware(name=f"sim-{hardware}", vendor="nvidia", gpu_count=1),
        workload=Workload(num_prompts=200, max_tokens=128, engine_starts=starts),
        engine="vllm",
    )


def simulate_run(
    cell: Cell, profile: Profile, rng: np.random.Generator, planted: tuple[str, float] | None
) -> RunResult:
    rates = profile.position_rates.copy()
    if profile.count_sd > 0:
        rates = rates * math.exp(rng.normal(0.0, profile.count_sd))
    tpot_factor = 1.0
    if planted is not None and planted[0] == "acceptance_length":
        length = 1.0 + rates.sum()
        rates = rates * (rates.sum() + planted[1] * length) / rates.sum()
    if planted is not None and planted[0] == "tpot_p50_ms":
        tpot_factor = 1.0 + planted[1]
    drafts = profile.drafts
    accepted = [round(drafts * min(1.0, p)) for p in rates]
    draft_tokens = round(drafts * profile.tokens_per_draft)
    counters = SpecCounters.model_construct(
        num_drafts=drafts,
        num_draft_tokens=draft_tokens,
        num_accepted_tokens=sum(accepted),
        accepted_per_position=accepted,
    )
    pick, row = latency_row(profile, rng)
    rows = profile.residuals
    seen = profile.match_rates
    centre = float(np.mean(seen))
    # The same recorded run's match rate, unless the latency rows are another cell's (--latency-noise
    # gpu-bound): then an independent draw of this cell's own.
    match_pick = pick if len(seen) == len(rows) else rng.integers(len(seen))
    drawn = centre + (seen[match_pick] - centre + rng.normal(0.0, profile.match_jitter)) * profile.match_kept
    match_rate = float(np.clip(drawn, 0.0, 1.0))
    noisy = {m: profile.centres[m] * math.exp(row[i]) for i, m in enumerate(profile.columns)}
    noisy["tpot_p50_ms"] *= tpot_factor
    noisy["speedup"] /= 1.0 + (tpot_factor - 1.0) * profile.tpot_share
    matches = (int(rng.binomial(profile.prompts, match_rate)) if 0 < match_rate < 1
               else round(profile.prompts * match_rate))
    metrics = {"acceptance_length": 1.0 + sum(accepted) / drafts,
               "acceptance_rate": sum(accepted) / draft_tokens, "match_rate": matches / profile.prompts}
    metrics.update(noisy)
    metrics.update({f"acceptance_rate_pos_{i}": a / drafts for i, a in enumerate(accepted)})
    match = MatchSummary.model_construct(num_prompts=profile.prompts, exact_token_matches=matches,
                                         exact_text_matches=None, first_divergence=[])
    return RunResult.model_construct(
        schema_version=1, cell=cell, status="ok", skip_reason=None, error=None,
        provenance=Provenance(fleet_version="sim", engine="sim"), counters=counters, engine_counters=None,
        metrics=metrics, match=match, reference=None, speculative=None)


def trimmed(baseline: Any, metrics: tuple[str, ...]) -> Any:
    """The simulated tier judges `metrics` (6 per cell, 13 with the tails; per-position rates stay, as
    secondary metrics)."""
    keep = {
        k: v for k, v in baseline.baselines.items()
        if k in metrics or k == YARDSTICK or k.startswith("acceptance_rate_pos_")
    }
    return baseline.model_copy(update={"baselines": keep})


def simulated_baseline(cell: Cell, profile: Profile, rng: np.random.Generator, runs: int,
                        metrics: tuple[str, ...]) -> Any:
    """The cell's baseline as fleet's record_baseline writes it, from `runs` simulated runs of `profile`."""
    recorded = [simulate_run(cell, profile, rng, None) for _ in range(runs)]
    return trimmed(record_baseline(recorded, command="sim"), metrics)


def rerun_while_inconclusive(run: Callable[[int], RunResult], baseline: Any, pooled: Any, family: int,
                             max_runs: int) -> list[RunResult]:
    """The candidate runs of one cell as the controller makes them: one, then another while the cell,
    judged as it will be in the whole run, is INCONCLUSIVE, up to max_runs. `run(n)` makes the run that
    follows n others (0: the first attempt)."""
    runs = [run(0)]
    while len(runs) < max_runs:
        [verdicts] = decide([gather(runs, baseline, "auto", pooled, max_runs)], family_size=family)
        if not any(v.status == "INCONCLUSIVE" for v in verdicts):
            break
        runs.append(run(len(runs)))
    return runs


def one_nightly(
    profiles: list[Profile],
    cells: int,
    rng: np.random.Generator,
    args: argparse.Namespace,
    planted: tuple[str, float] | None,
) -> dict[str, Any]:
    prof = [profiles[i % len(profiles)] for i in range(cells)]
    cell_objs = [make_cell(i, p.hardware, p.starts) for i, p in enumerate(prof)]
    baselines = [simulated_baseline(c, p, rng, args.baseline_runs, args.judged.metrics)
                 for c, p in zip(cell_objs, prof, strict=True)]
    targets = set(rng.choice(cells, size=args.planted, replace=False).tolist()) if planted else set()
    family = family_size_of(baselines)
    pooled = pooled_spreads(baselines)
    candidates: list[list[RunResult]] = []
    for i, (cell, profile, baseline) in enumerate(zip(cell_objs, prof, baselines, strict=True)):
        def run(_: int, cell: Cell = cell, profile: Profile = profile,
                plant: tuple[str, float] | None = planted if i in targets else None) -> RunResult:
            return simulate_run(cell, profile, rng, plant)

        candidates.append(rerun_while_inconclusive(run, baseline, pooled, family, args.max_runs))
    cases = [
        CellCase(runs[-1], b, None, None, len(runs), None, None, tuple(runs))
        for runs, b in zip(candidates, baselines, strict=True)
    ]
    fleet = [v.status for v in judge_cells(cases, alpha=ALPHA, max_runs=args.max_runs)]
    rfc = []
    for runs, baseline in zip(candidates, baselines, strict=True):
        first = runs[0]
        failed = any(
            judge_metric(
                m,
                first.metrics[m],
                MetricBaseline(expected=baseline.baselines[m].expected,
                               tolerance_pct=RFC_COUNTS_TOLERANCE.get(m, RFC_LATENCY_TOLERANCE)),
            ).status
            == "FAIL"
            for m in args.judged.metrics
        )
        rfc.append("FAIL" if failed else "PASS")
    return {"targets": sorted(targets), "fleet": fleet, "rfc": rfc, "runs": [len(r) for r in candidates]}


def detectable_change(sd: float, args: argparse.Namespace, family: int, dof: float, record: Any,
                      log_scale: bool = False) -> float:
    """The relative change the best-run test (fleet.judge.best_run) catches with 95 % power at the last
    look, the core spread `sd` known to `dof` degrees of freedom and slow starts as `record` (a
    fleet.judge.best_run.SlowRecord) has them: every candidate run must pass the edge where the p of a
    FAIL reaches the Holm step's first threshold. A bound set by the noise, not the judge (`log_scale`:
    the change in log units instead; inf: no change can)."""
    from scipy.stats import norm

    from fleet.judge.best_run import CoreModel
    from fleet.judge.noisy import look_share

    core = CoreModel(0.0, max(sd, 1e-9), args.baseline_runs, float(dof), record)
    edge = core.bound(ALPHA * look_share(args.max_runs, args.max_runs) / family, args.max_runs)
    shift = edge + max(sd, 1e-9) * float(norm.ppf(0.95 ** (1.0 / args.max_runs)))
    return shift if log_scale else math.expm1(shift) if math.isfinite(shift) else math.inf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nightlies", type=int, default=200, help="A/A nightlies (and planted ones per regression / 4)"
    )
    parser.add_argument("--cells", type=int, default=42)
    parser.add_argument(
        "--planted", type=int, default=4, help="cells with the planted regression per nightly"
    )
    # What docs/operating.md asks of a GPU pool's baselines: ten runs over several nodes (with five, one
    # slow or odd engine start among them sets a cell's spread; baselines/h200 holds 15).
    parser.add_argument("--baseline-runs", type=int, default=10)
    parser.add_argument("--max-runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    default_data = [REPO / "evidence" / "cpu", REPO / "evidence" / "h200"]
    parser.add_argument("--data", type=Path, nargs="*", default=default_data)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--hardware", default=None, help="only profiles recorded on this hardware: cpu, h200")
    parser.add_argument(
        "--latency-noise", choices=("own", "gpu-bound"), default="own",
        help="own: each cell's latency noise as measured; gpu-bound: the measured cells' acceptance with the "
        "latency noise of the pool's GPU-bound (8B-shaped) cell, as the nightly tier's 8B-class targets have",
    )
    parser.add_argument(
        "--bootstrap", choices=("shrunk", "plain"), default="shrunk",
        help="shrunk: simulated runs spread as the recorded ones (Silverman's variance-preserving smoothed "
        "bootstrap); plain: the smoothing jitter added on top (about 45 %% more variance at 10 runs)",
    )
    parser.add_argument(
        "--latency-metrics", choices=("p50", "all"), default="p50",
        help="p50: TPOT and TTFT p50 and speedup, the issue's 6 metrics per cell; all: the tails a real "
        "nightly judges too (TPOT and TTFT p90/p99, e2e p50/p90/p99)",
    )
    parser.add_argument(
        "--engine-starts", type=int, default=1,
        help="engine starts per run (a tier's workload.engine_starts): each simulated run's latency is the "
        "median of this many independent draws of one start's",
    )
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write what is printed into this doc, as the section of this command")
    args = parser.parse_args(argv)
    with markdown_section(args.markdown, "judge_power", sys.argv[1:] if argv is None else argv):
        return report(args)


def report(args: argparse.Namespace) -> int:
    args.judged = judged(args.latency_metrics)
    noisy, metrics = args.judged.noisy, args.judged.metrics
    profiles = fit_profiles([p for p in args.data if p.exists()], args.judged.columns, args.hardware)
    profiles = [replace(p, variance_preserving=args.bootstrap == "shrunk", starts=args.engine_starts)
                for p in profiles]
    if args.latency_noise == "gpu-bound":
        profiles = with_gpu_bound_latency(profiles)
    else:
        # Its acceptance is forced, not measured: it stands in for nothing but latency.
        profiles = [p for p in profiles if p.model != GPU_BOUND_MODEL]
    if not profiles:
        print("no repeated RunResults found under", [str(p) for p in args.data],
              "(with --latency-noise gpu-bound: none of a pool that also has >= 3 runs of",
              GPU_BOUND_MODEL + ")", file=sys.stderr)
        return 2
    print(f"noise model (fitted from real runs; {args.bootstrap} smoothed bootstrap):")
    for p in profiles:
        sds = ", ".join(f"{m} {100 * p.residuals[:, i].std(ddof=1):.1f}%" for i, m in enumerate(noisy))
        print(
            f"  {p.source}: {p.runs} runs; AL {1 + p.position_rates.sum():.3f} between-run sd "
            f"{100 * p.count_sd:.2f}%; log sd {sds}; nightly-scaled {p.drafts} drafts, {p.prompts} prompts"
        )
    family = args.cells * len(metrics)
    alone = args.baseline_runs - 1  # the cell's own recorded runs set the spread (fleet.judge.noisy)
    # The cells' spreads agree: the prior, fitted to the pool's other cells, is at its strongest.
    prof = [profiles[i % len(profiles)].hardware for i in range(args.cells)]  # as one_nightly deals them
    per_pool = min(prof.count(hardware) for hardware in set(prof))
    pooled = per_pool * alone  # the other cells' dof (the prior's cap) and the cell's own
    bounds = [(f"each cell alone, dof {alone}", alone)]
    if per_pool - 1 >= MIN_PRIOR_CELLS:  # enough other cells on the pool for a prior
        bounds.append((f"spreads moderated by {per_pool - 1} like cells, dof {pooled}", pooled))
    each = f" (each the median of {args.engine_starts} engine starts)" if args.engine_starts > 1 else ""
    print(f"\nsmallest change a noisy metric can be caught at 95 % power, with {args.max_runs} candidate "
          f"runs{each} against {args.baseline_runs} recorded and Holm over {family} tests (first step, at "
          "the last look), the core spread (slow starts set aside) known to dof degrees of freedom and slow "
          "starts at the rate the judge's pool would estimate (fleet.judge.best_run):")
    from fleet.judge.best_run import SlowRecord

    def pool_rate(share: float, cells: int) -> SlowRecord:
        return SlowRecord(round(share * cells * args.baseline_runs), cells * args.baseline_runs,
                          args.engine_starts)

    spreads = [per_run(p, np.random.default_rng(args.seed)) for p in profiles]
    for p, spread in zip(profiles, spreads, strict=True):
        cores = [core_of(spread, i) for i in range(len(noisy))]
        print(f"  {p.source}: core sd / slow starts " + ", ".join(
            f"{m} {100 * sd:.1f}% / {100 * share:.0f}%" for m, (sd, share) in zip(noisy, cores, strict=True)))
        for label, dof in bounds:
            cells = 1 if dof == alone else per_pool
            limits = ", ".join(
                f"{m} {100 * detectable_change(sd, args, family, dof, pool_rate(share, cells)):.0f}%"
                for m, (sd, share) in zip(noisy, cores, strict=True))
            print(f"    ({label}): {limits}")
    tpot_share = max(core_of(spread, 0)[1] for spread in spreads)
    for label, dof in bounds:
        rate = pool_rate(tpot_share, 1 if dof == alone else per_pool)
        needed = math.log(1.10) / detectable_change(1.0, args, family, dof, rate, log_scale=True)
        print(f"  catching TPOT +10 % at that power needs a core sd <= {100 * needed:.1f}% ({label}, "
              f"slow starts {100 * rate.rate:.1f}%)")
    rng = np.random.default_rng(args.seed)
    out: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "profiles": [p.source for p in profiles],
    }
    aa = [one_nightly(profiles, args.cells, rng, args, None) for _ in range(args.nightlies)]
    rows: list[tuple[str, float, float, float, str]] = [
        (
            "A/A: family-wise false alarm per nightly",
            float(np.mean([any(s == "FAIL" for s in n["fleet"]) for n in aa])),
            float(np.mean([any(s == "FAIL" for s in n["rfc"]) for n in aa])),
            float(np.mean([np.mean(n["runs"]) for n in aa])),
            "<= 1 %",
        )
    ]
    # INCONCLUSIVE once the reruns are spent exits 4 (fleet.judge.verdicts): it fails a CI gate too.
    rows.append(("A/A: nightly exits non-zero (FAIL or INCONCLUSIVE)",
                 float(np.mean([any(s in ("FAIL", "INCONCLUSIVE") for s in n["fleet"]) for n in aa])),
                 float(np.mean([any(s == "FAIL" for s in n["rfc"]) for n in aa])),
                 float(np.mean([np.mean(n["runs"]) for n in aa])), "<= 1 %"))
    inconclusive = np.mean([np.mean([s == "INCONCLUSIVE" for s in n["fleet"]]) for n in aa])
    missed: dict[str, dict[str, float]] = {}
    for metric, change in REGRESSIONS:
        planted_runs = [
            one_nightly(profiles, args.cells, rng, args, (metric, change))
            for _ in range(max(1, args.nightlies // 4))
        ]
        label = f"detect {metric} {change:+.0%}"
        statuses = [n["fleet"][t] for n in planted_runs for t in n["targets"]]
        fleet_hits = [s == "FAIL" for s in statuses]
        # Where the misses are: passed (a run read well enough to stop the reruns) or still unsure after them.
        missed[label] = {"missed_pass": statuses.count("PASS") / len(statuses),
                         "missed_inconclusive": statuses.count("INCONCLUSIVE") / len(statuses)}
        rfc_hits = [n["rfc"][t] == "FAIL" for n in planted_runs for t in n["targets"]]
        runs = [n["runs"][t] for n in planted_runs for t in n["targets"]]
        bar = BARS.get((metric, change))
        rows.append(
            (
                label,
                float(np.mean(fleet_hits)),
                float(np.mean(rfc_hits)),
                float(np.mean(runs)),
                f">= {bar:.0%}" if bar else "",
            )
        )
    print(
        f"\n{args.nightlies} A/A nightlies of {args.cells} cells x {len(metrics)} metrics; baselines from "
        f"{args.baseline_runs} runs{each}; fleet reruns INCONCLUSIVE cells up to {args.max_runs} runs; "
        f"{args.planted} planted cells per regression nightly"
    )
    print(f"{'':46s} {'fleet':>8s} {'RFC ±10/15%':>12s} {'runs/cell':>10s} {'missed: PASS/INC':>17s}  bar")
    for label, fleet_share, rfc_share, runs_per_cell, wanted in rows:
        split_text = "/".join(f"{100 * m:.1f}%" for m in missed.get(label, {}).values())
        print(f"{label:46s} {100 * fleet_share:7.1f}% {100 * rfc_share:11.1f}% {runs_per_cell:10.2f} "
              f"{split_text:>17s}  {wanted}")
    print(f"A/A cells left INCONCLUSIVE after reruns: {100 * inconclusive:.2f}%")
    columns = ("what", "fleet", "rfc", "runs_per_cell", "bar")
    out["rows"] = [dict(zip(columns, r, strict=True)) | missed.get(r[0], {}) for r in rows]
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
