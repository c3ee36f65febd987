"""Count-aware tests for the near-deterministic greedy metrics: acceptance length, rates, match rate.

Why counts and not a fixed percentage: the same 1 % move is 1 draft in 100 or 100 in 10,000, and
only the second is evidence. Each metric is a mean over events the result counts (drafts for acceptance
length and per-position rates, draft tokens for the acceptance rate, prompts for the match rate), so
the test's variance of the observed value under "no change" is

    var = unit_variance / trials          the granularity of one run's counts
        + s^2 x (1/n + 1/N)               the recorded spread across engine starts

- The first term is a binomial-type term of ONE run, not of the n candidate runs pooled: under greedy
  decoding the same prompts are replayed, so pooled replicates are not independent samples and their
  counts do not shrink it. It is an upper bound on the count noise a harmless change can cause (a
  kernel change that flips near-tie argmaxes re-draws at most every event), so it errs toward not
  failing; it is also the floor that stops a baseline with zero recorded spread (the CPU reference
  engine is bit-deterministic) from failing on a single flipped draft.
- The second term is the real run-to-run noise (counters and above all the match rate move between H200
  engine starts: docs/judging.md#engine-start-noise), estimated from the N
  recorded runs (robust_sd), floored by the run's pooled relative spread of the same metric on the
  same hardware pool (five runs give a cell's own estimate only 4 degrees of freedom), and shrunk by
  the n candidate runs judged together.
- unit_variance: a per-position rate and the match rate are Bernoulli per event, p(1-p). Acceptance
  length is 1 + X with X the accepted tokens of a draft; acceptance is a prefix, so P(X > i) = p_i
  (the per-position rate), E[X] = sum p_i and E[X^2] = sum (2i+1) p_i, which gives Var(X) exactly from
  the per-position rates. The acceptance rate is X / k per draft (draft tokens within a draft are not
  independent), so its variance is Var(X) / k^2 per draft, not p(1-p) per token. Without per-position
  rates, Var(X) falls back to its maximum for a mean in [0, k]: mean x (k - mean). Bernoulli rates use
  add-one smoothing, (x+1)/(n+2), so a recorded 20/20 match does not claim zero variance.
The null values (p_i, p) are the baseline's, since the test asks whether the run is consistent with it.

A practical bound beside the test (practical_bound): the z test alone asks only "could counts this few
have moved this far by chance?", and with the local tier's 165 drafts (binomial sd 5.6 % of the
acceptance length) a 13 % drop is 2.4 sd: not significant over a run's Holm family, and it used to
PASS or end INCONCLUSIVE with exit 0. A harmful move at or beyond the bound is therefore never a PASS:
it FAILs once the counts make it significant (the same Holm-controlled test as any FAIL, so A/A false
alarms do not grow) and stays INCONCLUSIVE, which exits non-zero, until they do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fleet.judge.assessment import Assessment, Role
from fleet.judge.stats import Direction, robust_sd, tails
from fleet.model import MetricBaseline, RunResult
from fleet.model.metrics import REFERENCE_PREFIX, metric_info

_POSITION = re.compile(r"acceptance_rate_pos_(\d+)")
#: The metric kinds (fleet.suite.derive) judged as counts of drafts and prompts (assess_count).
COUNT_KINDS = ("acceptance", "match")
#: The practical bound on an acceptance length or rate drop, relative to the baseline: 5 %. Why there:
#: speculative decoding's speedup is about proportional to the acceptance length (each verify step yields
#: AL tokens), so 5 % of AL is about 5 % of the speedup, the smallest loss a maintainer treats as a
#: regression and the floor the baseline recorder already gives acceptance tolerances
#: (fleet.baselines.record); and it is 3-5x the spread across engine starts measured on the H200 (ngram's
#: AL 1.55 %, draft_model's 0.88 %: benchmarks/judge_power.py's noise model), so no harmless start reaches
#: it at a nightly's counts and the A/A rate stays where Holm holds it.
PRACTICAL_DROP = {"acceptance_length": 0.05, "acceptance_rate": 0.05}
#: The match rate's bound is where one run of the unchanged engine lands below with 1 % chance: the
#: recorded runs' distribution (their spread, and one run's count noise on its prompts) at its 1 %
#: quantile. Not a fixed share: the H200 recorded 0.50-0.96 over 15 starts of the same engine, where 0.54
#: is no regression, while the CPU reference replays 20/20 exactly, where 17/20 is one.
MATCH_QUANTILE = 0.01
_Z_MATCH = 2.326  # the standard normal's 99 % quantile


def role_of(name: str) -> Role:
    """primary: judged and error-controlled; secondary: explains a primary failure (per position);
    reference: the non-speculative engine's own latency, the yardstick of the host (fleet.judge.decide)."""
    if name.startswith(REFERENCE_PREFIX):
        return "reference"
    return "secondary" if _POSITION.fullmatch(name) else "primary"



def replayed(entry: MetricBaseline, observed: Sequence[float], pooled_log_sd: float = 0.0) -> bool:
    """True when more runs cannot move a count test: the recorded runs agree exactly (a bit-deterministic
    engine, such as the CPU reference), so do two or more candidate runs, and the pool's spread does not
    floor the between-run term (assess_count's, which 1/n would shrink). Such a cell's INCONCLUSIVE is
    settled by a larger workload (more drafts and prompts), not by a rerun."""
    recorded = entry.values or []
    # 1e-9: the variance of identical logs reads 1e-16, not 0, in floating point.
    return pooled_log_sd < 1e-9 and len(recorded) >= 2 and len(set(recorded)) == 1 \
        and len(observed) >= 2 and len(set(observed)) == 1


def replayed_metrics(names: Sequence[str], entries: Mapping[str, MetricBaseline],
                     candidates: Sequence[RunResult], pooled_log_sd: Callable[[str], float]) -> list[str]:
    """Those of `names` (count metrics among them) that `replayed` says no rerun can move;
    `pooled_log_sd(name)`: the pool's relative spread of the metric, as assess_count is given it."""
    def counted(name: str) -> bool:
        info = metric_info(name)
        return info is not None and info.kind in COUNT_KINDS

    return [name for name in names if name in entries and counted(name)
            and all(name in r.metrics for r in candidates)
            and replayed(entries[name], [r.metrics[name] for r in candidates], pooled_log_sd(name))]


def candidate_trials(name: str, result: RunResult) -> tuple[float, float] | None:
    """(trials, drafted tokens per draft) that a count metric of one result is a mean over."""
    counters = result.counters
    if name == "match_rate":
        return (float(result.match.num_prompts), 1.0) if result.match and result.match.num_prompts else None
    if counters is None or counters.num_drafts == 0:
        return None
    per_draft = counters.num_draft_tokens / counters.num_drafts
    return float(counters.num_drafts), per_draft


def _position_rates(entries: Mapping[str, MetricBaseline], result: RunResult | None) -> list[float]:
    rates = {int(m.group(1)): entry.expected for name, entry in entries.items()
             if (m := _POSITION.fullmatch(name))}
    if rates and sorted(rates) == list(range(len(rates))):
        return [min(1.0, max(0.0, rates[i])) for i in range(len(rates))]
    if result is not None and result.counters is not None and result.counters.num_drafts:
        drafts = result.counters.num_drafts
        return [count / drafts for count in result.counters.accepted_per_position]
    return []


def accepted_per_draft_variance(position_rates: Sequence[float], mean: float, k: float) -> float:
    """Var(X) of accepted tokens per draft: exact from per-position rates, else the bound mean (k - mean)."""
    if position_rates:
        first = sum(position_rates)
        second = sum((2 * i + 1) * p for i, p in enumerate(position_rates))
        return max(second - first * first, 0.0)
    return max(mean * (k - mean), 0.0)


def unit_variance(name: str, entries: Mapping[str, MetricBaseline], result: RunResult, k: float,
                  trials: float) -> float:
    expected = entries[name].expected
    if name == "match_rate" or _POSITION.fullmatch(name):
        # Add-one smoothing: a recorded 20/20 must not claim zero variance (one flip would be infinite z).
        p = (min(1.0, max(0.0, expected)) * trials + 1.0) / (trials + 2.0)
        return p * (1 - p)
    rates = _position_rates(entries, result)
    if name == "acceptance_length":
        return accepted_per_draft_variance(rates, expected - 1.0, k)
    # acceptance_rate: X / k per draft
    return accepted_per_draft_variance(rates, expected * k, k) / (k * k)


def assess_count(name: str, entries: Mapping[str, MetricBaseline], candidates: Sequence[RunResult],
                 better: Direction | None, pooled_log_sd: float = 0.0) -> Assessment:
    """The count-aware z test of one acceptance or match metric (formula in the module docstring)."""
    entry = entries[name]
    observed = [float(result.metrics[name]) for result in candidates]
    recorded = entry.values or []
    shape = [t for t in (candidate_trials(name, r) for r in candidates) if t is not None]
    if shape:
        trials = float(np.mean([t for t, _ in shape]))
        k = float(np.mean([per for _, per in shape]))
    else:
        # No counters in the result: the baseline's recorded `trials` (events the value is a fraction of;
        # draft tokens for the acceptance rate, which is then taken as Bernoulli per token).
        trials = float(entry.trials or 0)
        k = max(1.0, float(len(_position_rates(entries, None))) or 1.0)
    per_event = (min(1.0, max(0.0, entry.expected)) * (1 - min(1.0, max(0.0, entry.expected)))
                 if name == "acceptance_rate" and not shape else
                 unit_variance(name, entries, candidates[0], k, trials))
    binomial = per_event / trials if trials else 0.0
    spread = robust_sd(recorded) if len(recorded) >= 2 else (entry.std or 0.0)
    # Floored by the run's pooled relative spread of this metric on this pool (5 runs = 4 df).
    spread = max(spread, pooled_log_sd * abs(entry.expected))
    n_recorded = len(recorded) or (entry.n or 1)
    between = spread * spread * (1.0 / len(observed) + 1.0 / n_recorded)
    granularity = 1.0 / trials if trials else 0.0
    # Never tighter than half a count of one run: values are quantised to 1 / trials.
    sigma = max(math.sqrt(binomial + between), granularity / 2.0)
    centre = float(np.mean(observed))
    change = centre - entry.expected
    z = change / sigma if sigma > 0 else (0.0 if change == 0 else math.copysign(math.inf, change))
    p_harm, p_benefit = tails(z, better)
    detail = (f"{_pct(change, entry.expected)} from expected over {len(observed)} run(s); z {z:+.2f} with "
              f"{trials:g} trials/run (binomial sd {math.sqrt(binomial):.3g}, between-run sd {spread:.3g})")
    bound = practical_bound(name, entry.expected, spread, n_recorded, binomial)
    harm = -change if better == "higher" else change
    beyond = bound is not None and harm > 0 and harm >= bound - 1e-12
    if beyond and bound is not None:
        detail += (f"; the drop reaches the practical bound ({_bound_text(name, entry.expected, bound)}): "
                   "never a pass, a FAIL once the counts make it significant")
    return Assessment(metric=name, kind="count", role=role_of(name), better=better, expected=entry.expected,
                      observed=centre, runs=len(observed), recorded_runs=n_recorded, p_harm=p_harm,
                      p_benefit=p_benefit, sigma=sigma, log_scale=False, can_fail=True,
                      test="count-aware z (binomial + recorded between-run variance)", detail=detail,
                      beyond_bound=beyond)


def practical_bound(name: str, expected: float, spread: float, recorded_runs: int,
                    binomial: float) -> float | None:
    """The harmful move (absolute, on the metric's scale) at which a primary count metric is no longer
    a pass: PRACTICAL_DROP of the expected acceptance length or rate; for the match rate, the distance
    from expected to the recorded distribution's MATCH_QUANTILE quantile, the distribution of one run
    of the unchanged engine: the recorded runs' spread (which already holds each run's count noise;
    (1 + 1/N) for a mean known from `recorded_runs`), floored by one run's count variance `binomial`
    where the recorded runs replay exactly (the CPU reference: 20/20 five times is not a distribution
    in which 19/20 is a 1 % event). None for other metrics."""
    if name in PRACTICAL_DROP:
        return PRACTICAL_DROP[name] * abs(expected)
    if name == "match_rate":
        one_run = max(spread * spread * (1.0 + 1.0 / max(recorded_runs, 1)), binomial)
        return _Z_MATCH * math.sqrt(one_run)
    return None


def _bound_text(name: str, expected: float, bound: float) -> str:
    if name in PRACTICAL_DROP:
        return f"{100 * PRACTICAL_DROP[name]:g} % below {expected:.4g}"
    return f"{expected - bound:.3g}, the recorded distribution's {100 * MATCH_QUANTILE:g} % quantile"


def _pct(change: float, expected: float) -> str:
    if expected == 0:
        return f"{change:+.4g}"
    return f"{100.0 * change / abs(expected):+.2f}%"
