"""What several commands share: paths with defaults, the stderr console, version, writability checks."""

from __future__ import annotations

import datetime as dt
import os
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from fleet.errors import ConfigError

# soft_wrap: a line is never broken at 80 columns when stderr is not a terminal (CI logs, pipes).
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def counted(n: int, noun: str) -> str:
    """`1 cell`, `2 cells`: a count with its noun."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def fleet_version() -> str:
    try:
        return metadata.version("fleet")
    except metadata.PackageNotFoundError:
        return "0+unknown"


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


def existing_dir(path: Path, *, option: str, what: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{what} directory {path} does not exist", where=option,
                          fix=f"run from the repository root or pass {option} DIR")
    return path


if TYPE_CHECKING:  # click's ParamType is generic only from click 8.2 on; fleet runs with 8.1 too
    _ParamType = click.ParamType[str, Any]
else:
    _ParamType = click.ParamType


class Moment(_ParamType):
    """A date or a time (ISO 8601) as the history stores times: UTC, ISO text that compares in order. A
    date alone means its first second for --since and its last for --until, so `--until 2026-11-29` keeps
    that day's runs; a time without a zone is UTC."""

    name = "date"

    def __init__(self, *, end: bool = False) -> None:
        self.end = end

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            try:  # a date alone (2026-11-29, 20261129): the whole day
                day = dt.date.fromisoformat(text)
                moment = dt.datetime.combine(day, dt.time.max if self.end else dt.time.min, dt.UTC)
            except ValueError:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        except ValueError:
            self.fail(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-01 or 2026-11-01T06:00)",
                      param, ctx)
        return moment.astimezone(dt.UTC).isoformat()


def check_window(since: str | None, until: str | None) -> None:
    """--since after --until selects nothing: a swapped pair, said so rather than answered with nothing."""
    if since is not None and until is not None and since > until:  # both UTC ISO text (Moment)
        raise ConfigError(f"--since {since} is after --until {until}", where="--since/--until",
                          fix="swap them")
