"""Sharded runs: each cell in exactly one shard, shards balanced, merged shards give one run's verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.cli import main
from fleet.errors import ConfigError
from fleet.judge.verdicts import summarize
from fleet.model import CellVerdict, RunReport, Status
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.cost import JobSpan
from fleet.plan.matrix import expand
from fleet.plan.sharding import assign_shards, expected_costs, merge_reports, recorded_seconds, shard_cells

JOBS = Path(__file__).resolve().parents[2] / "jobs"
STATUSES: list[Status] = ["PASS", "FAIL", "INCONCLUSIVE", "NO_BASELINE", "SKIPPED", "ERROR"]

costs_strategy = st.dictionaries(st.text(min_size=1, max_size=12),
                                 st.floats(min_value=1.0, max_value=10_000.0), max_size=60)


@given(costs_strategy)
def test_four_shards_cover_every_cell_exactly_once_when_cells_are_arbitrary(costs: dict[str, float]) -> None:
    shards = assign_shards(costs, 4)
    assert len(shards) == 4
    flattened = [cell_id for shard in shards for cell_id in shard]
    assert sorted(flattened) == sorted(costs)


@given(costs_strategy, st.integers(min_value=1, max_value=9))
def test_assignment_is_stable_when_cells_are_listed_in_another_order(costs: dict[str, float],
                                                                     num_shards: int) -> None:
    reordered = dict(reversed(list(costs.items())))
    assert assign_shards(costs, num_shards) == assign_shards(reordered, num_shards)


@given(costs_strategy, st.integers(min_value=1, max_value=9))
def test_no_shard_exceeds_the_lpt_bound_when_costs_vary(costs: dict[str, float], num_shards: int) -> None:
    loads = [sum(costs[c] for c in shard) for shard in assign_shards(costs, num_shards)]
    biggest = max(costs.values(), default=0.0)
    # Greedy LPT: the fullest shard exceeds the mean load by at most the largest single cost.
    assert max(loads) <= sum(costs.values()) / num_shards + biggest + 1e-6


def test_nightly_shards_balance_by_timeout_when_there_is_no_history() -> None:
    cells = expand(load_tier(JOBS, "nightly"), load_catalog(JOBS), tier_path="jobs/nightly.yaml")
    shards = [shard_cells(cells, index, 4) for index in range(4)]
    assert sorted(c.id for shard in shards for c in shard) == sorted(c.id for c in cells)
    sizes = sorted(len(shard) for shard in shards)
    assert sizes[-1] - sizes[0] <= 1  # equal timeouts: counts differ by at most one


def test_recorded_gpu_time_outweighs_the_timeout_when_history_has_it() -> None:
    cells = expand(load_tier(JOBS, "nightly"), load_catalog(JOBS), tier_path="jobs/nightly.yaml")
    slow = cells[0].id
    spans = [JobSpan(cell_id=slow, hardware="l4", gpu_count=1, started_at=0.0, finished_at=5000.0),
             JobSpan(cell_id=slow, hardware="l4", gpu_count=1, started_at=0.0, finished_at=7000.0),
             JobSpan(cell_id=slow, hardware="l4", gpu_count=1, started_at=0.0, finished_at=9000.0)]
    recorded = recorded_seconds(spans)
    assert recorded == {slow: 7000.0}
    costs = expected_costs(cells, recorded)
    assert costs[slow] == 7000.0 and costs[cells[1].id] == float(cells[1].timeout_s)
    # The slow cell is worth many ordinary ones, so its shard gets fewer cells than the others.
    shards = [shard_cells(cells, index, 2, recorded) for index in range(2)]
    with_slow = next(shard for shard in shards if any(c.id == slow for c in shard))
    assert len(with_slow) < len(cells) - len(with_slow)


def test_shard_id_out_of_range_is_a_config_error_when_it_is_not_below_num_shards() -> None:
    cells = expand(load_tier(JOBS, "nightly"), load_catalog(JOBS), tier_path="jobs/nightly.yaml")
    with pytest.raises(ConfigError, match="shard 4 does not exist"):
        shard_cells(cells, 4, 4)


def verdict(index: int, status: Status) -> CellVerdict:
    return CellVerdict(cell_id=f"cell-{index:03d}", variant="eagle3", model="m", hardware="l4", status=status)


def report(cells: list[CellVerdict], run_id: str) -> RunReport:
    return summarize(cells, run_id=run_id, tier="nightly", backend="kube", started_at="2026-11-28T03:00:00",
                     finished_at="2026-11-28T03:40:00", rule="auto", error_control="holm", alpha=0.01)


@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=30), st.integers(min_value=1, max_value=6))
def test_merged_shards_equal_the_unsharded_report_when_cells_are_split_any_way(statuses: list[Status],
                                                                              num_shards: int) -> None:
    cells = [verdict(index, status) for index, status in enumerate(statuses)]
    whole = report(cells, "whole")
    assignment = assign_shards({cell.cell_id: 1.0 for cell in cells}, num_shards)
    by_id = {cell.cell_id: cell for cell in cells}
    parts = [report([by_id[c] for c in shard], f"s{index}") for index, shard in enumerate(assignment)]
    merged = merge_reports(parts)
    assert merged.cells == whole.cells
    assert (merged.status, merged.exit_code) == (whole.status, whole.exit_code)
    assert merged.tier == "nightly" and merged.rule == "auto" and merged.alpha == 0.01


def test_merge_refuses_shards_when_a_cell_is_in_two_of_them() -> None:
    first = report([verdict(0, "PASS"), verdict(1, "PASS")], "a")
    second = report([verdict(1, "FAIL")], "b")
    with pytest.raises(ConfigError, match="cell-001 is in two shards"):
        merge_reports([first, second])


def test_merge_refuses_shards_when_tiers_differ() -> None:
    first = report([verdict(0, "PASS")], "a")
    second = report([verdict(1, "PASS")], "b").model_copy(update={"tier": "weekly"})
    with pytest.raises(ConfigError, match="different tiers"):
        merge_reports([first, second])


def test_fleet_merge_exits_with_the_union_verdict_when_one_shard_regressed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = [report([verdict(0, "PASS"), verdict(2, "PASS")], "s0"), report([verdict(1, "FAIL")], "s1")]
    dirs = []
    for shard in shards:
        run_dir = tmp_path / shard.run_id
        run_dir.mkdir()
        (run_dir / "report.json").write_text(shard.model_dump_json())
        dirs.append(str(run_dir))
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", *dirs, "--json", "--report-dir", str(tmp_path / "merged")])
    assert exit_info.value.code == 1
    merged = json.loads(capsys.readouterr().out)
    assert merged["status"] == "FAIL"
    assert [c["cell_id"] for c in merged["cells"]] == ["cell-000", "cell-001", "cell-002"]
    assert {p.name for p in (tmp_path / "merged").iterdir()} == {"report.txt", "report.json", "junit.xml",
                                                                 "report.md"}


def test_submit_refuses_a_shard_id_when_num_shards_is_missing(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(JOBS.parent)
    with pytest.raises(SystemExit) as exit_info:
        main(["submit", "--tier", "nightly", "--shard-id", "0", "--history-db", ""])
    assert exit_info.value.code == 2
    assert "--shard-id and --num-shards go together" in capsys.readouterr().err


def test_a_cell_no_shard_reported_is_an_error_when_all_cells_are_expected() -> None:
    cells = expand(load_tier(JOBS, "nightly"), load_catalog(JOBS), tier_path="jobs/nightly.yaml")
    passing = [CellVerdict(cell_id=c.id, variant=c.variant.name, model=c.model, hardware=c.hardware.name,
                           status="PASS") for c in cells[1:]]
    merged = merge_reports([report(passing, "s0")], expected_cells=cells)
    assert (merged.status, merged.exit_code) == ("ERROR", 3)
    lost = next(c for c in merged.cells if c.cell_id == cells[0].id)
    assert lost.status == "ERROR" and lost.error is not None and lost.error.reason == "NoResult"
    assert merge_reports([report(passing, "s0")]).status == "PASS"  # not asked: the shards' cells only


def test_merge_expects_the_cells_of_the_filters_the_shards_ran_with_and_takes_a_shard_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = expand(load_tier(JOBS, "nightly"), load_catalog(JOBS), tier_path="jobs/nightly.yaml")
    on_l4 = [c for c in cells if c.hardware.name == "l4"]
    assert 0 < len(on_l4) < len(cells)
    shard = report([CellVerdict(cell_id=c.id, variant=c.variant.name, model=c.model, hardware=c.hardware.name,
                                status="PASS") for c in on_l4], "s0")
    run_dir = tmp_path / shard.run_id
    run_dir.mkdir()
    (run_dir / "report.json").write_text(shard.model_dump_json())
    with pytest.raises(SystemExit) as exit_info:
        again = tmp_path / ".." / tmp_path.name / shard.run_id  # the same folder, by another glob
        main(["merge", str(run_dir), str(again), "--expect-all-cells", "--hardware", "l4", "--json",
              "--jobs", str(JOBS)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    assert len(json.loads(captured.out)["cells"]) == len(on_l4) and "given more than once" in captured.err
