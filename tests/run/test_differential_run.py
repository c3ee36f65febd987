"""`fleet judge` of result files or a folder: the differential pairs are judged beside the cells, need no
baseline, share the run's family, and a DIVERGES fails the run with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fleet.cli import cli
from fleet.model import RunResult
from fleet.run.controller import CellOutcome, judge_run
from fleet.run.plan import BaselineSet
from fleet.run.rejudge import judge_files
from tests.builders import counted_result, make_cell, with_execution

RECORDED = [632, 423, 317, 217]  # ngram-k4's counts on the H200 (evidence/h200/series/s8)


def _write(folder: Path, name: str, result: RunResult) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(result.model_dump_json())
    return path


def _pair(tmp_path: Path, on_positions: list[int]) -> list[Path]:
    base = make_cell()
    off = counted_result(with_execution(base, prefix_caching="off"), 1327, RECORDED, matches=40)
    on = counted_result(with_execution(base, prefix_caching="on"), 1327, on_positions, matches=40)
    return [_write(tmp_path / "results", "off.json", off), _write(tmp_path / "results", "on.json", on)]


def _judge(tmp_path: Path, files: list[Path]) -> tuple[str, int, dict[str, object]]:
    (tmp_path / "baselines").mkdir(exist_ok=True)
    done = judge_files(files, tmp_path / "baselines", rule="auto", method="holm", fmt="json", report_dirs=[],
                       jobs_dir=tmp_path / "jobs", max_runs=1)
    return done.report.status, done.exit_code, json.loads(done.stdout)


def test_a_divergence_among_result_files_fails_the_run_without_any_baseline(tmp_path: Path) -> None:
    status, code, document = _judge(tmp_path, _pair(tmp_path, [25, 3, 0, 0]))
    assert (status, code) == ("FAIL", 1)
    [pair] = document["differentials"]  # type: ignore[misc]
    assert pair["status"] == "DIVERGES"
    assert "with prefix_caching=on vs" in pair["message"]


def test_an_a_a_pair_is_the_same_and_leaves_the_run_to_its_cells(tmp_path: Path) -> None:
    status, code, document = _judge(tmp_path, _pair(tmp_path, RECORDED))
    # No baseline was recorded: the cells say NO_BASELINE (exit 2), the pair is judged all the same.
    assert (status, code) == ("NO_BASELINE", 2)
    assert [p["status"] for p in document["differentials"]] == ["SAME"]  # type: ignore[attr-defined]


def test_fleet_judge_of_a_folder_judges_its_result_files(tmp_path: Path) -> None:
    _pair(tmp_path, [25, 3, 0, 0])
    (tmp_path / "baselines").mkdir()
    outcome = CliRunner().invoke(cli, ["judge", str(tmp_path / "results"), "--baselines",
                                       str(tmp_path / "baselines"), "--jobs", str(tmp_path / "jobs"),
                                       "--max-runs", "1", "--format", "text"])
    assert outcome.exit_code == 1, outcome.output
    assert "acceptance length 1.02 with prefix_caching=on vs 2.2 with prefix_caching=off" in outcome.output


def test_fleet_judge_of_a_run_directory_reads_every_attempt(tmp_path: Path) -> None:
    base = make_cell()
    run = tmp_path / "runs" / "local-1"
    off = counted_result(with_execution(base, prefix_caching="off"), 1327, RECORDED)
    on = counted_result(with_execution(base, prefix_caching="on"), 1327, [25, 3, 0, 0])
    _write(run / "cells" / "a", "result.attempt-1.json", off)
    _write(run / "cells" / "b", "result.attempt-1.json", on)
    _write(run / "cells" / "b", "result.attempt-2.json", on)
    status, code, document = _judge(tmp_path, [run])
    assert (status, code) == ("FAIL", 1)
    [pair] = document["differentials"]  # type: ignore[misc]
    assert (pair["runs_a"], pair["runs_b"]) == (1, 2)


def test_a_shard_pads_its_family_with_every_pair_of_the_whole_run(tmp_path: Path) -> None:
    grid = [with_execution(make_cell(), cudagraph=mode, prefix_caching=cache)
            for mode in ("full", "piecewise", "none") for cache in ("off", "on")]  # 9 pairs, 18 tests
    off, on = grid[0], grid[1]
    results = [counted_result(off, 1327, RECORDED), counted_result(on, 1327, [600, 400, 300, 200])]
    outcomes = [CellOutcome(r.cell, r, None, None, 1, 0.0, 0.0, (r,)) for r in results]
    (tmp_path / "baselines").mkdir()
    report, _ = judge_run(outcomes, baselines=BaselineSet(tmp_path / "baselines"), run_id="r", tier="local",
                          backend="local", started_at="", finished_at="", family=grid)
    [pair] = report.differentials
    [length] = [m for m in pair.metrics if m.metric == "acceptance_length"]
    assert length.p_value is not None and length.adjusted_p == min(1.0, 18 * length.p_value)
