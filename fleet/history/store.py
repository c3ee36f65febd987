"""The history store: every run's cells, results, verdicts, provenance and cost, in one database.

A run directory answers "what happened in this run"; trends, change points and cost per week need
every run at once, queried by cell, metric, pool, date or vLLM commit. SQLite is the default (stdlib,
one file, WAL so readers never block the writer; several `fleet submit` processes may record at once:
each run is one `BEGIN IMMEDIATE` transaction and waits up to 60 s for the lock). A team points every
machine at one server database instead with a SQLAlchemy URL (`--db postgresql+psycopg://host/fleet`,
needs `pip install sqlalchemy psycopg`); the SQL is portable (named parameters, no upserts, no
SQLite-only types), and the same store code runs on both.

The schema is versioned in `schema_meta`; `_MIGRATIONS[i]` takes version i to i+1 and runs inside the
writer lock, so two processes opening an old database upgrade it once. Recording a run again replaces
it (idempotent), so importing a run directory twice is harmless.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.errors import ConfigError
from fleet.history.db import TABLE_EXISTS, Db, SqlAlchemyDb, SqliteDb
from fleet.judge.trends import SeriesPoint
from fleet.model import Cell, RunReport, RunResult
from fleet.plan.cost import JobSpan, account, iso_to_epoch, spans_document, spans_from_document

SCHEMA_VERSION = 3

_V1 = [
    "CREATE TABLE schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (run_id TEXT PRIMARY KEY, tier TEXT NOT NULL, backend TEXT NOT NULL,
       started_at TEXT NOT NULL, finished_at TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER,
       report_json TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
    """CREATE TABLE cell_runs (run_id TEXT NOT NULL, cell_id TEXT NOT NULL, tier TEXT NOT NULL,
       variant TEXT NOT NULL, model TEXT NOT NULL, draft_model TEXT, hardware TEXT NOT NULL,
       status TEXT NOT NULL, attempts INTEGER NOT NULL, verdict_json TEXT NOT NULL, cell_json TEXT,
       PRIMARY KEY (run_id, cell_id))""",
    """CREATE TABLE results (run_id TEXT NOT NULL, cell_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
       status TEXT NOT NULL, measured_at TEXT NOT NULL, vllm_commit TEXT, vllm_version TEXT,
       result_json TEXT NOT NULL, PRIMARY KEY (run_id, cell_id, ordinal))""",
    """CREATE TABLE measurements (run_id TEXT NOT NULL, cell_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
       metric TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, hardware TEXT NOT NULL, tier TEXT NOT NULL,
       measured_at TEXT NOT NULL, vllm_commit TEXT, PRIMARY KEY (run_id, cell_id, ordinal, metric))""",
    "CREATE INDEX measurements_series ON measurements (cell_id, metric, measured_at)",
]
_V2 = [  # cost accounting and bisections
    "ALTER TABLE runs ADD COLUMN gpu_hours DOUBLE PRECISION",
    "ALTER TABLE runs ADD COLUMN cost_usd DOUBLE PRECISION",
    "ALTER TABLE runs ADD COLUMN link TEXT",
    "ALTER TABLE runs ADD COLUMN prices_json TEXT",
    "ALTER TABLE cell_runs ADD COLUMN gpu_hours DOUBLE PRECISION",
    "ALTER TABLE cell_runs ADD COLUMN cost_usd DOUBLE PRECISION",
    """CREATE TABLE jobs (run_id TEXT NOT NULL, cell_id TEXT NOT NULL, attempt INTEGER NOT NULL,
       purpose TEXT NOT NULL, hardware TEXT NOT NULL, gpu_count INTEGER NOT NULL,
       started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION NOT NULL,
       PRIMARY KEY (run_id, cell_id, attempt, purpose))""",
    """CREATE TABLE bisections (bisection_id TEXT PRIMARY KEY, cell_id TEXT NOT NULL, metric TEXT NOT NULL,
       good_commit TEXT NOT NULL, bad_commit TEXT NOT NULL, status TEXT NOT NULL, first_commit TEXT,
       last_commit TEXT, verified INTEGER NOT NULL, reason TEXT NOT NULL, gpu_hours DOUBLE PRECISION,
       cost_usd DOUBLE PRECISION, recorded_at TEXT NOT NULL)""",
]
_V3 = [  # a bisection's three-valued conclusion (fleet.bisect.terms.Finding.conclusion)
    "ALTER TABLE bisections ADD COLUMN conclusion TEXT",
]
_MIGRATIONS: list[list[str]] = [_V1, _V2, _V3]


@dataclass(frozen=True)
class RunRecord:
    """What one run leaves: its report, its cells, every attempt's result, its Jobs' spans and prices."""

    report: RunReport
    cells: Mapping[str, Cell]
    results: Mapping[str, Sequence[RunResult]]
    jobs: Sequence[JobSpan] = ()
    prices: Mapping[str, float] = field(default_factory=dict)
    link: str | None = None


@dataclass(frozen=True)
class BisectionRecord:
    bisection_id: str
    cell_id: str
    metric: str
    good_commit: str
    bad_commit: str
    status: str
    first_commit: str | None
    last_commit: str | None
    verified: bool
    reason: str
    jobs: Sequence[JobSpan] = ()
    prices: Mapping[str, float] = field(default_factory=dict)
    recorded_at: str = ""
    #: "regression verified", "no difference shown between the ends" or "undecided within budget"
    #: ("" for one recorded before schema 3).
    conclusion: str = ""


@dataclass(frozen=True)
class RunRow:
    run_id: str
    tier: str
    status: str
    started_at: str
    finished_at: str
    gpu_hours: float | None
    cost_usd: float | None
    link: str | None


class HistoryStore:
    """Open with `HistoryStore.open(path_or_url)`; migrates the database to SCHEMA_VERSION on open."""

    def __init__(self, db: Db, *, migrate_to: int = SCHEMA_VERSION) -> None:
        self._db = db
        self._migrate(migrate_to)

    @classmethod
    def open(cls, target: str | Path, *, migrate_to: int = SCHEMA_VERSION,
             create: bool = True) -> HistoryStore:
        """`create=False` for a query: a SQLite file that does not exist is an error, not a new history."""
        text = str(target)
        if "://" in text and not text.startswith("sqlite:///"):
            return cls(SqlAlchemyDb(text), migrate_to=migrate_to)
        path = Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:///") else Path(text)
        return cls(SqliteDb(path, create=create), migrate_to=migrate_to)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def schema_version(self) -> int:
        rows = self._db.execute("SELECT value FROM schema_meta WHERE key = 'version'")
        return int(rows[0][0]) if rows else 0

    # --- writing ------------------------------------------------------------------------------------

    def record_run(self, record: RunRecord) -> None:
        report = record.report
        summary = account(record.jobs, record.prices)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._db.transaction():
            for table in ("measurements", "results", "jobs", "cell_runs", "runs"):
                self._db.execute(f"DELETE FROM {table} WHERE run_id = :run", {"run": report.run_id})
            self._db.execute(
                "INSERT INTO runs (run_id, tier, backend, started_at, finished_at, status, exit_code, "
                "report_json, recorded_at, gpu_hours, cost_usd, link, prices_json) VALUES (:run, :tier, "
                ":backend, :started, :finished, :status, :exit, :report, :now, :gpu_hours, :cost, :link, "
                ":prices)",
                {"run": report.run_id, "tier": report.tier, "backend": report.backend,
                 "started": report.started_at, "finished": report.finished_at, "status": report.status,
                 "exit": report.exit_code, "report": report.model_dump_json(), "now": now,
                 "gpu_hours": summary.total.gpu_hours, "cost": summary.total.cost_usd, "link": record.link,
                 "prices": json.dumps(dict(record.prices))})
            for verdict in report.cells:
                cell = record.cells.get(verdict.cell_id)
                line = summary.per_cell.get(verdict.cell_id)
                self._db.execute(
                    "INSERT INTO cell_runs (run_id, cell_id, tier, variant, model, draft_model, hardware, "
                    "status, attempts, verdict_json, cell_json, gpu_hours, cost_usd) VALUES (:run, :cell, "
                    ":tier, :variant, :model, :draft, :hardware, :status, :attempts, :verdict, :cell_json, "
                    ":gpu_hours, :cost)",
                    {"run": report.run_id, "cell": verdict.cell_id, "tier": report.tier,
                     "variant": verdict.variant, "model": verdict.model, "draft": verdict.draft_model,
                     "hardware": verdict.hardware, "status": verdict.status, "attempts": verdict.attempts,
                     "verdict": verdict.model_dump_json(),
                     "cell_json": cell.model_dump_json() if cell else None,
                     "gpu_hours": line.gpu_hours if line else None, "cost": line.cost_usd if line else None})
            for cell_id, results in record.results.items():
                for ordinal, result in enumerate(results, start=1):
                    self._insert_result(report, cell_id, ordinal, result)
            for span in record.jobs:
                self._insert_job(report.run_id, span)

    def record_bisection(self, record: BisectionRecord) -> None:
        line = account(record.jobs, record.prices).total
        with self._db.transaction():
            self._db.execute("DELETE FROM bisections WHERE bisection_id = :id", {"id": record.bisection_id})
            self._db.execute("DELETE FROM jobs WHERE run_id = :id", {"id": record.bisection_id})
            self._db.execute(
                "INSERT INTO bisections (bisection_id, cell_id, metric, good_commit, bad_commit, status, "
                "first_commit, last_commit, verified, reason, gpu_hours, cost_usd, recorded_at, conclusion) "
                "VALUES "
                "(:id, :cell, :metric, :good, :bad, :status, :first, :last, :verified, :reason, :gpu_hours, "
                ":cost, :at, :conclusion)",
                {"id": record.bisection_id, "cell": record.cell_id, "metric": record.metric,
                 "good": record.good_commit, "bad": record.bad_commit, "status": record.status,
                 "first": record.first_commit, "last": record.last_commit, "verified": int(record.verified),
                 "reason": record.reason, "gpu_hours": line.gpu_hours, "cost": line.cost_usd,
                 "at": record.recorded_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                 "conclusion": record.conclusion or None})
            for span in record.jobs:
                self._insert_job(record.bisection_id, span)

    # --- reading ------------------------------------------------------------------------------------

    def runs(self, *, since: str | None = None, tier: str | None = None) -> list[RunRow]:
        where, params = _where([("started_at >=", since), ("tier =", tier)])
        rows = self._db.execute("SELECT run_id, tier, status, started_at, finished_at, gpu_hours, cost_usd, "
                                f"link FROM runs {where} ORDER BY started_at, run_id", params)
        return [RunRow(*row) for row in rows]

    def report(self, run_id: str) -> RunReport | None:
        rows = self._db.execute("SELECT report_json FROM runs WHERE run_id = :run", {"run": run_id})
        return RunReport.model_validate_json(rows[0][0]) if rows else None

    def results(self, run_id: str) -> dict[str, list[RunResult]]:
        rows = self._db.execute("SELECT cell_id, result_json FROM results WHERE run_id = :run "
                                "ORDER BY cell_id, ordinal", {"run": run_id})
        found: dict[str, list[RunResult]] = {}
        for cell_id, document in rows:
            found.setdefault(cell_id, []).append(RunResult.model_validate_json(document))
        return found

    def cells(self, run_id: str | None = None) -> dict[str, Cell]:
        """The cells of one run, or the latest definition of every cell ever recorded."""
        where, params = _where([("r.run_id =", run_id)])
        rows = self._db.execute("SELECT c.cell_id, c.cell_json FROM runs r JOIN cell_runs c ON "
                                f"c.run_id = r.run_id {where} ORDER BY r.started_at, r.run_id", params)
        return {cell_id: Cell.model_validate_json(doc) for cell_id, doc in rows if doc}

    def prices(self, run_id: str) -> dict[str, float]:
        """The prices a run's cost was counted with."""
        rows = self._db.execute("SELECT prices_json FROM runs WHERE run_id = :run", {"run": run_id})
        return {str(k): float(v) for k, v in json.loads(rows[0][0]).items()} if rows and rows[0][0] else {}

    def jobs(self, run_id: str) -> list[JobSpan]:
        rows = self._db.execute("SELECT cell_id, hardware, gpu_count, started_at, finished_at, attempt, "
                                "purpose FROM jobs WHERE run_id = :run ORDER BY cell_id, attempt",
                                {"run": run_id})
        return [JobSpan(*row) for row in rows]

    def series(self, *, cell_id: str | None = None, metric: str | None = None, hardware: str | None = None,
               tier: str | None = None, since: str | None = None, until: str | None = None,
               commit: str | None = None) -> list[SeriesPoint]:
        """Measurements in time order; `commit` matches a vLLM commit by prefix."""
        where, params = _where([("cell_id =", cell_id), ("metric =", metric), ("hardware =", hardware),
                                ("tier =", tier), ("measured_at >=", since), ("measured_at <=", until),
                                ("vllm_commit LIKE", f"{commit}%" if commit else None)])
        rows = self._db.execute(
            "SELECT cell_id, metric, value, measured_at, vllm_commit, run_id, hardware FROM measurements "
            f"{where} ORDER BY cell_id, metric, measured_at, run_id, ordinal", params)
        return [SeriesPoint(float(value), at, commit_, run, cell, name, pool)
                for cell, name, value, at, commit_, run, pool in rows]

    def bisections(self, cell_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT bisection_id, cell_id, metric, good_commit, bad_commit, status, first_commit, "
            "last_commit, verified, reason, gpu_hours, cost_usd, recorded_at, conclusion FROM bisections "
            "ORDER BY recorded_at")
        keys = ("bisection_id", "cell_id", "metric", "good_commit", "bad_commit", "status", "first_commit",
                "last_commit", "verified", "reason", "gpu_hours", "cost_usd", "recorded_at", "conclusion")
        found = [dict(zip(keys, row, strict=True)) for row in rows]
        return [b for b in found if cell_ids is None or b["cell_id"] in cell_ids]

    # --- internals ----------------------------------------------------------------------------------

    def _insert_result(self, report: RunReport, cell_id: str, ordinal: int, result: RunResult) -> None:
        provenance = result.provenance
        measured_at = provenance.started_at or report.started_at
        values = {"run": report.run_id, "cell": cell_id, "ordinal": ordinal}
        self._db.execute(
            "INSERT INTO results (run_id, cell_id, ordinal, status, measured_at, vllm_commit, vllm_version, "
            "result_json) VALUES (:run, :cell, :ordinal, :status, :at, :commit, :version, :document)",
            {**values, "status": result.status, "at": measured_at, "commit": provenance.vllm_commit,
             "version": provenance.vllm_version, "document": result.model_dump_json()})
        if result.status != "ok":
            return
        for metric, value in result.metrics.items():
            self._db.execute(
                "INSERT INTO measurements (run_id, cell_id, ordinal, metric, value, hardware, tier, "
                "measured_at, vllm_commit) VALUES (:run, :cell, :ordinal, :metric, :value, :hardware, "
                ":tier, :at, :commit)",
                {**values, "metric": metric, "value": value, "hardware": result.cell.hardware.name,
                 "tier": report.tier, "at": measured_at, "commit": provenance.vllm_commit})

    def _insert_job(self, owner: str, span: JobSpan) -> None:
        self._db.execute(
            "INSERT INTO jobs (run_id, cell_id, attempt, purpose, hardware, gpu_count, started_at, "
            "finished_at) VALUES (:run, :cell, :attempt, :purpose, :hardware, :gpus, :start, :end)",
            {"run": owner, "cell": span.cell_id, "attempt": span.attempt, "purpose": span.purpose,
             "hardware": span.hardware, "gpus": span.gpu_count, "start": span.started_at,
             "end": span.finished_at})

    def _migrate(self, target: int) -> None:
        if target > len(_MIGRATIONS):
            raise ConfigError(f"history schema version {target} is unknown (newest: {len(_MIGRATIONS)})")
        with self._db.transaction():
            if self._db.dialect == "postgresql":  # one migrator at a time, before the tables exist
                self._db.execute("SELECT pg_advisory_xact_lock(5028135)")
            exists = self._db.execute(TABLE_EXISTS[self._db.dialect], {"name": "schema_meta"})
            current = self.schema_version() if exists else 0
            if current > len(_MIGRATIONS):
                raise ConfigError(
                    f"the history database has schema version {current}, newer than this fleet's "
                    f"{len(_MIGRATIONS)}", fix="upgrade fleet on this machine (pip install -U fleet)")
            for version in range(current, target):
                for statement in _MIGRATIONS[version]:
                    self._db.execute(statement)
                self._db.execute("DELETE FROM schema_meta WHERE key = 'version'")
                self._db.execute("INSERT INTO schema_meta (key, value) VALUES ('version', :v)",
                                 {"v": str(version + 1)})


def _where(conditions: Sequence[tuple[str, object]]) -> tuple[str, dict[str, object]]:
    """A WHERE clause of the conditions whose value is given (typed NULL parameters are not portable)."""
    clauses, params = [], {}
    for number, (condition, value) in enumerate(conditions):
        if value is not None:
            clauses.append(f"{condition} :p{number}")
            params[f"p{number}"] = value
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params




# --- run directories (what `fleet submit` writes) ----------------------------------------------------

JOBS_FILE = "jobs.json"


def save_jobs(run_dir: Path, spans: Sequence[JobSpan]) -> None:
    """Keep each attempt's span beside the run's report, so its cost can be counted again later."""
    (run_dir / JOBS_FILE).write_text(json.dumps(spans_document(spans), indent=2) + "\n")


def load_run_dir(run_dir: Path, *, prices: Mapping[str, float] | None = None,
                 link: str | None = None) -> RunRecord:
    """A run directory (runs/<run-id>/) as a RunRecord.

    Job spans come from jobs.json when the run wrote one (the backend's clock), else from each
    attempt's result document (the suite's own start and end: shorter, since pulling the image and
    starting the container are not in it).
    """
    report_path = run_dir / "report.json"
    try:
        report = RunReport.model_validate_json(report_path.read_bytes())
    except OSError as err:
        raise ConfigError(f"no run report: {err.strerror}", where=str(report_path),
                          fix="pass a directory `fleet submit` wrote (runs/<run-id>)") from err
    except ValidationError as err:
        raise ConfigError(f"not a fleet run report: {err.errors()[0]['msg']}",
                          where=str(report_path)) from err
    cells: dict[str, Cell] = {}
    results: dict[str, list[RunResult]] = {}
    for verdict in report.cells:
        cell_dir = run_dir / "cells" / verdict.cell_id
        if (cell_dir / "cell.json").is_file():
            cells[verdict.cell_id] = Cell.model_validate_json((cell_dir / "cell.json").read_bytes())
        attempts = sorted(cell_dir.glob("result.attempt-*.json"), key=_attempt_number)
        results[verdict.cell_id] = [RunResult.model_validate_json(p.read_bytes()) for p in attempts]
    jobs_path = run_dir / JOBS_FILE
    if jobs_path.is_file():
        jobs = spans_from_document(json.loads(jobs_path.read_text()))
    else:
        jobs = [_span_from_result(result, number)
                for cell_results in results.values()
                for number, result in enumerate(cell_results, start=1)
                if result.provenance.started_at and result.provenance.finished_at]
    return RunRecord(report, cells, results, jobs, dict(prices or {}), link)


def _attempt_number(path: Path) -> int:
    digits = path.name.removeprefix("result.attempt-").removesuffix(".json")
    return int(digits) if digits.isdigit() else 0


def _span_from_result(result: RunResult, attempt: int) -> JobSpan:
    provenance = result.provenance
    assert provenance.started_at is not None and provenance.finished_at is not None
    return JobSpan(result.cell.id, result.cell.hardware.name, result.cell.hardware.gpu_count,
                   iso_to_epoch(provenance.started_at), iso_to_epoch(provenance.finished_at), attempt)
