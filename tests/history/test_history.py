"""fleet.history.store: recording runs, querying series, idempotence, run directories and schema upgrades."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.history.store import SCHEMA_VERSION, BisectionRecord, HistoryStore, load_run_dir, save_jobs
from fleet.plan.cost import JobSpan, iso_to_epoch
from tests.history_builders import gpu_cell, run_record

CELL = gpu_cell()
OTHER = gpu_cell("ngram")


def test_recorded_run_is_queryable_by_cell_metric_and_commit(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        store.record_run(run_record("r1", [(CELL, {"acceptance_length": 2.1, "speedup": 1.8}),
                                           (OTHER, {"acceptance_length": 1.7})],
                                    at="2026-11-01T00:00:00Z", commit="aaaa1111"))
        store.record_run(run_record("r2", [(CELL, {"acceptance_length": 2.0})],
                                    at="2026-11-02T00:00:00Z", commit="bbbb2222"))
        series = store.series(cell_id=CELL.id, metric="acceptance_length")
        assert [(p.value, p.commit, p.run_id) for p in series] == [(2.1, "aaaa1111", "r1"),
                                                                   (2.0, "bbbb2222", "r2")]
        assert [p.run_id for p in store.series(commit="bbbb")] == ["r2"]
        assert [p.run_id for p in store.series(since="2026-11-02", metric="acceptance_length")] == ["r2"]
        assert {p.cell_id for p in store.series(metric="acceptance_length")} == {CELL.id, OTHER.id}


def test_run_cost_is_stored_from_job_spans_gpus_and_price(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        store.record_run(run_record("r1", [(CELL, {"speedup": 1.0})], at="2026-11-01T00:00:00Z",
                                    commit="a", job_seconds=1800))
        [row] = store.runs()
        assert row.gpu_hours == pytest.approx(1.0)  # half an hour on 2 GPUs
        assert row.cost_usd == pytest.approx(3.0)
        assert store.prices("r1") == {"h100": 3.0}
        assert store.jobs("r1")[0].gpu_count == 2


def test_recording_a_run_again_replaces_it_instead_of_duplicating(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        for value in (1.0, 1.5):
            store.record_run(run_record("r1", [(CELL, {"speedup": value})], at="2026-11-01T00:00:00Z",
                                        commit="a"))
        assert [p.value for p in store.series()] == [1.5]
        assert len(store.runs()) == 1


def test_report_results_and_cells_round_trip(tmp_path: Path) -> None:
    record = run_record("r1", [(CELL, {"speedup": 1.2})], at="2026-11-01T00:00:00Z", commit="a")
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        store.record_run(record)
        assert store.report("r1") == record.report
        assert store.results("r1") == {CELL.id: list(record.results[CELL.id])}
        assert store.cells("r1") == {CELL.id: CELL}
        assert store.report("missing") is None


def test_bisection_is_stored_with_its_gpu_cost(tmp_path: Path) -> None:
    bisection = BisectionRecord("b1", CELL.id, "acceptance_length", "good", "bad", "culprit", "c3", "c3",
                                True,
                                "verified against its parent",
                                jobs=[JobSpan(CELL.id, "h100", 2, 0.0, 3600.0, purpose="bisect")],
                                prices={"h100": 3.0})
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        store.record_bisection(bisection)
        [row] = store.bisections()
    assert (row["first_commit"], row["verified"], row["gpu_hours"], row["cost_usd"]) == ("c3", 1, 2.0, 6.0)


def test_old_database_is_upgraded_on_open_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore.open(path, migrate_to=1) as old:
        assert old.schema_version() == 1
        old_columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(runs)")}
        assert "gpu_hours" not in old_columns
        # What a version-1 fleet wrote: no cost columns, no jobs table.
        old._db.execute(
            "INSERT INTO runs (run_id, tier, backend, started_at, finished_at, status, exit_code, "
            "report_json, recorded_at) VALUES ('old', 'nightly', 'kube', '2026-10-01', '2026-10-01', "
            "'PASS', 0, '{}', 'x')")
    with HistoryStore.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert [(r.run_id, r.gpu_hours) for r in store.runs()] == [("old", None)]
        store.record_run(run_record("new", [(CELL, {"speedup": 1.0})], at="2026-11-01T00:00:00Z", commit="a"))
        assert [r.run_id for r in store.runs()] == ["old", "new"]


def test_database_from_a_newer_fleet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    HistoryStore.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(ConfigError, match="newer than this fleet"):
        HistoryStore.open(path)


def test_database_uses_write_ahead_logging(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    HistoryStore.open(path).close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_run_directory_is_loaded_with_spans_from_jobs_json_else_from_results(tmp_path: Path) -> None:
    record = run_record("r9", [(CELL, {"speedup": 1.1})], at="2026-11-01T00:00:00Z", commit="a")
    run_dir = tmp_path / "r9"
    (run_dir / "cells" / CELL.id).mkdir(parents=True)
    (run_dir / "report.json").write_text(record.report.model_dump_json())
    (run_dir / "cells" / CELL.id / "cell.json").write_text(CELL.model_dump_json())
    (run_dir / "cells" / CELL.id / "result.attempt-1.json").write_text(
        record.results[CELL.id][0].model_dump_json())
    [from_result] = load_run_dir(run_dir).jobs  # no jobs.json: the suite's own start and end
    assert (from_result.started_at, from_result.gpu_count) == (iso_to_epoch("2026-11-01T00:00:00Z"), 2)
    save_jobs(run_dir, record.jobs)
    loaded = load_run_dir(run_dir, prices={"h100": 3.0})
    assert (loaded.report, list(loaded.jobs)) == (record.report, list(record.jobs))
    assert loaded.cells == {CELL.id: CELL}
    assert json.loads((run_dir / "jobs.json").read_text())[0]["gpu_count"] == 2


def test_missing_run_report_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"report\.json"):
        load_run_dir(tmp_path)


def test_sqlalchemy_url_runs_the_same_store(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy", reason="SQLAlchemy is the optional server-database path")
    url = f"sqlite+pysqlite:///{tmp_path / 'sa.sqlite'}"
    with HistoryStore.open(url) as store:
        store.record_run(run_record("r1", [(CELL, {"speedup": 1.2})], at="2026-11-01T00:00:00Z", commit="a"))
        assert store.schema_version() == SCHEMA_VERSION
        assert [p.value for p in store.series(cell_id=CELL.id)] == [1.2]
    with HistoryStore.open(tmp_path / "sa.sqlite") as same_file:
        assert [r.run_id for r in same_file.runs()] == ["r1"]
