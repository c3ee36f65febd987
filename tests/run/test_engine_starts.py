"""A run measured over several engine starts (Workload.engine_starts): the suite, the record and the judge."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from fleet.baselines.record import record_baseline
from fleet.judge import judge_cells, summarize
from fleet.judge.best_run import PRIOR_RUNS, PRIOR_SLOW, SlowRecord, prior_slow_runs
from fleet.judge.verdicts import CellCase
from fleet.model import Baseline, Cell, Measurement, RequestTiming, RunResult
from fleet.report import render_text
from fleet.suite.derive import median_over_starts
from fleet.suite.engines.base import EngineRun
from fleet.suite.engines.vllm_job import child_job
from fleet.suite.prompts import load_prompts
from fleet.suite.runner import run_suite
from tests.judge.test_judge_moderation import PATTERN
from tests.judge.test_judge_stats import BASE_COUNTS, run
from tests.suite.engines.test_vllm_engine import h200_cell
from tests.suite.test_suite_runner import FakeEngine, cell_document

SPREAD = 0.03


class StartsEngine(FakeEngine):
    """Each speculative start decodes at the next of `tpots` seconds per token."""

    def __init__(self, tpots: Sequence[float]) -> None:
        super().__init__()
        self.tpots = list(tpots)

    def run_speculative(self, cell: Cell, prompts: Sequence[str], *, latency_only: bool = False) -> EngineRun:
        self.calls.append("speculative (latency only)" if latency_only else "speculative")
        tpot = self.tpots[sum(call.startswith("speculative") for call in self.calls) - 1]
        timings = [RequestTiming(prompt_index=i, prompt_tokens=3, output_tokens=9, ttft_s=0.1, tpot_s=tpot,
                                 e2e_s=0.1 + 8 * tpot) for i in range(len(prompts))]
        measurement = Measurement(token_ids=[[1, 2]] * len(prompts), timings=timings, engine_start_s=1.0)
        return EngineRun(measurement=measurement)


def cell_with_starts(starts: int) -> Cell:
    document = cell_document()
    document["workload"]["engine_starts"] = starts
    return Cell.model_validate(document)


def test_three_starts_make_three_speculative_engines_and_report_their_median_latency() -> None:
    engine = StartsEngine([0.010, 0.017, 0.011])  # the second start slow as a whole, +70 %
    result = run_suite(cell_with_starts(3), engine=engine, reference_cache=None)
    # The further starts need only their timed singles: the first start's outputs and counters stand.
    assert engine.calls == ["reference", "speculative", *["speculative (latency only)"] * 2]
    assert [start.metrics["tpot_p50_ms"] for start in result.starts] == pytest.approx([10.0, 17.0, 11.0])
    assert result.metrics["tpot_p50_ms"] == pytest.approx(11.0)  # the slow start does not move it
    assert result.metrics["speedup"] == pytest.approx(float(np.median([s.metrics["speedup"]
                                                                      for s in result.starts])))
    assert all(start.engine_start_s == 1.0 for start in result.starts)
    assert "reference_tpot_p50_ms" not in result.starts[0].metrics  # one reference serves every start
    # The outputs and the first start's timings are kept as with one start.
    assert result.speculative is not None and result.speculative.timings[0].tpot_s == 0.010
    assert RunResult.model_validate_json(result.model_dump_json()) == result


def test_one_start_writes_the_result_document_as_before() -> None:
    result = run_suite(cell_with_starts(1), engine=StartsEngine([0.010]), reference_cache=None)
    assert result.starts == []
    assert result.metrics["tpot_p50_ms"] == pytest.approx(10.0)
    assert "starts" not in result.model_dump(exclude_defaults=True)


def test_the_median_over_starts_takes_each_metric_from_the_starts_that_measured_it() -> None:
    starts = [{"tpot_p50_ms": 3.0, "speedup": 1.5}, {"tpot_p50_ms": 1.0},
              {"tpot_p50_ms": 2.0, "speedup": 1.7}]
    assert median_over_starts(starts) == {"speedup": pytest.approx(1.6), "tpot_p50_ms": 2.0}


def test_a_run_of_three_starts_is_slow_a_priori_only_when_two_of_them_are() -> None:
    assert prior_slow_runs(1) == PRIOR_SLOW
    one = PRIOR_SLOW / PRIOR_RUNS
    assert prior_slow_runs(3) / PRIOR_RUNS == pytest.approx(3 * one**2 * (1 - one) + one**3)  # 1 in 138
    assert prior_slow_runs(2) / PRIOR_RUNS == pytest.approx(1 - (1 - one) ** 2)  # a median of two is a mean
    assert SlowRecord(starts=3).rate == pytest.approx(prior_slow_runs(3) / PRIOR_RUNS)
    # A pool mixing records keeps the likelier prior, that of the fewer starts.
    assert (SlowRecord(0, 10, 3) + SlowRecord(0, 10, 1)).starts == 1
    assert (SlowRecord() + SlowRecord(1, 10, 3)).rate == pytest.approx((prior_slow_runs(3) + 1) / 30)


# --- recording and judging ------------------------------------------------------------------------------


def over_starts(result: RunResult, starts: int) -> RunResult:
    workload = result.cell.workload.model_copy(update={"engine_starts": starts})
    return result.model_copy(update={"cell": result.cell.model_copy(update={"workload": workload})})


def recorded(name: str, starts: int) -> Baseline:
    runs = [over_starts(run(BASE_COUNTS, tpot=5.0 * math.exp(v), name=name), starts)
            for v in SPREAD * PATTERN]
    return record_baseline(runs, command="t")


def test_a_baseline_records_how_many_starts_each_of_its_runs_took() -> None:
    assert recorded("c0", 3).engine_starts == 3
    assert "median of 3 speculative engine starts" in recorded("c0", 3).notes
    assert recorded("c0", 1).engine_starts is None  # one start: the file reads as before
    mixed = [over_starts(run(BASE_COUNTS, name="c0"), starts) for starts in (1, 3)]
    with pytest.raises(ValueError, match="different numbers of engine starts"):
        record_baseline(mixed, command="t")


def tpot_status(factors: list[float], starts: int) -> str:
    pool = [recorded(f"c{i}", starts) for i in range(20)]
    candidates = [over_starts(run(BASE_COUNTS, tpot=5.0 * f, name="c0"), starts) for f in factors]
    case = CellCase(candidates[-1], pool[0], None, None, len(candidates), None, candidates=tuple(candidates))
    verdict = judge_cells([case], family_size=252, pool=pool)[0]
    return {m.metric: m for m in verdict.metrics}["tpot_p50_ms"].status


def test_four_runs_ten_percent_slower_fail_when_each_is_the_median_of_three_starts() -> None:
    # With single starts one run in twenty may be slow as a whole, and four slow runs in a row are too
    # likely to call at a 252-test nightly's fourth look; a median of three is slow one time in 138.
    factors = [1.10 * f for f in (1.0, 1.02, 0.99, 1.03)]
    assert tpot_status(factors, starts=1) == "INCONCLUSIVE"
    assert tpot_status(factors, starts=3) == "FAIL"


def test_unchanged_runs_of_three_starts_pass() -> None:
    assert tpot_status([1.0, 1.01, 0.99], starts=3) == "PASS"


def test_runs_over_other_starts_than_the_baselines_are_not_judged_against_it() -> None:
    baseline = recorded("c0", 1)
    candidate = over_starts(run(BASE_COUNTS, name="c0"), 3)
    [verdict] = judge_cells([CellCase(candidate, baseline, "baselines/cpu/x.json", None, 1, None)])
    assert verdict.status == "NO_BASELINE"
    assert "one engine start, this cell's the median of 3 engine starts" in verdict.message
    assert "--update" in verdict.message
    report = summarize([verdict], run_id="r1", tier="smoke", backend="local",
                       started_at="2026-12-05T07:00:00Z", finished_at="2026-12-05T07:10:00Z")
    lines = render_text(report, {verdict.cell_id: candidate}, {verdict.cell_id: baseline}).splitlines()
    assert f"Baseline cannot judge this cell: {verdict.message}" in lines
    assert any(line.startswith("     fleet baseline record --tier ") and f"--hardware {verdict.hardware} "
               f"--variant {verdict.variant} --update" in line for line in lines)


def test_a_latency_only_start_asks_the_vllm_child_for_the_singles_alone() -> None:
    cell = h200_cell("draft_model-k4")
    prompts = load_prompts(cell.workload)
    assert child_job(cell, prompts, "speculative")["measure_batch"] is True
    job = child_job(cell, prompts, "speculative", latency_only=True)
    assert job["measure_batch"] is False and job["single_prompts"] > 0
