"""The latency practical bound (fleet.judge.noisy.PRACTICAL_RISE): fewer runs than can FAIL, sitting a
fifth or more the wrong way on a median, are never a pass, however noisy the cell's recorded runs."""

from __future__ import annotations

from fleet.baselines.record import record_baseline
from fleet.judge import decide, gather
from fleet.model import Baseline, MetricVerdict, RunResult
from tests.judge.test_judge_stats import BASE_COUNTS, run

#: A host-bound cell: recorded TPOT spreads ~25 % (log sd), as the tiny model's cells on the H200 do.
NOISY_TPOTS = [3.0, 3.9, 4.7, 2.9, 3.6, 5.2, 3.4, 4.1]
#: Their geometric mean.
CENTRE = 3.77


def with_p90(result: RunResult, p50: float, p90: float) -> RunResult:
    return result.model_copy(update={"metrics": result.metrics | {"tpot_p50_ms": p50, "tpot_p90_ms": p90}})


def recorded_noisy() -> Baseline:
    return record_baseline([with_p90(run(BASE_COUNTS), t, 1.3 * t) for t in NOISY_TPOTS], command="test")


def final_verdicts(results: list[RunResult]) -> dict[str, MetricVerdict]:
    baseline = recorded_noisy()
    [verdicts] = decide([gather(results, baseline)], final=True)
    return {v.metric: v for v in verdicts}


def test_one_run_thirty_percent_slower_on_a_noisy_cell_is_inconclusive_not_a_pass() -> None:
    verdict = final_verdicts([with_p90(run(BASE_COUNTS), 1.3 * CENTRE, 1.3 * 1.3 * CENTRE)])["tpot_p50_ms"]
    assert verdict.status == "INCONCLUSIVE"
    assert "practical bound" in verdict.detail


def test_one_run_within_the_bound_passes_on_the_same_cell() -> None:
    assert final_verdicts([with_p90(run(BASE_COUNTS), 1.1 * CENTRE, 1.3 * CENTRE)])["tpot_p50_ms"].status \
        == "PASS"


def test_a_tail_percentile_is_left_to_the_spread() -> None:
    # One run's p90 of a few dozen prompts hangs on a handful of requests: no practical bound there.
    verdict = final_verdicts([with_p90(run(BASE_COUNTS), CENTRE, 1.3 * 1.3 * CENTRE)])["tpot_p90_ms"]
    assert verdict.status == "PASS"


def test_from_three_runs_on_the_tests_decide_alone() -> None:
    runs = [with_p90(run(BASE_COUNTS), t * CENTRE, 1.3 * t * CENTRE) for t in (1.22, 1.25, 1.21)]
    assert "practical bound" not in final_verdicts(runs)["tpot_p50_ms"].detail
