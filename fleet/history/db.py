"""The history store's two database adapters: SQLite through the stdlib, a server through SQLAlchemy.

The store speaks portable SQL with named parameters (`:name`), which both sqlite3 and SQLAlchemy's
`text()` accept; this module holds what differs: locking, transactions, and how a table is looked up.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from fleet.errors import ConfigError, InfrastructureError

BUSY_TIMEOUT_S = 60.0


class Db(Protocol):
    dialect: str

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...
    def transaction(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...


TABLE_EXISTS = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name = :name",
    "postgresql": "SELECT table_name FROM information_schema.tables WHERE table_name = :name",
    "other": "SELECT table_name FROM information_schema.tables WHERE table_name = :name",
}


class SqliteDb:
    dialect = "sqlite"

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.is_file():
            raise ConfigError("no history database there", where=str(path),
                              cause="no run was recorded there (fleet submit records into --history-db)",
                              fix="pass the history's path with --db or FLEET_HISTORY_DB")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"cannot open the history database: {err}", where=str(path),
                              fix="pass a writable path with --db or FLEET_HISTORY_DB") from err
        self._path = path
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._retry_locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
            self._conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as err:  # not an OperationalError: the file is something else
            self._conn.close()
            raise ConfigError(f"not a fleet history database ({err})", where=str(path),
                              fix="pass the history's path (or a new file) with --db or FLEET_HISTORY_DB"
                              ) from err

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, dict(params or {})).fetchall()
        except sqlite3.Error as err:
            raise InfrastructureError(f"history database: {err}", where=str(self._path)) from err

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._retry_locked(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def _retry_locked(self, action: Callable[[], object]) -> None:
        # The busy handler does not cover every lock SQLite can meet (a WAL switch, a read-to-write
        # upgrade); those are retried here until the same overall timeout.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                action()
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise InfrastructureError(f"history database: {err}", where=str(self._path)) from err
                if time.monotonic() > deadline:
                    raise InfrastructureError(f"history database stayed locked for {BUSY_TIMEOUT_S:.0f} s",
                                              where=str(self._path),
                                              cause="another process holds a long transaction") from err
                time.sleep(0.05)


class SqlAlchemyDb:
    """A server database (PostgreSQL) through SQLAlchemy Core; imported only when a URL asks for it."""

    dialect = "other"

    def __init__(self, url: str) -> None:
        try:
            import sqlalchemy
        except ImportError as err:
            raise ConfigError("a database URL needs SQLAlchemy", where=url,
                              fix="pip install sqlalchemy (and the driver, e.g. psycopg)") from err
        self._sa = sqlalchemy
        self._url = url
        try:
            self._engine = sqlalchemy.create_engine(url)
        # An unknown dialect, a missing driver, a malformed URL (a port that is not a number).
        except (ImportError, ValueError, sqlalchemy.exc.ArgumentError) as err:
            raise ConfigError(f"cannot use the database URL: {err}", where=url,
                              fix="use sqlite:///PATH, or postgresql+psycopg://... with its driver installed "
                                  "(pip install 'psycopg[binary]')") from err
        name = self._engine.dialect.name
        self.dialect = name if name in ("sqlite", "postgresql") else "other"
        self._tx: Any = None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if self._tx is not None:
            return self._run(self._tx, sql, params)
        with self._connection() as conn:
            return self._run(conn, sql, params)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except self._sa.exc.SQLAlchemyError as err:  # the server unreachable, the login refused
            raise InfrastructureError(_database_said(err), where=self._url,
                                      cause="the database server cannot be reached",
                                      fix="check the URL, the server and the credentials") from err

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._connection() as conn:
            self._tx = conn
            try:
                yield
            finally:
                self._tx = None

    def close(self) -> None:
        self._engine.dispose()

    def _run(self, conn: Any, sql: str, params: Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
        try:
            result = conn.execute(self._sa.text(sql), dict(params or {}))
        except self._sa.exc.SQLAlchemyError as err:
            raise InfrastructureError(_database_said(err), where=self._url) from err
        return [tuple(row) for row in result] if result.returns_rows else []


def _database_said(err: Exception) -> str:
    """A database error as one line: SQLAlchemy's messages run on with the statement and a help link."""
    return f"history database: {err.__class__.__name__}: {err}".splitlines()[0]
