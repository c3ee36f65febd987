"""`fleet history` and `fleet trends` over a recorded history: import run directories, query, list changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.cli.history_cmds import history, trends_cmd
from fleet.errors import ConfigError
from fleet.history.store import BisectionRecord, HistoryStore, RunRecord, save_jobs
from fleet.plan.cost import JobSpan
from fleet.run.deliver import job_span
from tests.history_builders import gpu_cell, stepped_history


def write_run_dir(root: Path, record: RunRecord) -> Path:
    run_dir = root / record.report.run_id
    for cell_id, results in record.results.items():
        cell_dir = run_dir / "cells" / cell_id
        cell_dir.mkdir(parents=True)
        (cell_dir / "cell.json").write_text(record.cells[cell_id].model_dump_json())
        for number, result in enumerate(results, start=1):
            (cell_dir / f"result.attempt-{number}.json").write_text(result.model_dump_json())
    (run_dir / "report.json").write_text(record.report.model_dump_json())
    save_jobs(run_dir, record.jobs)
    return run_dir


def test_imported_run_directories_are_listed_with_their_cost(tmp_path: Path) -> None:
    dirs = [write_run_dir(tmp_path / "runs", r) for r in stepped_history(runs=3)]
    args = ["--db", str(tmp_path / "h.sqlite"), "--jobs", str(tmp_path / "none"), "--price", "h100=2.0"]
    result = CliRunner().invoke(history, [*args, *[a for d in dirs for a in ("--import", str(d))]])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("1.000 GPU-h $2.00")
    assert result.stdout.splitlines()[-1] == "3 runs"


def test_history_query_prints_one_measurement_a_line_filtered_by_metric_and_commit(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        for record in stepped_history(runs=4):
            store.record_run(record)
    query = ["--db", str(db), "--metric", "acceptance_length", "--commit", "02ab", "--json"]
    result = CliRunner().invoke(history, query)
    assert result.exit_code == 0, result.output
    [point] = json.loads(result.stdout)
    assert (point["run_id"], point["metric"]) == ("nightly-02", "acceptance_length")


def test_trends_lists_the_planted_regression_with_its_size_confidence_and_commits(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        for record in stepped_history():
            store.record_run(record)
    result = CliRunner().invoke(trends_cmd, ["--db", str(db)])
    assert result.exit_code == 0, result.output
    first, command, summary = result.stdout.splitlines()
    assert first.startswith("regression  eagle3__llama-3.1-8b-instruct__h100  acceptance_length  -8.")
    assert "between 09ababababab (2026-11-10T02:00:00Z) and 10ababababab" in first
    # A step many run-to-run sd tall is placed to the run: the range to bisect is those same two commits.
    assert first.endswith("90% sure it lies after 09ababababab (2026-11-10T02:00:00Z) and by 10ababababab "
                          "(2026-11-11T02:00:00Z): bisect between those")
    assert command.startswith("  to find the commit: fleet bisect --good 09ababababab")
    assert command.endswith("--cell eagle3__llama-3.1-8b-instruct__h100 --repo VLLM_CLONE "
                            "--metric acceptance_length")
    assert summary == "1 change point in 5 series (80 measurements)"
    as_json = json.loads(CliRunner().invoke(trends_cmd, ["--db", str(db), "--json"]).stdout)
    assert as_json[0]["confidence"] > 0.9999 and as_json[0]["points_after"] == 6
    assert (as_json[0]["surely_before"]["commit"], as_json[0]["surely_after"]["commit"]) == \
        (as_json[0]["before"]["commit"], as_json[0]["after"]["commit"])
    assert as_json[0]["credibility"] == 0.9


def test_a_change_between_runs_of_one_commit_prints_no_bisect_command(tmp_path: Path) -> None:
    # Every run measured the same vLLM commit: the change is the machines', not the code's.
    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        for record in stepped_history():
            for results in record.results.values():
                results[:] = [r.model_copy(update={"provenance": r.provenance.model_copy(
                    update={"vllm_commit": "ab" * 20})}) for r in results]
            store.record_run(record)
    result = CliRunner().invoke(trends_cmd, ["--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("regression")
    assert "fleet bisect" not in result.stdout


def test_no_change_is_reported_until_enough_runs_follow_it(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        for record in stepped_history(runs=13):  # 3 runs after the step: fewer than min_segment
            store.record_run(record)
    result = CliRunner().invoke(trends_cmd, ["--db", str(db)])
    assert result.stdout.splitlines()[-1].startswith("0 change points ")
    result = CliRunner().invoke(trends_cmd, ["--db", str(db), "--min-segment", "3"])
    assert result.stdout.splitlines()[-1].startswith("1 change point ")


def test_an_attempt_is_costed_by_its_pool_gpus_and_backend_clock() -> None:
    cell = gpu_cell()
    outcome = AttemptOutcome(Attempt(cell, 2, "r"), None, None, None, 0, 1000.0, 1000.0 + 900.0)
    span = job_span(outcome, purpose="bisect")
    assert (span.hardware, span.gpu_count, span.attempt, span.purpose) == ("h100", 2, 2, "bisect")
    assert span.gpu_hours == 0.5


def test_bisections_are_listed_with_their_answer_and_gpu_cost(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    spans = [JobSpan("eagle3@abc", "h100", 2, 0.0, 1800.0, 1, "bisect")]
    with HistoryStore.open(db) as store:
        store.record_bisection(BisectionRecord("bisect-1", "cell-a", "acceptance_length", "g" * 40, "b" * 40,
                                               "culprit", "c" * 40, "c" * 40, True, "verified", spans,
                                               {"h100": 3.0}))
    result = CliRunner().invoke(history, ["--db", str(db), "--bisections"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "bisect-1  cell-a  acceptance_length  culprit verified  cccccccccccc  1.000 GPU-h $3.00",
        "1 bisections"]


def test_a_history_that_cannot_be_opened_is_one_config_error_and_no_file_is_made(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli import main

    not_a_db = tmp_path / "notes.sqlite"
    not_a_db.write_text("not a database")
    missing = tmp_path / "sub" / "none.sqlite"
    for db, said in [(str(not_a_db), "not a fleet history database"), (str(missing), "no history database"),
                     ("bogus://x", "cannot use the database URL"),
                     ("postgresql://u@localhost:port/x", "cannot use the database URL")]:
        for verb in (["history", "--metric", "acceptance_length"], ["trends"]):
            with pytest.raises(SystemExit) as stop:
                main([*verb, "--db", db])
            error = capsys.readouterr().err.strip()
            assert stop.value.code == 2 and len(error.splitlines()) == 1 and said in error, error
    assert not missing.parent.exists()


def test_a_date_alone_bounds_whole_days_and_a_date_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        for record in stepped_history(runs=4):  # one run a day, 2026-11-01 .. 2026-11-04 at 02:00 UTC
            store.record_run(record)

    def runs_listed(*bounds: str) -> list[str]:
        query = ["--db", str(db), "--metric", "acceptance_length", "--json", *bounds]
        result = CliRunner().invoke(history, query)
        assert result.exit_code == 0, result.output
        return sorted({point["run_id"] for point in json.loads(result.stdout)})

    assert runs_listed("--since", "2026-11-02", "--until", "2026-11-03") == ["nightly-01", "nightly-02"]
    assert runs_listed("--until", "2026-11-02T01:00") == ["nightly-00"]
    assert runs_listed("--until", "20261102") == ["nightly-00", "nightly-01"]  # the basic form, too
    assert runs_listed("--since", "2026-11-04T03:00+01:00") == ["nightly-03"]  # 02:00 UTC
    result = CliRunner().invoke(history, ["--db", str(db), "--since", "last tuesday"])
    assert result.exit_code == 2 and "not an ISO 8601 date" in result.output
    result = CliRunner().invoke(history, ["--db", str(db), "--since", "2026-11-03", "--until", "2026-11-02"])
    assert isinstance(result.exception, ConfigError) and "is after --until" in str(result.exception)
