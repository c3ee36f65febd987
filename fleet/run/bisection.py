"""The bisection's shell: turns each round's runs into attempts on a Backend, and their outcomes back into
samples, until fleet.bisect.search has an answer; then the report, with every measurement and the GPU-hours.

The search itself (fleet.bisect.search) and the statistics (fleet.judge.compare) are pure; this module owns
the machines' side: one cell per commit (made by a `materialise` function: a git worktree for local runs,
an image tag for the cluster, a scenario entry for rehearsals), unique attempt numbers per commit, the
mapping of failures onto "this commit cannot be tested" versus "the machine flaked", and the clock.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleet.backends.base import Attempt, AttemptOutcome, Backend
from fleet.bisect.posterior import start_bisection
from fleet.bisect.search import Bisection
from fleet.bisect.terms import Comparator, FailureKind, Finding, Observation, Run, SearchPolicy, Side
from fleet.errors import ConfigError, InfrastructureError
from fleet.judge.compare import Comparison, Spread, compare
from fleet.model import Baseline, Cell, ResultError
from fleet.model.metrics import metric_info
from fleet.plan.cost import JobSpan

#: Failure reasons that say the commit itself cannot run the cell; anything else is retried as a flake.
UNTESTABLE_REASONS = frozenset({"ImageNotFound", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                "BuildFailure", "ConfigError"})


class UntestableCommit(Exception):
    """Raised by `materialise` or `backend_for` when a commit cannot be run at all (its image could not be
    built): the commit is skipped as untestable, with `reason`, and no Job is made for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RoundLog:
    number: int
    runs: list[Run]
    bracket: tuple[int, int]
    failures: int
    runs_so_far: int
    gpu_hours_so_far: float
    #: Commits found untestable before any run this round (no image, a failed build), their slots re-planned.
    refused: list[str] = field(default_factory=list)


@dataclass
class BisectOutcome:
    commits: list[str]
    metric: str
    bisection: Bisection
    rounds: list[RoundLog] = field(default_factory=list)
    #: Every run's Job span (purpose "bisect"): the cost in the report and in the history.
    spans: list[JobSpan] = field(default_factory=list)

    @property
    def machine_hours(self) -> float:
        return sum(span.hours for span in self.spans)

    @property
    def gpu_hours(self) -> float:
        return sum(span.gpu_hours for span in self.spans)

    @property
    def finding(self) -> Finding:
        assert self.bisection.finding is not None
        return self.bisection.finding


def comparator(metric: str) -> Comparator:
    info = metric_info(metric)
    if info is None:
        raise ConfigError(f"unknown metric {metric!r}", where="--metric",
                          fix="use a metric of `fleet schema result`, e.g. acceptance_length or tpot_p50_ms")
    kind = info.kind

    def judge(a: Sequence[float], b: Sequence[float], magnitude: float, noise: Spread | None) -> Comparison:
        return compare(a, b, magnitude=magnitude, kind=kind, noise=noise)

    return judge


def recorded_noise(baseline: Baseline | None, metric: str) -> Spread | None:
    """The metric's spread over the runs the cell's baseline recorded, relative to their mean (None below
    three runs), handed to the search as its starting noise. (The judge uses the robust sd of the logs of
    the same runs: close to this for TPOT on the GPU-bound cell, smaller for heavy host tails;
    docs/bisecting.md#noise-the-comparison-assumes.)"""
    entry = baseline.baselines.get(metric) if baseline is not None else None
    values = entry.values if entry is not None else None
    if not values or len(values) < 3 or not statistics.fmean(values):
        return None
    return Spread(statistics.stdev(values) / abs(statistics.fmean(values)), len(values) - 1)


def failure_kind(error: ResultError) -> FailureKind:
    if error.category == "config" or error.reason in UNTESTABLE_REASONS:
        return "untestable"
    return "transient"


def observe(outcome: AttemptOutcome, index: int, metric: str) -> Observation:
    error = outcome.error
    if error is not None:
        return Observation(index, None, failure_kind(error), f"{error.reason}: {error.message}")
    result = outcome.result
    if result is None or result.status != "ok":
        why = result.skip_reason if result is not None else "no result"
        return Observation(index, None, "untestable", f"skipped: {why}")
    if metric not in result.metrics:
        return Observation(index, None, "untestable", f"the result has no {metric}")
    return Observation(index, result.metrics[metric])


def run_bisection(
    commits: Sequence[str],
    *,
    metric: str,
    policy: SearchPolicy,
    materialise: Callable[[str], Cell],
    backend_for: Callable[[str], Backend],
    run_id: str,
    waves: int | None = None,
    on_round: Callable[[RoundLog, Bisection], None] | None = None,
    on_start: Callable[[Run, str], None] | None = None,
    noise: Spread | None = None,
) -> BisectOutcome:
    """Drive the search to an answer. `backend_for(sha)` may return one shared backend or one per commit;
    `waves` caps how many distinct backends run at once (None: all of a round's); `noise`: the metric's
    recorded spread for this cell (`recorded_noise`), if its baseline has one."""
    bisection = start_bisection(len(commits), comparator(metric), policy, noise)
    outcome = BisectOutcome(list(commits), metric, bisection)
    attempts_made = [0] * len(commits)
    ready: dict[int, tuple[Cell, Backend]] = {}  # this round's commits, made ready (images built)
    refused: list[str] = []

    def refuses(index: int) -> str | None:
        """Made ready before the round's runs (a commit's image built): the reason if it cannot be."""
        if index not in ready:
            try:
                ready[index] = materialise(commits[index]), backend_for(commits[index])
            except UntestableCommit as err:
                refused.append(commits[index])
                return f"{err.reason}: {err}"
        return None

    try:
        while runs := bisection.next_round(refuses):
            planned: list[tuple[int, Backend, Attempt]] = []
            for run in runs:  # every one of them made ready by `refuses`
                sha = commits[run.commit]
                cell, backend = ready[run.commit]
                attempts_made[run.commit] += 1
                attempt = Attempt(cell, attempts_made[run.commit], f"{run_id}-{sha[:12]}")
                planned.append((run.commit, backend, attempt))
                if on_start is not None:
                    on_start(run, sha)
            try:
                observations = _execute(planned, waves, metric, outcome)
            finally:
                _close_round(ready)
            bisection.record(observations)
            failures = sum(o.failure is not None for o in observations)
            log = RoundLog(bisection.rounds, runs, bisection.bracket(), failures, bisection.runs,
                           outcome.gpu_hours, list(refused))
            refused.clear()
            outcome.rounds.append(log)
            if on_round is not None:
                on_round(log, bisection)
    finally:
        _close_round(ready)
    return outcome


def _close_round(ready: dict[int, tuple[Cell, Backend]]) -> None:
    """The round is over, or cut short: a cluster backend's watch is not kept open for hours."""
    for backend in {id(b): b for _, b in ready.values()}.values():
        backend.close()
    ready.clear()


def _execute(planned: list[tuple[int, Backend, Attempt]], waves: int | None, metric: str,
             outcome: BisectOutcome) -> list[Observation]:
    backends: list[Backend] = []
    for _, backend, _ in planned:
        if all(backend is not seen for seen in backends):
            backends.append(backend)
    size = waves or len(backends) or 1
    index_of = {id(attempt): index for index, _, attempt in planned}
    observations: list[Observation] = []
    for start in range(0, len(backends), size):
        wave = backends[start:start + size]
        for backend in wave:
            backend.submit([a for _, b, a in planned if b is backend])
        for backend in wave:
            for done in backend.outcomes():
                index = index_of.get(id(done.attempt))
                if index is None:
                    raise InfrastructureError(f"backend {backend.name} returned an attempt it was not given")
                cell = done.attempt.cell
                # One cell at many commits: the commit makes each Job's key unique in the history.
                outcome.spans.append(JobSpan(f"{cell.id}@{outcome.commits[index][:12]}", cell.hardware.name,
                                             cell.hardware.gpu_count, done.started_at, done.finished_at,
                                             done.attempt.number, purpose="bisect"))
                observations.append(observe(done, index, metric))
    return observations


# --- the report ---------------------------------------------------------------------------------------


def report_document(outcome: BisectOutcome, *, cell: Cell, backend: str, started: float,
                    price_per_gpu_hour: float | None) -> dict[str, object]:
    bisection, finding, commits = outcome.bisection, outcome.finding, outcome.commits
    measured = []
    for index, record in enumerate(bisection.records):
        if not record.samples and not record.failures:
            continue
        verdict = bisection.classify(index)
        measured.append({
            "index": index, "sha": commits[index], "side": verdict.side.value, "forced": verdict.forced,
            "n": len(record.samples), "values": record.samples,
            "median": statistics.median(record.samples) if record.samples else None,
            "failures": record.failures,
            "vs_good": verdict.against_good.describe() if verdict.against_good else None,
            "vs_bad": verdict.against_bad.describe() if verdict.against_bad else None,
        })
    culprit = None
    if finding.first is not None and finding.last is not None:
        culprit = {"first": commits[finding.first], "last": commits[finding.last],
                   "parent": commits[finding.first - 1], "exact": finding.first == finding.last,
                   "untestable_in_range": [commits[i] for i in range(finding.first, finding.last)]}
    cost = outcome.gpu_hours * price_per_gpu_hour if price_per_gpu_hour is not None else None
    return {
        "schema": "fleet.bisect.search/1", "cell": cell.id, "metric": outcome.metric, "backend": backend,
        "good": commits[0], "bad": commits[-1], "commits_in_range": len(commits) - 1,
        "conclusion": finding.conclusion,
        "status": finding.status, "verified": finding.verified, "reason": finding.reason, "culprit": culprit,
        "evidence": {
            "good_vs_bad": finding.ends.describe() if finding.ends else None,
            "culprit_vs_parent": finding.verification.describe() if finding.verification else None,
        },
        "rounds": bisection.rounds, "runs": bisection.runs,
        "failed_runs": bisection.failed_runs,
        "machine_hours": round(outcome.machine_hours, 4), "gpu_hours": round(outcome.gpu_hours, 4),
        "cost_usd": round(cost, 2) if cost is not None else None,
        "wall_s": round(time.time() - started, 1),
        "slots": bisection.policy.slots, "max_samples": bisection.policy.max_samples,
        "search": bisection.policy.search,
        # The spread the comparisons started from: the cell's baseline (None: the comparison's floors).
        "recorded_noise": {"relative_sd": round(noise.relative_sd, 6), "runs": noise.freedom + 1,
                           "ends_apart_in_sd": round(bisection.magnitude() / noise.relative_sd, 2)
                           if noise.relative_sd > 0 else None}
        if (noise := bisection.recorded_noise) is not None else None,
        "measurements": measured,
    }


#: Ends this many recorded sd apart or fewer: one run places a commit with 99 % certainty only rarely.
FEW_SD_APART = 4.0


def _noise_line(noise: dict[str, object]) -> str:
    line = f"noise: {noise['relative_sd']:.2%} per run, recorded over {noise['runs']} runs in the cell's " \
        "baseline"
    apart = noise.get("ends_apart_in_sd")
    if isinstance(apart, float):
        line += f"; the ends are {apart:.1f} of it apart"
        if apart <= FEW_SD_APART:
            line += " (each commit needs several runs at that distance: expect a long search)"
    return line


def render_text(document: dict[str, object]) -> str:
    lines = [f"===== Bisection of {document['cell']} on {document['metric']}: "
             f"{str(document.get('conclusion', document['status'])).upper()} =====",
             f"range: {str(document['good'])[:12]} (good) .. {str(document['bad'])[:12]} (bad), "
             f"{document['commits_in_range']} commits; {document['slots']} slots per round, "
             f"{document.get('search', 'pinpoint')} search"]
    culprit = document["culprit"]
    if isinstance(culprit, dict):
        if culprit["exact"]:
            lines.append(f"CULPRIT: {culprit['last']} (parent {str(culprit['parent'])[:12]})")
        else:
            lines.append(f"CULPRIT RANGE: {str(culprit['first'])[:12]} .. {str(culprit['last'])[:12]}; "
                         f"untestable: {', '.join(str(s)[:12] for s in culprit['untestable_in_range'])}")
    else:
        lines.append(f"NO CULPRIT: {document['status']}")
    evidence = document["evidence"]
    assert isinstance(evidence, dict)
    noise = document.get("recorded_noise")
    verification = evidence["culprit_vs_parent"]
    lines += [f"  {document['reason']}", f"  good vs bad: {evidence['good_vs_bad']}",
              *([f"  culprit vs parent: {verification}"] if verification is not None else []),
              _noise_line(noise) if isinstance(noise, dict) else
              "noise: no recorded spread; the comparison's floors until the bisection measured its own",
              f"cost: {document['rounds']} rounds, {document['runs']} runs "
              f"({document['failed_runs']} failed), "
              f"{document['gpu_hours']} GPU-hours, {document['machine_hours']} machine-hours"
              + (f", ${document['cost_usd']}" if document["cost_usd"] is not None else ""),
              "measurements (index sha side n median):"]
    measurements = document["measurements"]
    assert isinstance(measurements, list)
    for row in measurements:
        median = f"{row['median']:.6g}" if row["median"] is not None else "-"
        forced = " (forced at the sample cap)" if row["forced"] else ""
        failed = f"  failures: {'; '.join(row['failures'])}" if row["failures"] else ""
        lines.append(f"  {row['index']:>5} {str(row['sha'])[:12]} {row['side']:<10} n={row['n']:<3} "
                     f"{median}{forced}{failed}")
    return "\n".join(lines) + "\n"


def describe_round(log: RoundLog, commits: Sequence[str], bisection: Bisection) -> str:
    what = ", ".join(f"{r.purpose} {commits[r.commit][:10]}" for r in log.runs)
    last_good, first_bad = log.bracket
    left = sum(1 for c in range(last_good + 1, first_bad)
               if bisection.classify(c).side is Side.UNMEASURED)
    refused = f"; {len(log.refused)} could not run (no image or build): " \
        f"{', '.join(sha[:10] for sha in log.refused)}" if log.refused else ""
    return (f"round {log.number}: {what}; {log.failures} failed{refused}; culprit in "
            f"{commits[last_good][:10]}..{commits[first_bad][:10]} ({left} untested between); "
            f"{log.runs_so_far} runs, {log.gpu_hours_so_far:.2f} GPU-h")
