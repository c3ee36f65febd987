"""What the application's steps share: the stderr console progress goes to, counts in words, and the checks
of the folders a run reads and writes, made before any work is spent."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from fleet.errors import ConfigError

#: The history database's file name under --runs-dir.
HISTORY_FILE = "history.sqlite"

# soft_wrap: a line is never broken at 80 columns when stderr is not a terminal (CI logs, pipes).
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def counted(n: int, noun: str) -> str:
    """`1 cell`, `2 cells`: a count with its noun."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def ensure_writable_dir(path: Path, *, option: str) -> None:
    """Create `path` if needed and prove it writable before any work is spent."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output directory {path}: {err.strerror}", where=option,
                          fix=f"pass a writable directory to {option}") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {path} is not writable", where=option,
                          fix=f"pass a writable directory to {option}")


def history_db_in(runs_dir: Path, given: str | None) -> str:
    """The history a run records into: `given` ('' records nothing), else history.sqlite beside the run
    directories, so that `--runs-dir` keeps a run and its history together."""
    return str(runs_dir / HISTORY_FILE) if given is None else given


def existing_dir(path: Path, *, option: str, what: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{what} directory {path} does not exist", where=option,
                          fix=f"run from the repository root or pass {option} DIR")
    return path
