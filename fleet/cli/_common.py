"""What several commands share: the version, date options, and (from fleet.run.common) the stderr console
and the folder checks."""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from typing import TYPE_CHECKING, Any

import click

from fleet.errors import ConfigError
from fleet.run.common import counted, ensure_writable_dir, existing_dir, stderr

__all__ = [
    "Moment", "check_window", "counted", "ensure_writable_dir", "existing_dir", "fleet_version", "stderr",
]


def fleet_version() -> str:
    try:
        return metadata.version("fleet")
    except metadata.PackageNotFoundError:
        return "0+unknown"


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
