"""The differential judge: pairs of cells that differ in one execution axis, judged against each other."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from fleet.judge.decide import decide, gather
from fleet.judge.differential import judge_differentials, pairs_of, planned_pairs
from fleet.judge.verdicts import summarize, with_differentials
from fleet.model import Baseline, MetricBaseline, RunResult
from tests.builders import counted_result, make_cell, with_execution

REPO = Path(__file__).resolve().parents[2]
SERIES = REPO / "evidence" / "h200" / "series"
#: ngram-k4's recorded per-position counts on the H200 (series s8): 1327 drafts, AL 2.197.
NGRAM_DRAFTS, NGRAM_POSITIONS = 1327, [632, 423, 317, 217]


def _recorded(run: str, variant: str, **axes: str) -> RunResult:
    result = RunResult.model_validate_json(
        (SERIES / run / f"{variant}__tiny-stdlib-target__h200.json").read_text())
    return result.model_copy(update={"cell": with_execution(result.cell, **axes)})


def test_acceptance_collapsing_with_prefix_caching_on_diverges_and_names_the_axis_value() -> None:
    base = make_cell()
    off = counted_result(with_execution(base, prefix_caching="off"), NGRAM_DRAFTS, NGRAM_POSITIONS,
                         matches=40)
    on = counted_result(with_execution(base, prefix_caching="on"), 1400, [25, 3, 0, 0], matches=40)
    [verdict] = judge_differentials([off, on])
    assert verdict.status == "DIVERGES"
    assert verdict.axis == "prefix_caching"
    assert verdict.message.startswith("acceptance length 1.02 with prefix_caching=on vs 2.2 with "
                                      "prefix_caching=off")
    assert summarize([], run_id="r", tier="t", backend="b", started_at="", finished_at="",
                     differentials=[verdict]).exit_code == 1
    # The per-position rates say where it broke.
    assert {m.metric for m in verdict.metrics if m.status == "DIVERGES"} >= {"acceptance_length",
                                                                            "acceptance_rate_pos_0"}


def test_a_five_percent_drop_with_the_counts_to_show_it_diverges() -> None:
    base = make_cell()
    good = counted_result(with_execution(base, cudagraph="full"), 20 * NGRAM_DRAFTS,
                          [20 * n for n in NGRAM_POSITIONS])
    worse = counted_result(with_execution(base, cudagraph="none"), 20 * NGRAM_DRAFTS,
                           [int(20 * n * 0.909) for n in NGRAM_POSITIONS])
    [verdict] = judge_differentials([good, worse])
    assert verdict.status == "DIVERGES"
    assert "with cudagraph=none vs" in verdict.message


def test_a_drop_beyond_the_practical_bound_that_few_drafts_cannot_show_is_inconclusive() -> None:
    base = make_cell()  # the CPU reference engine's ngram cell: 165 drafts
    off = counted_result(with_execution(base, prefix_caching="off"), 165, [68, 47, 35, 21])
    on = counted_result(with_execution(base, prefix_caching="on"), 165, [60, 41, 31, 18])  # -6 %
    [verdict] = judge_differentials([off, on])
    assert verdict.status == "INCONCLUSIVE"
    assert "practical bound" in verdict.message


def test_a_match_rate_collapse_diverges_on_the_match_rate() -> None:
    base = make_cell()
    full = counted_result(with_execution(base, cudagraph="full"), NGRAM_DRAFTS, NGRAM_POSITIONS, matches=0)
    piecewise = counted_result(with_execution(base, cudagraph="piecewise"), NGRAM_DRAFTS, NGRAM_POSITIONS,
                               matches=45)
    [verdict] = judge_differentials([full, piecewise])
    assert verdict.status == "DIVERGES"
    assert verdict.message.startswith("match rate 0 with cudagraph=full vs 0.9 with cudagraph=piecewise")


def test_two_recorded_runs_of_one_cell_as_an_a_a_pair_are_the_same() -> None:
    # s9 and s2: the furthest apart of the recorded ngram runs (acceptance length 2.149 vs 2.210).
    [verdict] = judge_differentials([_recorded("s9", "ngram-k4", prefix_caching="off"),
                                     _recorded("s2", "ngram-k4", prefix_caching="on")])
    assert verdict.status == "SAME"
    assert verdict.message.startswith("acceptance length 2.149 with prefix_caching=off vs 2.21 with "
                                      "prefix_caching=on")


@pytest.mark.parametrize("variant", ["ngram-k4", "draft_model-k4"])
def test_every_pair_of_recorded_h200_runs_of_a_cell_is_the_same(variant: str) -> None:
    runs = sorted(path.name for path in SERIES.iterdir() if path.is_dir())
    for first, second in itertools.combinations(runs, 2):
        [verdict] = judge_differentials([_recorded(first, variant, cudagraph="full"),
                                         _recorded(second, variant, cudagraph="none")])
        assert verdict.status == "SAME", (first, second, verdict.message)


def test_cells_that_differ_in_two_axes_are_not_paired() -> None:
    base = make_cell()
    a = counted_result(with_execution(base, cudagraph="full", prefix_caching="off"), 100, [50, 20, 5, 1])
    b = counted_result(with_execution(base, cudagraph="none", prefix_caching="on"), 100, [2, 0, 0, 0])
    assert pairs_of([a, b]) == []
    assert judge_differentials([a, b]) == []


def test_a_cell_without_a_partner_has_no_differential_verdict() -> None:
    alone = counted_result(with_execution(make_cell(), prefix_caching="on"), 100, [50, 20, 5, 1])
    other_variant = counted_result(with_execution(make_cell("ngram-k2"), prefix_caching="off"), 100,
                                   [2, 0, 0, 0])
    no_axes = counted_result(make_cell(), 100, [2, 0, 0, 0])
    assert judge_differentials([alone]) == []
    assert judge_differentials([alone, other_variant, no_axes]) == []


def test_three_cudagraph_modes_by_two_prefix_caching_values_make_nine_pairs() -> None:
    cells = [with_execution(make_cell(), cudagraph=mode, prefix_caching=cache)
             for mode in ("full", "piecewise", "none") for cache in ("off", "on")]
    found = planned_pairs(cells)
    assert len(found) == 9
    assert sorted(axis for axis, _, _ in found).count("prefix_caching") == 3


def test_several_runs_of_a_side_are_pooled() -> None:
    base = make_cell()
    on = with_execution(base, prefix_caching="on")
    runs = [counted_result(on, NGRAM_DRAFTS, NGRAM_POSITIONS) for _ in range(2)]
    off = counted_result(with_execution(base, prefix_caching="off"), NGRAM_DRAFTS, NGRAM_POSITIONS)
    [verdict] = judge_differentials([*runs, off])
    assert (verdict.runs_a, verdict.runs_b) == (1, 2)
    assert verdict.metrics[0].trials_b == 2 * NGRAM_DRAFTS


def test_the_pairs_share_the_runs_family_so_other_tests_make_them_stricter() -> None:
    base = make_cell()
    off = counted_result(with_execution(base, prefix_caching="off"), 4 * NGRAM_DRAFTS,
                         [4 * n for n in NGRAM_POSITIONS])
    on = counted_result(with_execution(base, prefix_caching="on"), 4 * NGRAM_DRAFTS,
                        [int(4 * n * 0.95) for n in NGRAM_POSITIONS])
    [alone] = judge_differentials([off, on])
    [among] = judge_differentials([off, on], others=[0.5] * 300)
    assert alone.metrics[0].adjusted_p is not None and among.metrics[0].adjusted_p is not None
    assert among.metrics[0].adjusted_p > alone.metrics[0].adjusted_p


def test_the_baseline_verdicts_count_the_pairs_in_their_family() -> None:
    cell = make_cell()
    baseline = Baseline(variant=cell.variant.name, model=cell.model, hardware="cpu", baselines={
        "acceptance_length": MetricBaseline(expected=2.2, tolerance_pct=5,
                                            values=[2.19, 2.2, 2.21, 2.2, 2.2])})
    evidence = gather([counted_result(cell, NGRAM_DRAFTS, [600, 400, 300, 200])], baseline)
    [[alone]] = decide([evidence], final=True)
    [[among]] = decide([evidence], final=True, others=[0.5] * 9)
    assert alone.adjusted_p is not None and among.adjusted_p == pytest.approx(10 * alone.adjusted_p)


def test_a_report_given_pairs_later_takes_their_status_and_keeps_its_cost() -> None:
    base = make_cell()
    off = counted_result(with_execution(base, prefix_caching="off"), NGRAM_DRAFTS, NGRAM_POSITIONS)
    on = counted_result(with_execution(base, prefix_caching="on"), 1400, [25, 3, 0, 0])
    report = summarize([], run_id="r", tier="t", backend="b", started_at="", finished_at="")
    report = report.model_copy(update={"cost": {"total": {}}})
    merged = with_differentials(report, judge_differentials([off, on]))
    assert (merged.status, merged.exit_code, merged.cost) == ("FAIL", 1, {"total": {}})
    assert with_differentials(report, []) is report
