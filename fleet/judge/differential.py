"""The differential judge: cells that differ in exactly one execution axis are judged against each other.

Why: under greedy decoding a drafter's acceptance must not depend on how the engine executes (CUDA-graph
mode, prefix caching, async scheduling). The regressions that reached vLLM users lived there (#47930:
acceptance length ~1.0 with prefix caching on; #49010 and #54997 under CUDA-graph modes), and this
invariant catches them the first night, with no recorded baseline, on any hardware and model.

Pairs: two cells of the run are paired when they agree on tier, variant, model, draft, hardware,
workload, engine and engine_options, name the same execution axes (Cell.execution), and differ in the
value of exactly one of them. Cells differing in two axes are not paired (a difference could not be put
on one axis); a cell with no partner has no differential verdict. Pairing reads the cells' contents,
never their ids. Each side's successful runs are pooled (counts added).

Tests, per pair (two-sided: either side may be the broken one):
- acceptance length (primary): accepted tokens per draft on each side, total accepted over total drafts.
  Under "no divergence" both sides share the per-position rates p_i (pooled over both sides), so the
  variance of a side's mean is phi x Var(X) / drafts, Var(X) exact from the p_i
  (fleet.judge.acceptance.accepted_per_draft_variance); the acceptance rate (accepted over drafted
  tokens) and the per-position rates are the same counts seen another way, so they are secondary:
  tested (Holm within the pair) only where acceptance length diverged, to say where it broke;
- match rate (primary): exact token matches with the non-speculative reference over prompts, a
  two-proportion test with phi_match x p(1 - p) per prompt (p pooled, add-one smoothed).

Noise calibration (phi): both sides replay the same prompts, so their counts are not independent Bernoulli
draws. What differs between two runs of one configuration is what batch-variant numerics flip: on the H200
(evidence/h200/series s1-s10 and runs r1-r5, 15 runs each of ngram-k4 and draft_model-k4) the acceptance
length's run-to-run variance is 0.20 and 0.15 of one run's binomial variance (sd 0.85 % and 0.39 % of
the length against a binomial 1.9 % and 1.0 %): a plain binomial test of acceptance over-states this
noise about 5-fold and misses divergences it could see. The match rate is the other way: the reference
run itself moves between engine starts (27-48 of 50 prompts match), its variance is 4.9 and 3.2 times
the binomial, and a pure binomial test of it false-alarms in two of three simulated A/A nightlies
(benchmarks/differential_power.py; figures: docs/judging.md#differential-pairs-execution-axes). Each
phi below is the upper one-sided 95 % confidence bound of the two cells' pooled ratio (0.174 and 4.0,
28 degrees of freedom: 0.287 and 6.66), so that an estimate
from 30 runs errs towards fewer false alarms. The variance then shrinks with the counts as the workload
grows: the model's assumption, since one workload size was recorded.

Practical bound: a difference of at least PRACTICAL_DROP (5 %, the acceptance judge's) of the larger
acceptance length is never SAME: it DIVERGES once significant over the run's family and is INCONCLUSIVE
(exit 4) until the counts make it so, as a baseline verdict at its bound is (fleet.judge.acceptance).

Error control: the primary p-values join the run's family with the baseline verdicts' (Holm by default,
fleet.judge.decide): DIVERGES where the adjusted p <= alpha. Outcomes as the final rule of decide.py:
DIVERGES (a regression: the run FAILs, exit 1), INCONCLUSIVE (beyond the practical bound, or adjusted p
<= FINAL_INCONCLUSIVE_ALPHA without a DIVERGES), SAME otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.judge.acceptance import PRACTICAL_DROP, accepted_per_draft_variance
from fleet.judge.decide import ALPHA, FINAL_INCONCLUSIVE_ALPHA, SAME_ALPHA
from fleet.judge.multiple import Method, adjust, holm
from fleet.model import Cell, DifferentialMetric, DifferentialStatus, DifferentialVerdict, RunResult

#: The Cell fields two cells of a pair agree on; only `execution` may differ, and in one axis.
SHARED_FIELDS = ("tier", "variant", "model", "draft_model", "hardware", "workload", "engine",
                 "engine_options")
#: Variance of acceptance counts across engine starts over one run's binomial variance: the upper 95 %
#: bound of the recorded H200 ratio 0.174 (module docstring; benchmarks/differential_power.py prints it).
ACCEPTANCE_OVERDISPERSION = 0.30
#: The same for the match rate: the recorded ratio 4.0, its upper 95 % bound 6.66.
MATCH_OVERDISPERSION = 6.7
PRIMARY = ("acceptance_length", "match_rate")
#: The bound on |AL_a - AL_b| relative to the larger of the two at which a pair is never SAME.
DIVERGENCE_BOUND = PRACTICAL_DROP["acceptance_length"]


@dataclass(frozen=True)
class Side:
    """One cell of a pair and its successful runs."""

    cell: Cell
    runs: tuple[RunResult, ...]


@dataclass(frozen=True)
class Pair:
    """Two cells identical but for `axis`; `a` has the smaller axis value (as text), `b` the other."""

    axis: str
    a: Side
    b: Side

    @property
    def value_a(self) -> str:
        return self.a.cell.execution[self.axis]

    @property
    def value_b(self) -> str:
        return self.b.cell.execution[self.axis]


@dataclass(frozen=True)
class Noise:
    """The overdispersion factors the tests use (module docstring)."""

    acceptance: float = ACCEPTANCE_OVERDISPERSION
    match: float = MATCH_OVERDISPERSION


@dataclass(frozen=True)
class Test:
    """One metric's comparison of a pair, before error control."""

    metric: str
    primary: bool
    value_a: float
    value_b: float
    trials_a: int
    trials_b: int
    z: float
    p_value: float
    beyond_bound: bool = False


@dataclass(frozen=True)
class PairEvidence:
    pair: Pair
    tests: list[Test] = field(default_factory=list)

    @property
    def primaries(self) -> list[Test]:
        return [t for t in self.tests if t.primary]


def shared_key(cell: Cell) -> str:
    """What two cells of a pair must agree on, as one comparable text."""
    return json.dumps(cell.model_dump(mode="json", include=set(SHARED_FIELDS)), sort_keys=True)


def differing_axis(a: Cell, b: Cell) -> str | None:
    """The one execution axis `a` and `b` differ in, where they are otherwise identical; else None."""
    if shared_key(a) != shared_key(b) or set(a.execution) != set(b.execution):
        return None
    differ = [axis for axis in a.execution if a.execution[axis] != b.execution[axis]]
    return differ[0] if len(differ) == 1 else None


def planned_pairs(cells: Sequence[Cell]) -> list[tuple[str, Cell, Cell]]:
    """(axis, a, b) for every pair of these cells that differ in one execution axis, a's value first."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.execution:
            groups.setdefault(shared_key(cell), []).append(cell)
    found = []
    for members in groups.values():
        unique = {json.dumps(c.execution, sort_keys=True): c for c in members}
        ordered = [unique[k] for k in sorted(unique)]
        for i, first in enumerate(ordered):
            for second in ordered[i + 1:]:
                axis = differing_axis(first, second)
                if axis is not None:
                    a, b = sorted((first, second), key=lambda c: c.execution[axis])
                    found.append((axis, a, b))
    return found


def family_size_of_pairs(cells: Sequence[Cell]) -> int:
    """The primary tests the differential judge adds to a run of these cells' family."""
    return len(PRIMARY) * len(planned_pairs(cells))


def _identity(cell: Cell) -> str:
    return json.dumps(cell.model_dump(mode="json"), sort_keys=True)


def pairs_of(results: Sequence[RunResult]) -> list[Pair]:
    """The pairs among the successful results, each cell's runs gathered by the cell's contents."""
    runs: dict[str, list[RunResult]] = {}
    cells: dict[str, Cell] = {}
    for result in results:
        if result.status == "ok":
            runs.setdefault(_identity(result.cell), []).append(result)
            cells.setdefault(_identity(result.cell), result.cell)
    return [Pair(axis, Side(a, tuple(runs[_identity(a)])), Side(b, tuple(runs[_identity(b)])))
            for axis, a, b in planned_pairs(list(cells.values()))]


def _two_sided(z: float) -> float:
    """2 P(Z >= |z|), by erfc: the normal's tail without scipy's per-call cost (the benchmark's loop)."""
    return min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def _z(difference: float, variance: float, granularity: float) -> float:
    # Never tighter than half a count: values are quantised to 1 / trials.
    sigma = max(math.sqrt(max(variance, 0.0)), granularity / 2.0)
    if sigma > 0:
        return difference / sigma
    return 0.0 if difference == 0 else math.copysign(math.inf, difference)


@dataclass(frozen=True)
class Counts:
    drafts: int
    draft_tokens: int
    accepted: int
    positions: tuple[int, ...]


def counts_of(runs: Sequence[RunResult]) -> Counts | None:
    counters = [r.counters for r in runs]
    if not counters or any(c is None or c.num_drafts == 0 for c in counters):
        return None
    width = max(len(c.accepted_per_position) for c in counters if c is not None)
    positions = [0] * width
    for c in counters:
        assert c is not None
        for i, count in enumerate(c.accepted_per_position):
            positions[i] += count
    return Counts(sum(c.num_drafts for c in counters if c is not None),
                   sum(c.num_draft_tokens for c in counters if c is not None),
                   sum(c.num_accepted_tokens for c in counters if c is not None), tuple(positions))


def acceptance_tests(a: Counts, b: Counts, phi: float, secondary: bool = True) -> list[Test]:
    """Acceptance length (primary) and, with `secondary`, the acceptance rate and per-position rates."""
    drafts = a.drafts + b.drafts
    inverse = 1.0 / a.drafts + 1.0 / b.drafts
    granularity = 1.0 / min(a.drafts, b.drafts)
    k = (a.draft_tokens + b.draft_tokens) / drafts
    width = max(len(a.positions), len(b.positions))
    pos_a = list(a.positions) + [0] * (width - len(a.positions))
    pos_b = list(b.positions) + [0] * (width - len(b.positions))
    pooled = [(x + y) / drafts for x, y in zip(pos_a, pos_b, strict=True)]
    mean_x = (a.accepted + b.accepted) / drafts
    var_x = accepted_per_draft_variance(pooled, mean_x, k)
    length_a, length_b = 1.0 + a.accepted / a.drafts, 1.0 + b.accepted / b.drafts
    z = _z(length_a - length_b, phi * var_x * inverse, granularity)
    beyond = abs(length_a - length_b) >= DIVERGENCE_BOUND * max(length_a, length_b) - 1e-12
    tests = [Test("acceptance_length", True, length_a, length_b, a.drafts, b.drafts, z, _two_sided(z),
                  beyond)]
    if not secondary:
        return tests
    if a.draft_tokens and b.draft_tokens:
        rate_a, rate_b = a.accepted / a.draft_tokens, b.accepted / b.draft_tokens
        kk = max(k, 1.0)
        z = _z(rate_a - rate_b, phi * var_x / (kk * kk) * inverse, granularity / kk)
        tests.append(Test("acceptance_rate", False, rate_a, rate_b, a.drafts, b.drafts, z, _two_sided(z)))
    for i, (x, y) in enumerate(zip(pos_a, pos_b, strict=True)):
        p = (x + y + 1.0) / (drafts + 2.0)
        z = _z(x / a.drafts - y / b.drafts, phi * p * (1 - p) * inverse, granularity)
        tests.append(Test(f"acceptance_rate_pos_{i}", False, x / a.drafts, y / b.drafts, a.drafts, b.drafts,
                          z, _two_sided(z)))
    return tests


def _match(runs: Sequence[RunResult]) -> tuple[int, int] | None:
    if not runs or any(r.match is None or r.match.num_prompts == 0 for r in runs):
        return None
    return (sum(r.match.exact_token_matches for r in runs if r.match is not None),
            sum(r.match.num_prompts for r in runs if r.match is not None))


def match_test(a: tuple[int, int], b: tuple[int, int], phi: float) -> Test:
    (hits_a, n_a), (hits_b, n_b) = a, b
    p = (hits_a + hits_b + 1.0) / (n_a + n_b + 2.0)
    z = _z(hits_a / n_a - hits_b / n_b, phi * p * (1 - p) * (1.0 / n_a + 1.0 / n_b), 1.0 / min(n_a, n_b))
    return Test("match_rate", True, hits_a / n_a, hits_b / n_b, n_a, n_b, z, _two_sided(z))


def assess_pair(pair: Pair, noise: Noise = Noise()) -> PairEvidence:
    """Every test of one pair (module docstring), before error control."""
    tests: list[Test] = []
    counts_a, counts_b = counts_of(pair.a.runs), counts_of(pair.b.runs)
    if counts_a is not None and counts_b is not None:
        tests += acceptance_tests(counts_a, counts_b, noise.acceptance)
    match_a, match_b = _match(pair.a.runs), _match(pair.b.runs)
    if match_a is not None and match_b is not None:
        tests.append(match_test(match_a, match_b, noise.match))
    return PairEvidence(pair, tests)


def assess_pairs(results: Sequence[RunResult], noise: Noise = Noise()) -> list[PairEvidence]:
    return [assess_pair(pair, noise) for pair in pairs_of(results)]


def primary_p_values(evidence: Sequence[PairEvidence]) -> list[float]:
    """The p each pair's primary tests join the run's family with."""
    return [t.p_value for e in evidence for t in e.primaries]


def decide_pairs(evidence: Sequence[PairEvidence], *, alpha: float = ALPHA, method: Method = "holm",
                 others: Sequence[float] = (), family_size: int | None = None,
                 final: bool = True) -> list[DifferentialVerdict]:
    """Every pair's verdict, its primary tests controlled over the run's family: these and `others` (the
    baseline verdicts' primary p-values), padded to `family_size`. `final`: no rerun to come (the run's
    report); between reruns a raw p <= SAME_ALPHA is INCONCLUSIVE, as in fleet.judge.decide."""
    mine = primary_p_values(evidence)
    joined = mine + list(others)
    padded = joined + [1.0] * max(0, (family_size or 0) - len(joined))
    adjusted = iter(adjust(padded, method)[:len(mine)])
    verdicts = []
    for e in evidence:
        metrics: dict[str, DifferentialMetric] = {}
        for t in e.primaries:
            adj = next(adjusted)
            status = _status(t, adj, alpha, final)
            metrics[t.metric] = _metric(t, status, adj, f"{method} over the run, alpha {alpha:g}")
        diverged = metrics.get("acceptance_length") is not None \
            and metrics["acceptance_length"].status == "DIVERGES"
        secondary = [t for t in e.tests if not t.primary]
        for t, adj in zip(secondary, holm([t.p_value for t in secondary]), strict=True):
            status = "DIVERGES" if diverged and adj <= alpha else "SAME"
            rule = "holm within the pair" + (
                "" if diverged else "; judged only when acceptance length diverges")
            metrics[t.metric] = _metric(t, status, adj, rule)
        verdicts.append(_verdict(e, [metrics[t.metric] for t in e.tests]))
    return verdicts


def judge_differentials(results: Sequence[RunResult], *, alpha: float = ALPHA, method: Method = "holm",
                        others: Sequence[float] = (), family_size: int | None = None,
                        noise: Noise = Noise()) -> list[DifferentialVerdict]:
    """The run's differential verdicts from all its successful results (a single look: final)."""
    return decide_pairs(assess_pairs(results, noise), alpha=alpha, method=method, others=others,
                        family_size=family_size)


def _status(t: Test, adjusted: float, alpha: float, final: bool) -> DifferentialStatus:
    if adjusted <= alpha:
        return "DIVERGES"
    if final:
        return "INCONCLUSIVE" if t.beyond_bound or adjusted <= FINAL_INCONCLUSIVE_ALPHA else "SAME"
    return "SAME" if t.p_value > SAME_ALPHA and not t.beyond_bound else "INCONCLUSIVE"


_NAMES = {"acceptance_length": "acceptance length", "acceptance_rate": "acceptance rate",
          "match_rate": "match rate"}


def _metric(t: Test, status: DifferentialStatus, adjusted: float, control: str) -> DifferentialMetric:
    relative = f" ({100 * (t.value_a - t.value_b) / t.value_b:+.2f}%)" if t.value_b else ""
    detail = f"{t.value_a:.4g} over {t.trials_a} vs {t.value_b:.4g} over {t.trials_b}{relative}; z {t.z:+.2f}"
    if t.beyond_bound:
        detail += (f"; the difference reaches the practical bound ({100 * DIVERGENCE_BOUND:g} % of the "
                   "larger): never SAME, DIVERGES once significant")
    unit = "prompts" if t.metric == "match_rate" else "drafts"
    return DifferentialMetric(metric=t.metric, status=status, value_a=t.value_a, value_b=t.value_b,
                              trials_a=t.trials_a, trials_b=t.trials_b, p_value=t.p_value,
                              adjusted_p=adjusted, detail=detail,
                              rule=f"count-aware two-sided z on {unit}, overdispersed; {control}")


def _said(m: DifferentialMetric, pair: Pair) -> str:
    """`acceptance length 1.02 with prefix_caching=on vs 1.81 with prefix_caching=off`: worse side first."""
    name = _NAMES.get(m.metric, m.metric)
    sides = [(m.value_a, pair.value_a), (m.value_b, pair.value_b)]
    (low, low_at), (high, high_at) = sorted(sides, key=lambda s: s[0])
    return (f"{name} {low:.3g} with {pair.axis}={low_at} vs {high:.3g} with {pair.axis}={high_at}"
            f" (adjusted p {p_text(m.adjusted_p)})")


def p_text(p: float | None) -> str:
    """A p-value as reports print it: 2 significant digits, and `< 1e-300` where it underflowed."""
    if p is None:
        return "—"
    return f"{p:.2g}" if p > 0 else "< 1e-300"


def _verdict(e: PairEvidence, metrics: list[DifferentialMetric]) -> DifferentialVerdict:
    pair = e.pair
    primary = [m for m in metrics if m.metric in PRIMARY]
    diverges = [m for m in primary if m.status == "DIVERGES"]
    unsure = [m for m in primary if m.status == "INCONCLUSIVE"]
    status: DifferentialStatus
    if not primary:
        status = "INCONCLUSIVE"
        message = (f"nothing to compare across {pair.axis}: the runs carry neither speculative counters nor "
                   "match summaries on both sides")
    elif diverges:
        status = "DIVERGES"
        where = [m.metric for m in metrics if m.metric not in PRIMARY and m.status == "DIVERGES"]
        message = "; ".join(_said(m, pair) for m in diverges)
        if where:
            message += f"; diverging: {', '.join(where)}"
    elif unsure:
        status = "INCONCLUSIVE"
        bound = any("practical bound" in m.detail for m in unsure)
        message = "; ".join(_said(m, pair) for m in unsure) + (
            ": beyond the practical bound but not significant at these counts; a workload with more prompts "
            "or tokens can decide" if bound else ": suspicious, not significant over the run's family")
    else:
        status = "SAME"
        message = "; ".join(f"{_NAMES.get(m.metric, m.metric)} {m.value_a:.4g} with {pair.axis}="
                            f"{pair.value_a} vs {m.value_b:.4g} with {pair.axis}={pair.value_b}"
                            for m in primary)
    cell = pair.a.cell
    return DifferentialVerdict(
        axis=pair.axis, value_a=pair.value_a, value_b=pair.value_b, cell_a=cell.id, cell_b=pair.b.cell.id,
        variant=cell.variant.name, model=cell.model, draft_model=cell.draft_model,
        hardware=cell.hardware.name,
        status=status, message=message, metrics=metrics, runs_a=len(pair.a.runs), runs_b=len(pair.b.runs),
        shared_execution={k: v for k, v in cell.execution.items() if k != pair.axis})
