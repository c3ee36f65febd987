"""What several commands share: paths with defaults, the stderr console, version, writability checks."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from rich.console import Console

from fleet.errors import ConfigError

stderr = Console(stderr=True, highlight=False)


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
