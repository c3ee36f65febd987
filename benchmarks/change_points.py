"""Does fleet.judge.trends find real steps and leave noise alone? Simulated histories built from real noise.

Bars (issue 5): >= 95 % of planted 5 % steps found within 3 points of where they were planted, and
<= 1 % false change points per 100-point series. Beside them, how often the range fleet.judge.trends reports
to bisect (ChangePoint.earliest .. latest, PLACE_CREDIBILITY sure) holds the planted step, and its width.

Noise comes from measurements, not from a textbook distribution:
- its shape: the standardised per-run residuals of every metric that varied across the runs recorded
  in baselines/<pool>/*.json (5 to 20 engine starts per cell), resampled with a small smoothing jitter
  (the GPU-bound cell's headline metrics each keep their own runs' shape: a slow start is a spike);
- its size, one noise class per (pool, kind of metric: acceptance, match, latency) in those files,
  the median coefficient of variation of the class's metrics (the range is printed too; the H200's
  GPU-bound 8B-shaped cell is a latency class of its own, "latency-h200-gpu-bound"); and two
  classes from the first H200 measurements (../shared/device/README.md: two fresh engines per
  configuration; a pair's spread is |a - b| / sqrt(2), the class's CV the root mean square):
    readme-acceptance-h200   ngram acceptance length 2.191 / 2.214
    readme-latency-h200      TPOT p50 2.11/2.18 (ref), 2.22/2.13 (ngram), 3.82/4.75 ms (draft_model)

--engine-starts M: each point of a speculative latency class is the median of M draws, as a run of a tier
whose workload sets engine_starts: M reports it (fleet.suite.runner); the oracle's density is that median's.

Usage: python benchmarks/change_points.py [--series 400] [--seed 7] [--engine-starts 1] [--classes NAME ...]
       [--json OUT]
Prints one line per noise class and step size, then whether each bar holds for each class.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import smoothing
from h200_cells import GPU_BOUND_MODEL
from markdown_section import markdown_section

from fleet.judge.change_place import PLACE_CREDIBILITY
from fleet.judge.trends import Settings, detect
from fleet.model.catalog import model_slug
from fleet.model.metrics import metric_info

ROOT = Path(__file__).resolve().parent.parent
LENGTH = 100
WITHIN = 3
STEPS = (0.05, 0.10, 0.20, 0.30)
#: Real H200 pairs (value with engine start a, value with engine start b).
H200_ACCEPTANCE_PAIRS = [(2.191, 2.214)]
H200_LATENCY_PAIRS = [(2.11, 2.18), (2.22, 2.13), (3.82, 4.75)]
#: Baseline files (`<variant>__<model slug>`) of the GPU-bound cell; the tiny-stdlib cells' latency is the
#: host CPU's (h200_cells).
GPU_BOUND_STEM = "__" + model_slug(GPU_BOUND_MODEL)
GPU_BOUND_HEADLINE = ("tpot_p50_ms", "speedup", "reference_tpot_p50_ms")


def pair_cv(pairs: list[tuple[float, float]]) -> float:
    cvs = [abs(a - b) / math.sqrt(2) / ((a + b) / 2) for a, b in pairs]
    return math.sqrt(sum(cv * cv for cv in cvs) / len(cvs))


def recorded_runs() -> dict[str, list[float]]:
    """Per-run values of every (file, metric) that varied across recorded runs."""
    found: dict[str, list[float]] = {}
    for path in sorted((ROOT / "baselines").glob("*/*.json")):
        document = json.loads(path.read_text())
        for metric, entry in document["baselines"].items():
            values = entry.get("values") or []
            # A deterministic metric (CPU acceptance) repeats exactly: no noise to learn from.
            if len(values) >= 3 and float(np.std(values)) > 1e-9 * abs(float(np.mean(values))):
                found[f"{path.parent.name}/{path.stem}:{metric}"] = [float(v) for v in values]
    return found


def residual_shape(runs: dict[str, list[float]]) -> np.ndarray:
    residuals = []
    for values in runs.values():
        array = np.asarray(values)
        residuals.extend((array - array.mean()) / array.std(ddof=1))
    return np.asarray(residuals)


Shape = np.ndarray | None  # a class's own standardised residuals; None: the pooled shape


def noise_classes(runs: dict[str, list[float]]) -> dict[str, tuple[float, str, Shape]]:
    """Class name -> (CV used, where it comes from, its own residual shape if it has one)."""
    grouped: dict[str, list[float]] = {}
    headline: dict[str, tuple[float, str, Shape]] = {}
    for key, values in sorted(runs.items()):
        pool_file, metric = key.split(":")
        info = metric_info(metric)
        kind = info.kind if info else "other"
        cv = float(np.std(values, ddof=1) / abs(np.mean(values)))
        pool = pool_file.split("/")[0]
        # The 8B-shaped cell's latency is the GPU's, the tiny models' the host's: two classes, not one.
        bound = "-gpu-bound" if pool_file.endswith(GPU_BOUND_STEM) else ""
        grouped.setdefault(f"{kind}-{pool}{bound}", []).append(cv)
        # The class median mixes TTFT and the tails (5-13 %) with TPOT p50 (2.7 %) and the non-speculative
        # reference (0.04 %): the headline metrics of the GPU-bound cell are shown on their own as well.
        # They keep their own runs' shape: one whole slow start in twenty (+17 %, evidence/h200/mseries2)
        # is a spike of that size, not a CV spread over every point.
        if bound and metric in GPU_BOUND_HEADLINE:
            headline[f"{metric}-{pool}-gpu-bound"] = (cv, f"{len(values)} runs, their own shape",
                                                      residual_shape({key: values}))
    classes: dict[str, tuple[float, str, Shape]] = {
        name: (float(np.median(cvs)), f"median of {len(cvs)} metrics, CV {min(cvs):.1%}..{max(cvs):.1%}",
               None)
        for name, cvs in sorted(grouped.items())}
    classes.update(headline)
    classes["readme-acceptance-h200"] = (pair_cv(H200_ACCEPTANCE_PAIRS), "1 pair of engine starts", None)
    classes["readme-latency-h200"] = (pair_cv(H200_LATENCY_PAIRS), "3 pairs of engine starts", None)
    return classes


#: The smoothed bootstrap's jitter, in units of the residuals' sd.
JITTER = 0.3


def draw_noise(rng: np.random.Generator, shape: np.ndarray, size: int, starts: int = 1) -> np.ndarray:
    """Smoothed bootstrap of the real residuals, rescaled to unit variance; with `starts` > 1 each point is
    the median of that many independent draws, as a run measured over several engine starts reports its
    latency (Workload.engine_starts; consecutive starts are uncorrelated, benchmarks/judge_power.py)."""
    if starts > 1:
        medians: np.ndarray = np.median(draw_noise(rng, shape, size * starts).reshape(size, starts), axis=1)
        return medians
    draws = rng.choice(shape, size=size) + rng.normal(0.0, JITTER, size=size)
    return draws / math.sqrt(float(np.var(shape, ddof=1)) + JITTER**2)


def noise_log_density(shape: np.ndarray, cv: float, starts: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """The exact log density of cv x draw_noise(shape, starts) (smoothing.log_density)."""
    scale = cv / math.sqrt(float(np.var(shape, ddof=1)) + JITTER**2)
    return smoothing.log_density(shape * scale, JITTER * scale, starts)


def oracle_place(series: np.ndarray, step: float, log_density: Callable[[np.ndarray], np.ndarray]) -> int:
    """Where a step of known size and sign, in noise of known density, most likely lies within WITHIN
    points: the Bayes rule for "found within WITHIN" (uniform prior over the planted range). No detector,
    which knows neither the size nor the noise, places steps better on average: its ceiling."""
    before = log_density(series - 1.0)
    after = log_density(series / (1.0 + step) - 1.0) - math.log(1.0 + step)
    # log L(tau) = sum before[:tau] + sum after[tau:]
    log_l = np.concatenate([[0.0], np.cumsum(before)]) + np.concatenate([np.cumsum(after[::-1])[::-1], [0.0]])
    taus = np.arange(10, LENGTH - 10 + 1)
    posterior = np.exp(log_l[taus] - log_l[taus].max())
    window = np.convolve(posterior, np.ones(2 * WITHIN + 1), mode="same")
    return int(taus[int(np.argmax(window))])


def simulate(cv: float, step: float, count: int, rng: np.random.Generator, shape: np.ndarray,
             settings: Settings, starts: int = 1) -> dict[str, float]:
    log_density = noise_log_density(shape, cv, starts)
    oracle = 0
    found = 0
    false_points = 0
    null_series_with_false = 0
    null_false_points = 0
    held = 0
    widths: list[int] = []
    for _ in range(count):
        position = int(rng.integers(10, LENGTH - 10 + 1))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        level = np.ones(LENGTH)
        level[position:] *= 1.0 + sign * step
        series = level * (1.0 + cv * draw_noise(rng, shape, LENGTH, starts))
        points = detect(series.tolist(), settings)
        oracle += abs(oracle_place(series, sign * step, log_density) - position) <= WITHIN
        hits = [p for p in points if abs(p.index - position) <= WITHIN]
        found += bool(hits)
        if points:  # the range to bisect of the point nearest the step: does it hold it, how wide is it
            nearest = min(points, key=lambda p: max(p.earliest - position, position - p.latest, 0))
            held += nearest.earliest <= position <= nearest.latest
            widths.append(nearest.latest - nearest.earliest + 1)
        false_points += len(points) - min(len(hits), 1)
        null = detect((1.0 + cv * draw_noise(rng, shape, LENGTH, starts)).tolist(), settings)
        null_series_with_false += bool(null)
        null_false_points += len(null)
    return {
        "found": found / count,
        "range_holds": held / count,
        "range_width": float(np.mean(widths)) if widths else 0.0,
        "oracle_found": oracle / count,
        "false_per_step_series": false_points / count,
        "null_series_with_false": null_series_with_false / count,
        "false_per_null_series": null_false_points / count,
    }


def medianed(name: str) -> bool:
    """Whether a noise class is the speculative engine's latency, which a run over several engine starts
    reports as their median (the non-speculative reference is started once per run)."""
    return name.startswith(("latency-", "readme-latency-", "tpot_", "speedup-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=400, help="series per noise class and step size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--engine-starts", type=int, default=1,
                        help="engine starts per run (odd): each point of a speculative latency class is the "
                        "median of this many draws (a tier's workload.engine_starts); acceptance, match and "
                        "the one reference start stay single draws, as fleet.suite.runner keeps them")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="only these noise classes (all by default)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write what is printed into this doc, as the section of this command")
    args = parser.parse_args(argv)
    with markdown_section(args.markdown, "change_points", sys.argv[1:] if argv is None else argv):
        return report(parser, args)


def report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.engine_starts < 1 or args.engine_starts % 2 == 0:
        parser.error("--engine-starts takes an odd number (a median of an even number has no simple density)")
    settings = Settings()
    runs = recorded_runs()
    shape = residual_shape(runs)
    classes = noise_classes(runs)
    if args.classes:
        unknown = sorted(set(args.classes) - set(classes))
        if unknown:
            parser.error(f"unknown noise class {', '.join(unknown)}; known: {', '.join(classes)}")
        classes = {name: classes[name] for name in args.classes}
    print(f"settings: min_segment={settings.min_segment} max_pvalue={settings.max_pvalue} "
          f"min_relative_change={settings.min_relative_change}; {args.series} series of {LENGTH} points "
          f"per row; residual shape from {len(shape)} recorded runs ({len(runs)} metrics)")
    rows: list[dict[str, Any]] = []
    for name, (cv, source, _) in classes.items():
        print(f"noise class {name}: CV {cv:.2%} ({source})")
    for name, (cv, _, own) in classes.items():
        rng = np.random.default_rng(args.seed)
        starts = args.engine_starts if medianed(name) else 1
        for step in STEPS:
            figures = simulate(cv, step, args.series, rng, shape if own is None else own, settings, starts)
            rows.append({"noise": name, "cv": cv, "step": step, "engine_starts": starts, **figures})
            print(f"{name:36} cv={cv:6.2%} step={step:4.0%} step/noise={step / cv:5.1f}  "
                  f"found within {WITHIN}: {figures['found']:6.1%} (ceiling {figures['oracle_found']:6.1%})  "
                  f"in its {PLACE_CREDIBILITY:.0%} range: {figures['range_holds']:6.1%} "
                  f"(width {figures['range_width']:4.1f})  "
                  f"false CPs per step series: {figures['false_per_step_series']:.3f}  "
                  f"null series with a false CP: {figures['null_series_with_false']:5.1%}")
    print()
    for name in classes:
        five = next(r for r in rows if r["noise"] == name and r["step"] == 0.05)
        nulls = [r for r in rows if r["noise"] == name]
        # Every row draws its own null series from the same noise: pooled, they are one estimate of
        # len(STEPS) x --series series; the worst row's is the largest of len(STEPS) noisy ones.
        pooled = float(np.mean([r["false_per_null_series"] for r in nulls]))
        worst_null = max(r["false_per_null_series"] for r in nulls)
        smallest = next((r["step"] for r in rows if r["noise"] == name and r["found"] >= 0.95), None)
        print(f"{name:36} 5% steps found: {five['found']:.1%} (ceiling {five['oracle_found']:.1%}; "
              f"bar >= 95%: {'met' if five['found'] >= 0.95 else 'NOT met'}); false CPs per null series: "
              f"{pooled:.2%} over {len(nulls) * args.series}, worst row {worst_null:.1%} "
              f"(bar <= 1%: {'met' if pooled <= 0.01 else 'NOT met'}); "
              f"smallest step found >= 95%: {f'{smallest:.0%}' if smallest else f'> {STEPS[-1]:.0%}'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": settings.__dict__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
