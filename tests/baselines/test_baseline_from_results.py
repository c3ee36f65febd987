"""`fleet baseline from-results`: baselines from RunResults measured elsewhere, with the same checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.model import ResultError, RunResult
from tests.builders import make_cell, ok_result


def write(path: Path, result: RunResult) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.model_dump_json())
    return path


def fleet(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def test_replicates_measured_elsewhere_become_a_reviewed_baseline(tmp_path: Path) -> None:
    result = ok_result(make_cell()).model_copy(update={"metrics": {"acceptance_length": 2.0,
                                                                   "match_rate": 1.0}})
    files = [write(tmp_path / f"r{i}.json", result) for i in range(3)]
    code = fleet("baseline", "from-results", *map(str, files), "--baselines", str(tmp_path / "b"),
                 "--note", "measured on a test pool")
    assert code == 0
    [written] = (tmp_path / "b" / "cpu").glob("*.json")
    document = json.loads(written.read_text())
    assert document["runs"] == 3 and "measured on a test pool" in document["notes"]
    assert set(document["baselines"]) == {"acceptance_length", "match_rate"}


def test_a_single_result_per_cell_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path / "r.json", ok_result(make_cell()))
    assert fleet("baseline", "from-results", str(file), "--baselines", str(tmp_path / "b")) == 2
    assert "only one result" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_a_failed_run_is_not_a_replicate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failed = RunResult(cell=make_cell(), status="error", provenance=ok_result(make_cell()).provenance,
                       error=ResultError(category="infrastructure", reason="OOMKilled", message="oom"))
    files = [write(tmp_path / "ok.json", ok_result(make_cell())), write(tmp_path / "bad.json", failed)]
    assert fleet("baseline", "from-results", *map(str, files), "--baselines", str(tmp_path / "b")) == 2
    assert "bad.json" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
