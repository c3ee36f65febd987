"""The docker SDK faked at its port (the module fleet.backends.docker_build's `docker_sdk` imports): builds,
pushes and digest reads are recorded, never made; containers run a test's scripted behaviour in a thread,
which sees the create arguments (and so the host side of every mount) and can be killed."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DIGEST = "sha256:" + "b" * 64


class DockerException(Exception):
    pass


class APIError(DockerException):
    pass


class NotFound(APIError):
    pass


class ImageNotFound(NotFound):
    pass


class BuildError(DockerException):
    def __init__(self, reason: str, build_log: list[dict[str, str]]) -> None:
        super().__init__(reason)
        self.msg = reason
        self.build_log = build_log


@dataclass(frozen=True)
class Exit:
    """How a scripted container ended."""

    code: int
    log: bytes = b""
    oom: bool = False


#: A container's behaviour: its create arguments and an event set when it is killed -> how it ended.
Behaviour = Callable[[dict[str, Any], threading.Event], Exit]


@dataclass
class FakeDocker:
    #: Every build's keyword arguments, failed ones too.
    builds: list[dict[str, Any]] = field(default_factory=list)
    #: ("build", tag) of each build that succeeded, ("push", repository:tag), ("digest", image:tag),
    #: ("create", name), ("kill", name:signal), ("remove", name).
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: Every container's create arguments, in order.
    containers: list[dict[str, Any]] = field(default_factory=list)
    #: Images the engine has (for containers; builds need none).
    images: set[str] = field(default_factory=set)
    #: Names of containers an earlier controller left behind.
    leftovers: set[str] = field(default_factory=set)

    def host_path(self, spec: dict[str, Any], container_path: str) -> Path:
        """The host directory or file mounted at `container_path` in a container made from `spec`."""
        [host] = [h for h, bind in spec["volumes"].items() if bind["bind"] == container_path]
        return Path(host)


def fake_docker(monkeypatch: pytest.MonkeyPatch, *, fail_for: str = "", refusal: str = "",
                step_error: str = "", behaviour: Behaviour | None = None,
                runtimes: dict[str, Any] | None = None, images: Iterable[str] = (),
                unreachable: bool = False) -> FakeDocker:
    """Installs the fake as `docker`: a build whose VLLM_TAG is `fail_for` fails as a missing base image
    would; `step_error`: every build fails in a RUN step with that error; a push reports `refusal` in its
    progress, as a registry without push rights does; containers
    run `behaviour`; `unreachable`: no engine answers."""
    fake = FakeDocker(images=set(images))

    class Images:
        def build(self, **kwargs: Any) -> tuple[Any, list[Any]]:
            fake.builds.append(kwargs)
            args = kwargs["buildargs"]
            if fail_for and args["VLLM_TAG"] == fail_for:
                reason = f"manifest for {args['VLLM_IMAGE']}:{fail_for} not found: manifest unknown"
                raise BuildError(reason, [{"stream": "Step 1/9 : ARG VLLM_IMAGE\n"},
                                          {"stream": "Step 2/9 : FROM ${VLLM_IMAGE}:${VLLM_TAG}\n"},
                                          {"error": reason}])
            if step_error:
                raise BuildError(step_error, [{"stream": "Step 1/9 : ARG VLLM_IMAGE\n"},
                                              {"stream": "Step 7/9 : RUN python3 -m pip install .\n"},
                                              {"stream": "ERROR: No matching distribution\n"},
                                              {"error": step_error}])
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

        def get(self, name: str) -> Any:
            if name not in fake.images:
                raise ImageNotFound(f"No such image: {name}")
            return types.SimpleNamespace(id="sha256:2", tags=[name])

    class Container:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec = spec
            self.name = spec["name"]
            self.killed = threading.Event()
            self.ended: Exit | None = None
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.attrs: dict[str, Any] = {"State": {}}

        def _run(self) -> None:
            assert behaviour is not None, "this test runs no containers"
            self.ended = behaviour(self.spec, self.killed)

        def start(self) -> None:
            self.thread.start()

        def logs(self, stream: bool = False, follow: bool = False) -> Iterator[bytes]:
            assert stream and follow  # the backend streams the log while the cell runs
            self.thread.join()
            assert self.ended is not None
            yield from self.ended.log.splitlines(keepends=True)

        def wait(self) -> dict[str, int]:
            self.thread.join()
            assert self.ended is not None
            return {"StatusCode": self.ended.code}

        def reload(self) -> None:
            assert self.ended is not None
            self.attrs = {"State": {"OOMKilled": self.ended.oom, "ExitCode": self.ended.code}}

        def kill(self, signal: str = "SIGKILL") -> None:
            fake.calls.append(("kill", f"{self.name}:{signal}"))
            self.killed.set()

        def stop(self, timeout: int = 10) -> None:
            self.kill()

        def remove(self, force: bool = False) -> None:
            fake.calls.append(("remove", self.name))

    class Leftover:
        def __init__(self, name: str) -> None:
            self.name = name

        def remove(self, force: bool = False) -> None:
            assert force  # it may still be running
            fake.leftovers.discard(self.name)
            fake.calls.append(("remove", self.name))

    class Containers:
        def create(self, **spec: Any) -> Container:
            assert spec["name"] not in fake.leftovers, "a container of that name is still there"
            fake.calls.append(("create", spec["name"]))
            fake.containers.append(spec)
            return Container(spec)

        def get(self, name: str) -> Leftover:
            if name not in fake.leftovers:
                raise NotFound(f"No such container: {name}")
            return Leftover(name)

    class Engine:
        images = Images()
        containers = Containers()

        def ping(self) -> bool:
            return True

        def info(self) -> dict[str, Any]:
            return {"Runtimes": runtimes if runtimes is not None else {"runc": {}}}

        def close(self) -> None:
            """The real client closes its connection pool; the fake holds none."""

    def from_env(**options: Any) -> Engine:
        if unreachable:
            raise DockerException("Error while fetching server API version: ('Connection aborted.', "
                                  "FileNotFoundError(2, 'No such file or directory'))")
        return Engine()

    module = types.ModuleType("docker")
    module.from_env = from_env  # type: ignore[attr-defined]
    module.errors = types.SimpleNamespace(  # type: ignore[attr-defined]
        DockerException=DockerException, APIError=APIError, NotFound=NotFound, ImageNotFound=ImageNotFound,
        BuildError=BuildError)
    monkeypatch.setitem(sys.modules, "docker", module)
    return fake
