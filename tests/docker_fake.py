"""The docker SDK faked at its port (the module fleet.plan.images imports when it builds): builds, pushes and
digest reads are recorded, never made."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

DIGEST = "sha256:" + "b" * 64


@dataclass
class FakeDocker:
    #: Every build's keyword arguments, failed ones too.
    builds: list[dict[str, Any]] = field(default_factory=list)
    #: ("build", tag) of each build that succeeded, ("push", repository:tag), ("digest", image:tag).
    calls: list[tuple[str, str]] = field(default_factory=list)


def fake_docker(monkeypatch: pytest.MonkeyPatch, *, fail_for: str = "", refusal: str = "") -> FakeDocker:
    """Installs the fake as `docker`: a build whose VLLM_TAG is `fail_for` fails as a missing base image
    would; a push reports `refusal` in its progress, as a registry without push rights does."""
    fake = FakeDocker()

    class Images:
        def build(self, **kwargs: Any) -> tuple[Any, list[Any]]:
            fake.builds.append(kwargs)
            if fail_for and kwargs["buildargs"]["VLLM_TAG"] == fail_for:
                raise RuntimeError("manifest for vllm-ci-postmerge-repo:" + fail_for + " not found")
            fake.calls.append(("build", kwargs["tag"]))
            return types.SimpleNamespace(id="sha256:1"), []

        def push(self, repository: str, tag: str, stream: bool = False,
                 decode: bool = False) -> list[dict[str, str]]:
            fake.calls.append(("push", f"{repository}:{tag}"))
            assert stream and decode  # a refused push is only seen in the streamed progress
            return [{"status": "Pushing"}, *([{"error": refusal}] if refusal else [])]

        def get_registry_data(self, name: str) -> Any:
            fake.calls.append(("digest", name))
            return types.SimpleNamespace(id=DIGEST)

    module = types.ModuleType("docker")
    module.from_env = lambda: types.SimpleNamespace(images=Images())  # type: ignore[attr-defined]
    module.errors = types.SimpleNamespace(DockerException=RuntimeError)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "docker", module)
    return fake
