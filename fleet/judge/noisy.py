"""Tests for noisy system metrics (TTFT, TPOT, e2e, throughput, speedup) against the recorded spread.

Latency moved by up to 24 % between two engine starts of one configuration on the H200, so the only
honest yardstick is the spread recorded across engine starts when the baseline was made. The test works
on log values, because latency noise is multiplicative (a busy host slows everything by a factor):

    z = (mean log candidates - mean log recorded) / (sd x sqrt(1/n + 1/N))

- sd = max(robust_sd of the N recorded log values, FLOOR_LOG_SD). robust_sd is the larger of the
  sample sd and 1.4826 x MAD, because N is small (5) and an underestimated sd is a false alarm. The
  floor, 2 %, is below every spread measured across engine starts so far (CPU reference engine: 4.8 %
  TPOT p50 for ngram, 8.4 % for draft_model over 11 starts; H200: 2.11 vs 2.18 ms reference TPOT, about
  2.3 %): a recorded spread under it is taken as five lucky runs, not a quiet machine.
- Fewer than MIN_RUNS_TO_FAIL (3) runs never fail a noisy metric: one engine start can land on a busy
  host (one of the 11 CPU runs had a TTFT p99 twice the others; on the H200 single starts were 20-40 %
  slow, evidence/h200), and two such starts in a row are not rare. Suspicious early runs are
  INCONCLUSIVE, which makes the controller rerun the cell; from three runs on the candidates' centre is
  their median (its variance pi/2 times the mean's, paid for in sigma), so one slow start among them
  cannot carry the decision, and a FAIL also needs a one-sided Mann–Whitney rank test against the
  recorded values at RANK_ALPHA. (The rank test alone cannot carry it: with 5 recorded and 3
  candidate runs its smallest p is 1/56.)
- The controller looks again after every rerun (runs 3..5 can each decide FAIL), and a test repeated
  until it rejects rejects too often. The p of harm is therefore multiplied by LOOKS, the number of
  looks that may fail (Bonferroni over looks, the simplest group-sequential correction).
- sd is also floored by the run's pooled spread of the same metric on the same hardware pool
  (fleet.judge.decide.pooled_spreads): 5 runs give the cell's own sd 4 degrees of freedom.
- When the cell's own recorded runs set sd, z is referred to Student's t with N - 1 degrees of freedom,
  not the normal: an sd estimated from 5 or 10 runs is often well below the truth, and the normal's
  thin tails then turn one unlucky baseline into false alarms night after night. (The pooled spread and
  the floor are known well enough for the normal.) The verdict's band is drawn with the same t.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fleet.judge.acceptance import role_of
from fleet.judge.assessment import Assessment
from fleet.judge.stats import Direction, rank_test_p, robust_sd, tails
from fleet.model import MetricBaseline

FLOOR_LOG_SD = 0.02
MIN_RUNS_TO_FAIL = 3
#: The rank test corroborates; 0.05 is a level it can reach with 3 candidates vs 5 recorded (min p 1/56).
RANK_ALPHA = 0.05
#: Runs 3..DEFAULT_MAX_RUNS (5) of the controller's rerun loop may each fail the metric.
LOOKS = 3
#: Var(median) / Var(mean) of normal samples (pi / 2): the price of the median's robustness.
MEDIAN_VARIANCE_FACTOR = math.pi / 2


def recorded_log_values(entry: MetricBaseline) -> list[float]:
    return [math.log(v) for v in entry.values or [] if v > 0]


def pooled_log_sd(entries: Sequence[MetricBaseline]) -> float:
    """The run's pooled per-run log sd of one metric: sqrt(sum (N_i - 1) s_i^2 / sum (N_i - 1)).

    Five runs per cell estimate a cell's spread with 4 degrees of freedom, which is often half the truth;
    pooling the same metric over every cell of the run on one hardware pool gives hundreds.
    """
    weighted, dof = 0.0, 0
    for entry in entries:
        logs = recorded_log_values(entry)
        if len(logs) >= 2:
            weighted += (len(logs) - 1) * float(np.var(logs, ddof=1))
            dof += len(logs) - 1
    return math.sqrt(weighted / dof) if dof else 0.0


def assess_noisy(name: str, entry: MetricBaseline, observed: Sequence[float],
                 better: Direction | None, pooled_sd: float = 0.0) -> Assessment:
    """The log-scale z test of one noisy metric over n candidate runs (rules in the module docstring)."""
    logs = recorded_log_values(entry)
    positive = [v for v in observed if v > 0]
    dof: float | None = None
    if logs and len(positive) == len(observed) and entry.expected > 0:
        own = robust_sd(logs)
        sd = max(own, pooled_sd, FLOOR_LOG_SD)
        centre_recorded = float(np.mean(logs))
        n_recorded = len(logs)
        # The cell's own N recorded runs set the spread: it is an estimate with N - 1 degrees of freedom.
        dof = float(n_recorded - 1) if sd == own and n_recorded >= 2 else None
    else:
        # Spread given without values (a hand-written file): std / expected is the relative sd.
        sd = max((entry.std or 0.0) / abs(entry.expected) if entry.expected else 0.0, FLOOR_LOG_SD)
        centre_recorded = math.log(abs(entry.expected)) if entry.expected else 0.0
        n_recorded = entry.n or 1
    candidate_logs = [math.log(v) for v in positive]
    # From MIN_RUNS_TO_FAIL runs on, the median: one slow engine start among them cannot move it.
    robust = len(candidate_logs) >= MIN_RUNS_TO_FAIL
    centre = (float(np.median(candidate_logs)) if robust else float(np.mean(candidate_logs))) \
        if candidate_logs else -math.inf
    efficiency = MEDIAN_VARIANCE_FACTOR if robust else 1.0
    sigma = sd * math.sqrt(efficiency / max(len(positive), 1) + 1.0 / n_recorded)
    change = centre - centre_recorded
    z = change / sigma if math.isfinite(change) else -math.inf
    p_harm, p_benefit = tails(z, better, dof)
    if len(observed) >= MIN_RUNS_TO_FAIL:
        p_harm = min(1.0, LOOKS * p_harm)
    rank_p = rank_test_p(observed, entry.values or [], better)
    corroborated = rank_p is not None and rank_p <= RANK_ALPHA
    can_fail = len(observed) >= MIN_RUNS_TO_FAIL and corroborated
    rank_text = "no rank test (one run)" if rank_p is None else f"Mann–Whitney p {rank_p:.3g}"
    detail = (f"{100.0 * (math.exp(change) - 1.0):+.1f}% from the recorded geometric mean over "
              f"{len(observed)} run(s) vs {n_recorded} recorded; z {z:+.2f} (sd {100 * sd:.1f}% per run); "
              f"{rank_text}")
    observed_mean = math.exp(centre) if math.isfinite(centre) else 0.0
    # The band is drawn around the recorded centre the test used.
    expected = math.exp(centre_recorded) if logs else entry.expected
    return Assessment(metric=name, kind="noisy", role=role_of(name), better=better, expected=expected,
                      observed=observed_mean, runs=len(observed), recorded_runs=n_recorded, p_harm=p_harm,
                      p_benefit=p_benefit, sigma=sigma, log_scale=True, can_fail=can_fail,
                      test="log-scale t on recorded spread + Mann–Whitney" if dof else
                      "log-scale z on recorded spread + Mann–Whitney", detail=detail, dof=dof)
