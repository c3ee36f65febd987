"""Where a result says it ran: the node inside a Kubernetes Job, the machine elsewhere."""

from __future__ import annotations

import socket

import pytest

from fleet.plan.render import NODE_NAME_ENV
from fleet.suite.provenance import build_provenance


def test_a_job_names_its_node_not_its_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NODE_NAME_ENV, "gpu-node-7")
    provenance = build_provenance("reference", {}, started_at=None, finished_at=None)
    assert provenance.hostname == "gpu-node-7"


def test_outside_a_job_the_machine_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NODE_NAME_ENV, raising=False)
    provenance = build_provenance("reference", {}, started_at=None, finished_at=None)
    assert provenance.hostname == socket.gethostname()
