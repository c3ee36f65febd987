"""The three-valued comparison: DIFFERENT only on evidence, SAME only when a change would have shown."""

from __future__ import annotations

import random

import pytest

from fleet.judge.compare import COUNTS_NOISE_FLOOR, Spread, Verdict, compare, compare_best_run, high_threshold


def test_identical_counter_metrics_are_same_from_one_run_each() -> None:
    assert compare([1.70972], [1.70972], magnitude=0.10, kind="acceptance").verdict is Verdict.SAME


def test_a_five_percent_acceptance_drop_is_different_from_one_run_each() -> None:
    result = compare([2.0], [1.9], magnitude=0.05, kind="acceptance")
    assert result.verdict is Verdict.DIFFERENT
    assert result.relative_difference == pytest.approx(-0.05)


def test_a_change_within_ngram_jitter_is_never_different() -> None:
    result = compare([2.191], [2.214], magnitude=0.03, kind="acceptance")
    assert result.verdict is not Verdict.DIFFERENT


def test_one_run_each_cannot_call_a_small_hunted_change_same() -> None:
    # A 1 % hunted change is below what one run each can rule out at the noise floor.
    assert compare([2.0], [2.0], magnitude=COUNTS_NOISE_FLOOR, kind="acceptance").verdict is Verdict.UNKNOWN


def test_latency_needs_several_runs_before_it_calls_anything_different() -> None:
    assert compare([10.0], [13.0], magnitude=0.3, kind="latency").verdict is Verdict.UNKNOWN


def test_latency_samples_far_apart_are_different_and_close_ones_same() -> None:
    rng = random.Random(3)
    base = [10 * (1 + rng.gauss(0, 0.05)) for _ in range(20)]
    slower = [13 * (1 + rng.gauss(0, 0.05)) for _ in range(20)]
    again = [10 * (1 + rng.gauss(0, 0.05)) for _ in range(20)]
    assert compare(base, slower, magnitude=0.3, kind="latency").verdict is Verdict.DIFFERENT
    assert compare(base, again, magnitude=0.3, kind="latency").verdict is Verdict.SAME


def test_one_latency_run_each_is_never_called_same_however_large_the_hunted_change() -> None:
    # A rank test gives p = 1 for one run each whatever the runs are: that p says nothing, not SAME.
    assert compare([10.0], [13.4], magnitude=0.34, kind="latency").verdict is Verdict.UNKNOWN


def test_latency_sets_entirely_apart_are_not_called_same_below_five_runs_a_side() -> None:
    # Apart by the whole hunted change, no overlap: the smallest p-value a rank test gives at 2 and 3 runs.
    result = compare([10.0, 10.1], [13.5, 13.6, 13.7], magnitude=0.35, kind="latency")
    assert result.p_value == pytest.approx(0.2)
    assert result.verdict is Verdict.UNKNOWN


def test_latency_with_a_spread_known_from_more_runs_decides_from_one_run_each() -> None:
    # TPOT p50 of the GPU-bound 8B-shaped cell: 2.67 ms, relative sd 2.65 % over 10 engine starts.
    recorded = Spread(0.0265, 9)
    slower = compare([2.67], [3.20], magnitude=0.20, kind="latency", noise=recorded)
    same = compare([2.67], [2.68], magnitude=0.20, kind="latency", noise=recorded)
    assert (slower.verdict, slower.method) == (Verdict.DIFFERENT, "known spread")
    assert same.verdict is Verdict.SAME


def test_a_known_latency_spread_is_an_estimate_and_never_below_the_floor() -> None:
    # +10 % is 2.7 standard errors at 2.65 %: significant for the normal, not for t with 9 dof (p 0.026).
    assert compare([2.67], [2.94], magnitude=0.10, kind="latency", noise=Spread(0.0265, 9)).verdict \
        is Verdict.UNKNOWN
    # One lease's 0.04 % for the non-speculative reference is not believed: 2 % is the least spread used.
    assert compare([10.0], [10.03], magnitude=0.05, kind="latency", noise=Spread(0.0004, 9)).verdict \
        is not Verdict.DIFFERENT
    assert compare([10.0], [10.0], magnitude=0.05, kind="latency", noise=Spread(0.0, 9)).verdict \
        is not Verdict.DIFFERENT  # an sd of 0 recorded: no division by zero


def test_the_same_threshold_falls_as_the_visible_effect_grows() -> None:
    assert high_threshold(1.0) == 1.0
    assert high_threshold(3.0) > high_threshold(4.0) > high_threshold(6.0)


def test_comparing_nothing_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        compare([], [1.0], magnitude=0.1, kind="latency")


def test_a_culprit_slower_even_at_its_best_run_is_different_from_two_runs_each() -> None:
    # The rank tests cannot reach p <= 0.01 with two runs a side however far apart they are.
    parent, culprit = [2.67, 2.70], [3.30, 3.36]
    assert compare(parent, culprit, magnitude=0.2, kind="latency").verdict is not Verdict.DIFFERENT
    check = compare_best_run(parent, culprit, noise=Spread(0.0265, 19), slow_side=1)
    assert check.verdict is Verdict.DIFFERENT and check.n == (2, 2)


def test_a_comparison_that_cannot_say_same_does_not_print_a_threshold_for_it() -> None:
    check = compare_best_run([2.67, 2.70], [3.30, 3.36], noise=Spread(0.0265, 19), slow_side=1)
    assert "SAME out of reach" in check.describe() and "same above" not in check.describe()
    assert "same above 0.01," in compare([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], magnitude=0.2,
                                       kind="acceptance").describe()


def test_one_slow_start_among_the_culprits_runs_does_not_make_it_different() -> None:
    check = compare_best_run([2.67, 2.70], [2.69, 3.40], noise=Spread(0.0265, 19), slow_side=1)
    assert check.verdict is Verdict.UNKNOWN


def test_every_culprit_run_a_slow_start_stays_possible_at_the_priors_rate() -> None:
    # Two runs can be two slow starts (E[r^2] under one in twenty worth twenty runs: 2 / 420); three rarely.
    two = compare_best_run([2.67, 2.70], [9.0, 9.1], noise=Spread(0.0265, 19), slow_side=1)
    three = compare_best_run([2.67, 2.70], [9.0, 9.1, 9.2], noise=Spread(0.0265, 19), slow_side=1)
    assert 2 / 420 <= two.p_value <= 0.01 and three.p_value < 2 / 420


def test_the_run_that_chose_a_culprit_is_no_evidence_against_it() -> None:
    # A search puts a commit on the bad side for reading slow; only the runs after that one count.
    noise = Spread(0.0265, 19)
    two = compare_best_run([2.67, 2.70], [3.30, 3.36], noise=noise, slow_side=1, chosen=1)
    three = compare_best_run([2.67, 2.70], [3.30, 3.36, 3.31], noise=noise, slow_side=1, chosen=1)
    assert two.verdict is Verdict.UNKNOWN and two.p_value >= 1 / 20
    assert three.verdict is Verdict.DIFFERENT


def test_a_metric_whose_slow_starts_read_low_is_judged_on_its_highest_run() -> None:
    # Speedup: a slow start lowers it, so a fall is the slowdown and a rise never is.
    def verdict(culprit: list[float]) -> Verdict:
        return compare_best_run([1.80, 1.82], culprit, noise=Spread(0.0265, 19), slow_side=-1).verdict

    assert verdict([1.40, 1.42]) is Verdict.DIFFERENT
    assert verdict([2.30, 2.32]) is Verdict.UNKNOWN and verdict([1.40, 1.81]) is Verdict.UNKNOWN


def test_a_run_that_read_zero_leaves_the_best_run_test_unknown() -> None:
    check = compare_best_run([2.67, 0.0], [3.30, 3.36, 3.31], noise=Spread(0.0265, 19), slow_side=1)
    assert check.verdict is Verdict.UNKNOWN and check.p_value == 1.0
