"""From a run's evidence to verdicts: which rule judges each metric, error control, three values.

Rules per metric (`rule="auto"`):
- the baseline entry has a recorded spread (>= 2 recorded values, or n >= 2 with a std): acceptance and
  match metrics get the count-aware test (fleet.judge.acceptance) when the counts are known, system
  metrics the noisy test (fleet.judge.noisy);
- otherwise (a hand-written Appendix B file, or counts unknown): the RFC's ±tolerance_pct rule.
`rule="rfc"` forces the RFC rule everywhere (on the mean of the candidate runs).

Three values, per statistically judged metric:
- FAIL: its one-sided p of harm (for a noisy metric the p that allows for slow engine starts, best_run.py,
  over its look's share of the budget, noisy.py),
  adjusted over every primary test of the run (Holm by default), is <= ALPHA, and the evidence may fail
  (noisy metrics need three runs and the rank test; see noisy.py);
- PASS: the raw p of harm > SAME_ALPHA, i.e. not even nominally worse at the conventional 5 % level: clearly
  the same (or better; a significant improvement is said in the detail, as a hint to re-record), and for
  an acceptance or match metric a harmful move short of its practical bound (fleet.judge.acceptance:
  a drop the counts cannot yet make significant is not a pass when it is that large);
- INCONCLUSIVE otherwise: suspicious but not proven; the controller reruns the cell (bounded budget).

ALPHA = 0.01 is the family-wise false-alarm rate per run the nightly is held to (a wrong FAIL at most
about once in 100 nightly runs). Per-position acceptance rates are secondary: they are strongly
correlated with acceptance length and exist to say WHERE acceptance broke, so they do not enlarge the
family; they are tested (Holm within the cell) only in a cell where acceptance length or rate already
failed, and pass otherwise. A cell with no real regression therefore fails only through a primary
false alarm, which Holm bounds at ALPHA across the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from fleet.judge.acceptance import COUNT_KINDS, assess_count, candidate_trials, replayed_metrics, role_of
from fleet.judge.assessment import Assessment
from fleet.judge.best_run import SlowRecord, robust_scale
from fleet.judge.multiple import Method, adjust, holm, step_threshold
from fleet.judge.noisy import (
    DEFAULT_MAX_RUNS,
    MIN_RUNS_TO_FAIL,
    SpreadPrior,
    assess_noisy,
    core_log_values,
    fit_prior,
    pooled_log_sd,
    recorded_log_values,
    sample_variance,
)
from fleet.judge.rfc_rule import judge_metric
from fleet.judge.stats import z_for_tail
from fleet.model import Baseline, MetricBaseline, MetricVerdict, RunResult, Status
from fleet.model.metrics import HOST_YARDSTICK, host_sensitive, metric_info

Rule = Literal["auto", "rfc"]
RULES: tuple[Rule, ...] = ("auto", "rfc")
ALPHA = 0.01
SAME_ALPHA = 0.05
#: Metrics whose failure opens the gate for the secondary per-position tests of the same cell.
GATE_METRICS = ("acceptance_length", "acceptance_rate")
#: How far (as a share of a metric's own change, on log scale) the reference must have moved for the
#: host to be the explanation: half, since speculative runs add work the host slows too.
HOST_SHARE = 0.5
#: A final INCONCLUSIVE (exit 4, the rerun budget spent) needs the p of harm adjusted over the run's
#: family at or below this: the nightly's own alpha, because that exit fails the gate as a FAIL does and
#: so must be as rare under "no change". At 0.05 (with the core p alone) a simulated A/A nightly exited
#: non-zero 3 times in 60 (benchmarks/judge_power.py's A/A loop, seed 1); at 0.01, with the slow-start p
#: from three runs on, 2 in 60: one FAIL, which the rule before exit 4 made as well, and one INCONCLUSIVE.
#: Too few nightlies to show the 1 % bar either way.
FINAL_INCONCLUSIVE_ALPHA = 0.01


@dataclass
class CellEvidence:
    """One cell's metrics in baseline order: statistical assessments, or verdicts already final."""

    order: list[str]
    assessments: dict[str, Assessment] = field(default_factory=dict)
    final: dict[str, MetricVerdict] = field(default_factory=dict)


def has_spread(entry: MetricBaseline) -> bool:
    if entry.values is not None and len(entry.values) >= 2:
        return True
    return entry.n is not None and entry.n >= 2 and entry.std is not None


#: A cell among the baselines of a pool: (variant, model).
CellKey = tuple[str, str]


@dataclass(frozen=True)
class PoolSpread:
    """What the run's baselines on one pool say of one metric's spread: the pooled per-run log sd, and
    for a noisy metric the prior that moderates each cell's own, fitted to the other cells (None with too
    few of them; fleet.judge.noisy)."""

    log_sd: float
    priors: Mapping[CellKey, SpreadPrior | None] = field(default_factory=dict)
    #: Every cell's (variance, dof) as the prior's fit takes them.
    samples: tuple[tuple[float, float], ...] = ()
    #: For a noisy metric, how many of the pool's recorded runs were set aside as slow starts, of how
    #: many examined (fleet.judge.best_run.SlowRecord), and the pool's robust spread their test used.
    slow_record: SlowRecord | None = None
    slow_scale: float = 0.0

    def prior_for(self, cell: CellKey) -> SpreadPrior | None:
        """The cell's own prior; for a cell judged against a pool it is not part of, all the pool's cells'."""
        return self.priors[cell] if cell in self.priors else fit_prior(self.samples)


def pool_of(baseline: Baseline) -> str:
    """The pool a baseline's spreads are pooled in: its hardware, and apart from it the cells whose runs are
    each a median over several engine starts (Baseline.engine_starts), which spread less and slow down
    less often than single starts do."""
    starts = baseline.engine_starts or 1
    return baseline.hardware if starts == 1 else f"{baseline.hardware} x{starts} starts"


def pooled_spreads(baselines: Sequence[Baseline]) -> dict[tuple[str, str], PoolSpread]:
    """(pool_of(baseline), metric) -> that metric's spread over the run's cells on that pool."""
    groups: dict[tuple[str, str], list[tuple[CellKey, MetricBaseline]]] = {}
    starts_of: dict[str, int] = {}
    for baseline in baselines:
        starts_of[pool_of(baseline)] = baseline.engine_starts or 1
        for name, entry in baseline.baselines.items():
            cell = (baseline.variant, baseline.model)
            groups.setdefault((pool_of(baseline), name), []).append((cell, entry))
    spreads = {}
    for (hardware, name), members in groups.items():
        entries = [entry for _, entry in members]
        info = metric_info(name)
        if info is not None and info.kind in COUNT_KINDS:
            spreads[(hardware, name)] = PoolSpread(pooled_log_sd([recorded_log_values(e) for e in entries]))
            continue
        better = info.better if info is not None else None
        scale = robust_scale([recorded_log_values(entry) for entry in entries])
        # The pool's record of slow starts first: how many a cell may set aside depends on its rate.
        starts = starts_of[hardware]
        record = sum((core_log_values(entry, better, scale, starts=starts)[1] for entry in entries),
                     SlowRecord(starts=starts))
        # Everything below reads these.
        cores = [core_log_values(entry, better, scale, record, starts=starts) for entry in entries]
        samples = [(cell, sample_variance(logs)) for (cell, _), (logs, _) in zip(members, cores, strict=True)]
        fitted = [(cell, s) for cell, s in samples if s is not None]
        priors = {cell: fit_prior([s for other, s in fitted if other != cell]) for cell, _ in members}
        spreads[(hardware, name)] = PoolSpread(pooled_log_sd([logs for logs, _ in cores]), priors,
                                               tuple(s for _, s in fitted), record, scale)
    return spreads


def settled_by_replay(verdicts: Sequence[MetricVerdict], baseline: Baseline, candidates: Sequence[RunResult],
                      pooled: Mapping[tuple[str, str], PoolSpread]) -> bool:
    """Whether the cell is INCONCLUSIVE only on metrics no rerun can move (fleet.judge.acceptance.replayed):
    the controller stops rerunning it, and its verdict says a larger workload can decide instead."""
    unsure = [v.metric for v in verdicts if v.status == "INCONCLUSIVE"]

    def pool_log_sd(metric: str) -> float:
        spread = pooled.get((pool_of(baseline), metric))
        return spread.log_sd if spread is not None else 0.0

    return bool(unsure) and replayed_metrics(unsure, baseline.baselines, candidates, pool_log_sd) == unsure


def family_size_of(baselines: Sequence[Baseline]) -> int:
    """The primary tests a run over these baselines makes at most: the size of its error-control family.

    A shard of a sharded run, or one cell judged between reruns, passes it to `decide` so it is judged
    as strictly as in the whole run.
    """
    return sum(1 for baseline in baselines for name in baseline.baselines if role_of(name) == "primary")


def gather(results: Sequence[RunResult], baseline: Baseline, rule: Rule = "auto",
           pooled: Mapping[tuple[str, str], PoolSpread] | None = None,
           max_runs: int = DEFAULT_MAX_RUNS) -> CellEvidence:
    """Evidence for every metric the baseline names, from the cell's candidate runs (at least one).

    `pooled` (from `pooled_spreads` over every baseline of the run): the spread of each metric over the
    run's cells on the same pool, which floors a counter's spread and moderates a noisy metric's.
    `max_runs`: where the controller's INCONCLUSIVE loop stops, which sets how the noisy tests spend their
    false-alarm budget over its looks (fleet.judge.noisy).
    """
    none = PoolSpread(0.0)
    if not results:
        raise ValueError("gather needs at least one candidate result")
    evidence = CellEvidence(order=list(baseline.baselines))
    for name, entry in baseline.baselines.items():
        values = [r.metrics.get(name) for r in results]
        present = [float(v) for v in values if v is not None and not math.isnan(v)]
        if len(present) < len(values):
            missing = values[0] if len(results) == 1 else None
            evidence.final[name] = judge_metric(name, missing, entry)
            continue
        info = metric_info(name)
        better = info.better if info is not None else None
        statistical = rule == "auto" and has_spread(entry)
        pool = (pooled or {}).get((pool_of(baseline), name), none)
        if statistical and info is not None and info.kind in COUNT_KINDS:
            if all(candidate_trials(name, r) is not None for r in results) or entry.trials:
                evidence.assessments[name] = assess_count(name, baseline.baselines, results, better,
                                                          pool.log_sd)
                continue
            statistical = False
        if statistical:
            cell = (baseline.variant, baseline.model)
            evidence.assessments[name] = assess_noisy(name, entry, present, better, pool.log_sd,
                                                      pool.prior_for(cell), max_runs, pool.slow_record,
                                                      pool.slow_scale, in_pool=cell in pool.priors,
                                                      starts=baseline.engine_starts or 1)
            continue
        verdict = judge_metric(name, float(np.mean(present)), entry)
        if len(present) > 1:
            verdict = verdict.model_copy(update={"runs": len(present),
                                                 "detail": f"{verdict.detail}; mean of {len(present)} runs"})
        evidence.final[name] = verdict
    _attribute_to_host(evidence)
    return evidence


def _attribute_to_host(evidence: CellEvidence) -> None:
    """A slower host slows the non-speculative reference of the same job too: where the reference moved
    at least HOST_SHARE as far as an absolute latency metric, that metric cannot fail (speedup, a ratio
    within the job, still can). On the H200 the reference got much slower between two leases of the same
    machine type while speedup stayed put (figures: docs/judging.md#host-shift)."""
    reference = evidence.assessments.get(HOST_YARDSTICK)
    if reference is None or reference.expected <= 0 or reference.level <= 0:
        return
    # Levels, not best runs: how far the runs moved as a whole (a best run of a noisy reference says
    # little of where its runs sit).
    host = math.log(reference.level / reference.expected)  # > 0: the host ran the reference slower
    if host <= 0:
        return
    for name, a in list(evidence.assessments.items()):
        if a.role != "primary" or a.kind != "noisy" or not host_sensitive(name) or a.expected <= 0 \
                or a.level <= 0:
            continue
        harm = math.log(a.level / a.expected) * (1.0 if a.better == "lower" else -1.0)
        if harm > 0 and host >= HOST_SHARE * harm:
            why = (f"the same job's non-speculative reference is {100 * math.expm1(host):+.0f}% too "
                   f"({HOST_YARDSTICK}): a slower host, not speculative decoding, is the likely cause")
            evidence.assessments[name] = replace(a, can_fail=False, beyond_bound=False,
                                                 detail=f"{a.detail}; {why}")


def primary_p_values(cells: Sequence[CellEvidence]) -> list[float]:
    """The p each primary test of these cells joins the run's family with (the differential judge's
    tests are controlled together with them: fleet.judge.differential)."""
    return [a.p_fail for cell in cells for a in cell.assessments.values() if a.role == "primary"]


def decide(cells: Sequence[CellEvidence], *, alpha: float = ALPHA, method: Method = "holm",
           family_size: int | None = None, final: bool = False,
           others: Sequence[float] = ()) -> list[list[MetricVerdict]]:
    """Every cell's metric verdicts, with error control over all primary tests of the run.

    `family_size` (>= the primary tests present) makes the control as strict as for a larger run; the
    controller uses it to judge one cell between reruns as it will be judged in the whole run.
    `final`: the run's own verdicts, after which no cell is rerun (the report's; `fleet judge`'s one
    look). Between reruns a metric is INCONCLUSIVE whenever its raw p of harm is SAME_ALPHA or less,
    which asks for another run; once none is coming, INCONCLUSIVE exits non-zero (fleet.judge.verdicts),
    so it must be as rare under "no change" as a FAIL is: a final INCONCLUSIVE needs the p of harm
    adjusted over the run's family to reach FINAL_INCONCLUSIVE_ALPHA, or a count metric's practical bound
    (_final_status). That holds for `fleet judge`'s one look at files too, though fewer runs than the
    budget may be there: with the raw rule a single A/A file of the recorded H200 runs exited 4 for 6 of
    30 of them (evidence/h200/series, mseries, mseries2), a gate no one could trust.
    `others`: the p-values of the run's other tests in the same family (its differential pairs), which
    count towards `family_size`.
    """
    primary = [(i, a) for i, cell in enumerate(cells)
               for a in cell.assessments.values() if a.role == "primary"]
    p_values = [a.p_fail for _, a in primary]
    joined = p_values + list(others)
    padded = joined + [1.0] * max(0, (family_size or 0) - len(joined))
    adjusted_all = adjust(padded, method)
    adjusted = {(i, a.metric): adjusted_all[k] for k, (i, a) in enumerate(primary)}
    # From MIN_RUNS_TO_FAIL runs on, the p that allows for slow engine starts (fleet.judge.best_run), the
    # one a FAIL is decided on: the core p alone read a simulated A/A cell's slow starts (+94 % centre over
    # five runs) as harm and left 2 of 60 A/A nightlies INCONCLUSIVE (benchmarks/judge_power.py's noise,
    # seed 1). Below it no FAIL is possible, and one run cannot be told from one slow start at all (that p
    # never falls under the slow-start rate): there the core p says whether the run is suspicious, so that
    # `fleet judge` of one run with TPOT doubled on the GPU-bound cell is INCONCLUSIVE, not a pass.
    harm_padded = [a.p_harm if a.runs < MIN_RUNS_TO_FAIL else a.p_harm_deciding for _, a in primary] \
        + list(others) + [1.0] * (len(padded) - len(joined))
    harm_adjusted = dict(zip(((i, a.metric) for i, a in primary), adjust(harm_padded, method),
                             strict=False))
    bonferroni = alpha / max(len(padded), 1)
    bonferroni_z = z_for_tail(bonferroni)
    out: list[list[MetricVerdict]] = []
    for index, cell in enumerate(cells):
        verdicts: dict[str, MetricVerdict] = dict(cell.final)
        for name, a in cell.assessments.items():
            if a.role != "primary":
                continue
            adj = adjusted[(index, name)]
            fails = adj <= alpha and a.can_fail
            # The band: how far the raw p had to go (this look's share of its step's threshold).
            z = z_for_tail(a.look_share * (step_threshold(a.p_fail, padded, alpha, method) if fails
                                           else bonferroni))
            harm_adj = harm_adjusted[(index, name)]
            status: Status = _final_status(a, fails, harm_adj) if final else _status(a, fails)
            verdict = _verdict(a, status, adj, z, alpha, method)
            if final and status == "PASS" and a.p_harm <= SAME_ALPHA:
                note = (f"nominally worse (p {a.p_harm:.3g}) after {a.runs} run(s), but not beyond what the "
                        f"run's {len(padded)} tests allow by chance (adjusted p {harm_adj:.3g})")
                verdict = verdict.model_copy(update={"detail": f"{verdict.detail}; {note}"})
            verdicts[name] = verdict
        for a in (a for a in cell.assessments.values() if a.role == "reference"):
            verdict = _verdict(a, "PASS", a.p_harm, bonferroni_z, alpha, method)
            note = "the non-speculative reference: the host's yardstick, never a speculative-decoding failure"
            verdicts[a.metric] = verdict.model_copy(update={"detail": f"{verdict.detail}; {note}"})
        gate_open = any(verdicts[n].status == "FAIL" for n in GATE_METRICS if n in verdicts)
        secondary = [a for a in cell.assessments.values() if a.role == "secondary"]
        within = holm([a.p_harm for a in secondary])
        for a, adj in zip(secondary, within, strict=True):
            fails = gate_open and adj <= alpha
            z = z_for_tail(alpha / max(len(secondary), 1))
            status = "FAIL" if fails else "PASS"
            verdict = _verdict(a, status, adj, z, alpha, "holm")
            if not gate_open:
                note = "secondary: judged only when acceptance length or rate fails"
                verdict = verdict.model_copy(update={"detail": f"{verdict.detail}; {note}"})
            verdicts[a.metric] = verdict
        out.append([verdicts[name] for name in cell.order])
    return out


def _final_status(a: Assessment, fails: bool, harm_adjusted: float) -> Status:
    """The verdict once no rerun is coming. INCONCLUSIVE (exit 4) where the harm is significant over the
    run's family but cannot yet FAIL (a noisy metric's FAIL needs three runs and its rank test, and
    allows for slow starts), or where a count metric reached its practical bound without the counts to
    make it significant. A raw p under SAME_ALPHA alone is a PASS here: at 5 % per test, a nightly's 250
    tests would leave some cell INCONCLUSIVE every night (2.3 % of A/A cells after five runs in
    benchmarks/judge_power.py), and a gate that fails every night is not read."""
    if fails:
        return "FAIL"
    if a.beyond_bound or harm_adjusted <= FINAL_INCONCLUSIVE_ALPHA:
        return "INCONCLUSIVE"
    return "PASS"


def _status(a: Assessment, fails: bool) -> Status:
    if fails:
        return "FAIL"
    if a.p_harm > SAME_ALPHA and not a.beyond_bound:
        return "PASS"
    return "INCONCLUSIVE"


def _verdict(a: Assessment, status: Status, adjusted_p: float, z: float, alpha: float,
             method: str) -> MetricVerdict:
    lo, hi = a.band(z)
    info = metric_info(a.metric)
    if info is not None and info.unit == "ratio":  # a rate's band cannot leave [0, 1]
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    harmful_bound = hi if a.better == "lower" else lo
    # The band's own name: it comes from the recorded spread, not from the baseline's tolerance_pct.
    band = 100.0 * abs(harmful_bound - a.expected) / abs(a.expected) if a.expected else None
    detail = a.detail
    if status == "PASS" and a.p_benefit <= alpha:
        detail += "; improved beyond the recorded spread: consider re-recording the baseline"
    return MetricVerdict(
        metric=a.metric, status=status, observed=a.observed, expected=a.expected, lo=lo, hi=hi,
        band_pct=round(band, 1) if band is not None and band > 0 else None, band_runs=a.recorded_runs,
        rule=f"{a.test}; {method} over the run, alpha {alpha:g}", detail=detail,
        # The p a FAIL was decided on, of which adjusted_p is the adjustment (a noisy metric's core p, which
        # decided PASS vs INCONCLUSIVE, is in its detail).
        p_value=a.p_harm_deciding, adjusted_p=adjusted_p, runs=a.runs,
    )
