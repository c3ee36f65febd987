"""A baseline judges only cells on the prompts it was measured on (Baseline.dataset): acceptance is a
property of the text as much as of the drafter, and the H200 tier runs its differential cells on the
shared-prefix prompts beside cells on the plain ones, under one baseline file per variant and model."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.baselines.record import record_baseline
from fleet.baselines.store import baseline_path, save_baseline
from fleet.errors import ConfigError
from fleet.judge import judge_cell
from fleet.model import RunResult, Workload
from fleet.run.plan import BaselineSet
from tests.judge.test_judge_stats import BASE_COUNTS, run


def on_prompts(prompts: str) -> RunResult:
    result = run(BASE_COUNTS)
    cell = result.cell.model_copy(update={"workload": Workload(prompts=prompts)})
    return result.model_copy(update={"cell": cell})


def test_a_cell_on_other_prompts_than_its_baseline_is_no_baseline_and_says_which() -> None:
    plain = [on_prompts("bundled:tiny-stdlib") for _ in range(5)]
    baseline = record_baseline(plain, command="test")
    shared = on_prompts("bundled:tiny-stdlib/shared-prefix")
    verdict = judge_cell(shared, baseline, baseline_path=None, result_path=None, attempts=1,
                         error=None)
    assert verdict.status == "NO_BASELINE"
    assert "'bundled:tiny-stdlib'" in verdict.message
    assert "'bundled:tiny-stdlib/shared-prefix'" in verdict.message
    assert judge_cell(plain[0], baseline, baseline_path=None, result_path=None, attempts=1,
                      error=None).status == "PASS"


def test_submit_preflight_counts_a_baseline_of_other_prompts_as_missing(tmp_path: Path) -> None:
    plain = [on_prompts("bundled:tiny-stdlib") for _ in range(5)]
    baseline = record_baseline(plain, command="test")
    cell = plain[0].cell
    hardware, variant, slug = cell.baseline_key
    save_baseline(baseline_path(tmp_path, hardware, variant, slug), baseline)
    BaselineSet(tmp_path).require_all([cell], "local")
    shared = cell.model_copy(update={"workload": Workload(prompts="bundled:tiny-stdlib/shared-prefix")})
    with pytest.raises(ConfigError, match="1 of 1 cells have no baseline"):
        BaselineSet(tmp_path).require_all([shared], "local")
