"""The three-valued comparison: DIFFERENT only on evidence, SAME only when a change would have shown."""

from __future__ import annotations

import random

import pytest

from fleet.compare import COUNTS_NOISE_FLOOR, Verdict, compare, high_threshold


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


def test_the_same_threshold_falls_as_the_visible_effect_grows() -> None:
    assert high_threshold(1.0) == 1.0
    assert high_threshold(3.0) > high_threshold(4.0) > high_threshold(6.0)


def test_comparing_nothing_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        compare([], [1.0], magnitude=0.1, kind="latency")
