"""Provenance: who produced a result, where, and with what; merged from the host and the engine.

Engines report what they know as a plain dict (names as in fleet.model.Provenance); anything the
document has no field for is kept under `extra`, so no engine-specific fact is silently dropped.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from datetime import UTC, datetime
from typing import Any

from fleet.model import Provenance
from fleet.plan.render import NODE_NAME_ENV

_FIELDS = frozenset(Provenance.model_fields)


def fleet_version() -> str:
    try:
        return importlib.metadata.version("fleet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def host_facts() -> dict[str, Any]:
    """The host is the node the Job's pod runs on where the Job says so (inside a pod the hostname is
    the pod's name, which tells nothing of the machine)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "hostname": os.environ.get(NODE_NAME_ENV) or socket.gethostname()}


def build_provenance(
    engine: str, engine_fields: dict[str, Any], *, started_at: str | None, finished_at: str | None
) -> Provenance:
    """Host facts, overridden by the engine's own, with unknown keys moved under `extra`."""
    merged: dict[str, Any] = {**host_facts(), **engine_fields}
    known = {key: value for key, value in merged.items() if key in _FIELDS and key != "extra"}
    extra = dict(merged.get("extra") or {})
    extra.update({key: value for key, value in merged.items() if key not in _FIELDS})
    known.update(fleet_version=fleet_version(), engine=engine, started_at=started_at,
                 finished_at=finished_at, extra=extra)
    return Provenance.model_validate(known)
