"""A nightly on a host unlike its baseline's: do reruns that stay on that host cry wolf, and reruns that move?

On the seventh H200 lease (evidence/h200/pinseries2) the same vLLM ran the GPU-bound cell with TPOT p50
+5 % and p90 +18 % over the two hosts its baseline was recorded on (mseries, mseries2), with the
non-speculative reference only +2.4 %. Nothing changed but the host, so every FAIL there is a false
alarm. The judge reruns an INCONCLUSIVE cell and decides on its best run, which assumes the reruns are
independent engine starts; a rerun loop kept on one host is not. On Kubernetes a rerun now prefers a
node the cell has not run on (fleet.plan.render._away_from). This benchmark shows what that buys.

Simulated A/A nightlies (benchmarks/judge_power.py's machinery: CELLS cells of the measured H200 cells'
acceptance with the GPU-bound cell's latency; each baseline recorded by fleet's record_baseline from
--baseline-runs runs drawn from the baseline's hosts). Every cell's first attempt runs on the other host,
a run drawn from the 22 recorded there (smoothed bootstrap, as judge_power draws). Its reruns either stay
on that host (a pool of one node, the local backend, or no node preference) or move to the baseline's
hosts (the kube backend's preference, on a pool with other nodes free). Both rows run on the same seed.

Usage: python benchmarks/host_shift.py [--nightlies 20] [--latency-metrics p50|all] [--seed 2]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import judge_noise as jn
import judge_power as jp
import numpy as np

from fleet.judge.decide import ALPHA, family_size_of, pooled_spreads
from fleet.judge.verdicts import CellCase, judge_cells
from fleet.model import Cell, RunResult

OTHER_HOST = jn.REPO / "evidence" / "h200" / "pinseries2"


def profiles(baseline_hosts: Path, other_host: Path,
             judged: jn.Judged) -> tuple[list[jn.Profile], list[jn.Profile]]:
    """(the measured H200 cells with the GPU-bound cell's latency on the baseline's hosts, the same cells
    with the latency of the other host's runs)."""
    home = jn.with_gpu_bound_latency(jn.fit_profiles([baseline_hosts], judged.columns))
    runs = [RunResult.model_validate_json(path.read_bytes()) for path in sorted(other_host.glob("*/*.json"))]
    host = jn.fit_profile(other_host.name, runs, 1.0, 1.0, judged.columns)
    away = [replace(p, source=f"{p.source}, latency on {host.source}", centres=host.centres,
                    residuals=host.residuals, bandwidth=host.bandwidth) for p in home]
    return home, away


def nightly(home: list[jn.Profile], away: list[jn.Profile], reruns_stay: bool, rng: np.random.Generator,
            args: argparse.Namespace) -> tuple[bool, list[int], int, Counter[str]]:
    """(any FAIL, runs per cell, cells left INCONCLUSIVE, FAILs by metric) of one A/A nightly."""
    dealt = [i % len(home) for i in range(args.cells)]
    cells = [jp.make_cell(i, home[p].hardware) for i, p in enumerate(dealt)]
    baselines = [jp.simulated_baseline(cell, home[p], rng, args.baseline_runs, args.judged.metrics)
                 for cell, p in zip(cells, dealt, strict=True)]
    family, pooled = family_size_of(baselines), pooled_spreads(baselines)
    candidates = []
    for cell, p, baseline in zip(cells, dealt, baselines, strict=True):
        def run(n: int, cell: Cell = cell, p: int = p) -> RunResult:
            """The first attempt on the other host; each rerun there too, or on the baseline's hosts."""
            return jp.simulate_run(cell, (away if n == 0 or reruns_stay else home)[p], rng, None)

        candidates.append(jp.rerun_while_inconclusive(run, baseline, pooled, family, args.max_runs))
    cases = [CellCase(runs[-1], b, None, None, len(runs), None, None, tuple(runs))
             for runs, b in zip(candidates, baselines, strict=True)]
    verdicts = judge_cells(cases, alpha=ALPHA, max_runs=args.max_runs)
    failing = Counter(m.metric for v in verdicts for m in v.metrics if m.status == "FAIL")
    return (any(v.status == "FAIL" for v in verdicts), [len(r) for r in candidates],
            sum(v.status == "INCONCLUSIVE" for v in verdicts), failing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nightlies", type=int, default=20)
    parser.add_argument("--cells", type=int, default=42)
    parser.add_argument("--baseline-runs", type=int, default=10)
    parser.add_argument("--max-runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--latency-metrics", choices=("p50", "all"), default="all",
                        help="as judge_power's: all judges the tails too, as a real nightly does")
    args = parser.parse_args(argv)
    args.judged = jn.judged(args.latency_metrics)
    home, away = profiles(jn.REPO / "evidence" / "h200", OTHER_HOST, args.judged)
    shift = ", ".join(f"{m} {100 * (away[0].centres[m] / home[0].centres[m] - 1):+.1f}%"
                      for m in args.judged.columns)
    print(f"the other host against the baseline's (geometric means): {shift}")
    print(f"{args.nightlies} A/A nightlies of {args.cells} cells x {len(args.judged.metrics)} metrics, first "
          f"attempts on the other host, baselines of {args.baseline_runs} runs, "
          f"up to {args.max_runs} runs per cell")
    print(f"{'reruns':8s} {'false alarm/nightly':>20s} {'runs/cell':>10s} {'INCONCLUSIVE':>13s}  "
          "FAILs by metric")
    for reruns_stay in (True, False):
        rng = np.random.default_rng(args.seed)
        outcomes = [nightly(home, away, reruns_stay, rng, args) for _ in range(args.nightlies)]
        failing: Counter[str] = sum((o[3] for o in outcomes), Counter())
        print(f"{'stay' if reruns_stay else 'move':8s} {100 * np.mean([o[0] for o in outcomes]):19.1f}% "
              f"{np.mean([r for o in outcomes for r in o[1]]):10.2f} "
              f"{100 * sum(o[2] for o in outcomes) / (args.nightlies * args.cells):12.1f}%  {dict(failing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
