"""The docker backend: every cell runs as a container of fleet's image, under its Job's security settings.

It sits between the local backend (a subprocess of this machine's Python) and the kube backend (a Job on a
cluster): the cell runs in the image its Job runs, as a non-root user with every capability dropped and no
privilege escalation, on a read-only root filesystem, with /dev/shm a tmpfs of the pool's shm_size and
writable scratch only where a pod has an emptyDir (/tmp, the results directory, the caches). The paths
are the pod's (fleet.plan.render): the cell at CELL_PATH, read-only; the result written to RESULT_PATH on
a directory mounted from the run directory, where it is gathered from, as the pod's results volume. A
cell that asks for GPUs gets them (`--gpus`, or AMD's /dev/kfd and /dev/dri) when the host has them.

The docker SDK is reached through fleet.backends.docker_build.docker_sdk (imported only when used); what
a container is made with is one pure function, `container_spec`, tested without an engine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.backends._pool import AttemptPool
from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.docker_build import docker_sdk
from fleet.backends.local import CANCEL_GRACE_S, _failure, _read_result, job_environment
from fleet.errors import ConfigError, InfrastructureError
from fleet.model import Cell, Hardware, ResultError
from fleet.plan.images import image_tag
from fleet.plan.render import (
    CACHE_ROOT,
    CELL_PATH,
    LABEL_ATTEMPT,
    LABEL_CELL,
    LABEL_RUN,
    NODE_NAME_ENV,
    RESULT_PATH,
    RenderContext,
    image_for,
    job_name,
    label_value,
)

#: fleet's cpu image as scripts/cpu_image.sh tags it (images/cpu/Dockerfile): what cpu cells run.
CPU_IMAGE = image_tag("cpu", "local")
RESULTS_DIR = str(Path(RESULT_PATH).parent)
#: The pool's shm_size and memory, Kubernetes quantities, in bytes (docker takes bytes).
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
#: Seconds one engine request may take. Creating and removing a container copy its image's files on a
#: copying storage driver (vfs): for the 1.5 GB cpu image about a minute each on a busy 2-core host.
ENGINE_TIMEOUT_S = 900
#: Where AMD GPUs are reached from a container (ROCm's documented `docker run` devices).
AMD_DEVICES = ("/dev/kfd", "/dev/dri")


@dataclass(frozen=True)
class DockerSettings:
    """What a docker run is made with beyond its cells."""

    #: Image per vendor (`{vllm_version}` filled in), after a pool's own `image`; overrides come first.
    images: Mapping[str, str] = field(default_factory=lambda: {
        "cpu": CPU_IMAGE, "nvidia": image_tag("cuda", "{vllm_version}"),
        "amd": image_tag("rocm", "{vllm_version}")})
    image_overrides: Mapping[str, str] = field(default_factory=dict)
    vllm_version: str = "latest"
    run_as_user: int = 1000
    #: The local tier needs no network (models are bundled, the hub is offline); `host` for downloads
    #: (an engine started with --bridge=none has no other network).
    network: str = "none"
    #: A directory kept across runs for the caches (models, compile cache, references), as the Job's
    #: PVCs are; by default each run has its own under the run directory.
    cache_dir: Path | None = None
    amd_supplemental_groups: tuple[int, ...] = (44,)


@dataclass(frozen=True)
class HostGpus:
    """Which GPUs this host can hand to a container."""

    nvidia: bool = False
    amd: bool = False


@dataclass(frozen=True)
class Mounts:
    """The host side of a container's writable and read-only paths."""

    cell_json: Path
    results: Path
    cache: Path


def quantity_bytes(quantity: str, where: str) -> int:
    """A Kubernetes quantity ("16Gi", "512M", "1000") in bytes."""
    match = _QUANTITY.match(quantity.strip())
    if match is None:
        raise ConfigError(f"{quantity!r} is not a memory quantity", where=where,
                          fix="write e.g. 16Gi or 512Mi")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def detect_gpus(runtimes: Mapping[str, Any], exists: Callable[[str], bool]) -> HostGpus:
    """NVIDIA: the engine knows the NVIDIA runtime or the driver's control device is there (what
    `--gpus` needs, through the NVIDIA container toolkit); AMD: ROCm's kernel driver device is there."""
    return HostGpus(nvidia="nvidia" in runtimes or exists("/dev/nvidiactl"), amd=exists("/dev/kfd"))


def gpu_options(hardware: Hardware, gpus: HostGpus, supplemental_groups: Sequence[int]) -> dict[str, Any]:
    """The container's GPU arguments for a pool: none for a CPU pool, else its GPUs, or ConfigError when
    this host has none of them."""
    if hardware.gpu_count == 0:
        return {}
    if hardware.vendor == "nvidia" and gpus.nvidia:
        return {"device_requests": [{"count": hardware.gpu_count, "capabilities": [["gpu"]]}]}
    if hardware.vendor == "amd" and gpus.amd:
        return {"devices": [f"{device}:{device}:rwm" for device in AMD_DEVICES],
                "group_add": [str(group) for group in supplemental_groups]}
    raise ConfigError(f"pool {hardware.name!r} needs {hardware.gpu_count} {hardware.vendor} GPU(s) and this "
                      "Docker host has none", where=f"hardware {hardware.name}",
                      fix="run GPU pools with --backend kube, or on a host with its GPUs (NVIDIA: the "
                          "NVIDIA container toolkit; AMD: /dev/kfd)")


def container_environment(attempt: Attempt) -> dict[str, str]:
    """The Job container's variables (fleet.plan.render), the node being this host."""
    return {
        **job_environment(attempt),
        "FLEET_VLLM_CACHE_ROOT": f"{CACHE_ROOT}/vllm",
        "HF_HOME": f"{CACHE_ROOT}/models",
        "HOME": "/tmp",
        NODE_NAME_ENV: platform.node(),
    }


def container_spec(attempt: Attempt, image: str, mounts: Mounts, *, user: str, network: str,
                   gpu: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the SDK's containers.create for one attempt: the Job's container, as docker
    spells it. The name is the Job's (a function of run, cell and attempt)."""
    cell = attempt.cell
    return {
        "image": image,
        "command": ["python3", "-m", "fleet", "suite", "run", "--cell", CELL_PATH, "--out", RESULT_PATH,
                    "--reference-cache", f"{CACHE_ROOT}/vllm/reference"],
        "name": job_name(attempt.run_id, cell.id, attempt.number),
        "labels": {LABEL_RUN: label_value(attempt.run_id), LABEL_CELL: label_value(cell.id),
                   LABEL_ATTEMPT: str(attempt.number)},
        "environment": container_environment(attempt),
        "user": user,
        "working_dir": "/tmp",
        "read_only": True,
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "shm_size": quantity_bytes(cell.hardware.shm_size, f"hardware {cell.hardware.name}.shm_size"),
        "mem_limit": quantity_bytes(cell.hardware.memory, f"hardware {cell.hardware.name}.memory"),
        "tmpfs": {"/tmp": "rw,nosuid,nodev"},
        "volumes": {
            str(mounts.cell_json): {"bind": CELL_PATH, "mode": "ro"},
            str(mounts.results): {"bind": RESULTS_DIR, "mode": "rw"},
            str(mounts.cache): {"bind": CACHE_ROOT, "mode": "rw"},
        },
        "network_mode": network,
        **gpu,
    }


def image_of(cell: Cell, settings: DockerSettings, run_id: str) -> str:
    context = RenderContext(run_id=run_id, vllm_version=settings.vllm_version, images=dict(settings.images),
                            image_overrides=dict(settings.image_overrides))
    return image_for(cell, context)


class DockerBackend:
    name = "docker"

    def __init__(self, run_dir: Path, settings: DockerSettings | None = None, *, parallel: int = 1,
                 on_start: Callable[[Attempt], None] | None = None) -> None:
        if parallel < 1:
            raise ConfigError("--parallel must be at least 1", where="--parallel")
        self.run_dir = run_dir.resolve()  # bind mounts take absolute paths
        self.settings = settings or DockerSettings()
        self.parallel = parallel
        self._sdk = docker_sdk()
        try:
            self._engine = self._sdk.from_env(timeout=ENGINE_TIMEOUT_S)
            runtimes = self._engine.info().get("Runtimes") or {}
        except self._sdk.errors.DockerException as err:
            raise InfrastructureError(f"cannot reach the Docker engine: {err}", where="--backend docker",
                                      fix="start it (`dockerd`, or `systemctl start docker`) and check "
                                          "`docker info`; or use --backend local") from err
        self._gpus = detect_gpus(runtimes, os.path.exists)
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._cancelled = threading.Event()
        self._pool = AttemptPool(self._run, self.cell_dir, parallel=parallel, what="docker")
        self._on_start = on_start
        self._checked_images: set[str] = set()
        self._closed = False

    def cell_dir(self, cell_id: str) -> Path:
        return self.run_dir / "cells" / cell_id

    def submit(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:  # every image and GPU checked before anything starts
            self._require_image(image_of(attempt.cell, self.settings, attempt.run_id))
            gpu_options(attempt.cell.hardware, self._gpus, self.settings.amd_supplemental_groups)
        self._pool.submit(attempts)

    def outcomes(self) -> Iterator[AttemptOutcome]:
        return self._pool.outcomes()

    def close(self) -> None:
        """The engine's client (its connection pool); each container was waited for by its own thread."""
        self._engine.close()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def cancel(self) -> None:
        """SIGTERM to every running cell's container (the suite stops its engines), SIGKILL after
        CANCEL_GRACE_S."""
        self._cancelled.set()
        with self._lock:
            running = list(self._running)
        for container in running:
            with contextlib.suppress(self._sdk.errors.DockerException):
                container.kill(signal="SIGTERM")
        deadline = time.monotonic() + CANCEL_GRACE_S
        for container in running:
            with contextlib.suppress(self._sdk.errors.DockerException):
                container.stop(timeout=max(int(deadline - time.monotonic()), 0))

    def _require_image(self, image: str) -> None:
        """The image must be on this engine: nothing is pulled (a registry may be out of reach, and a
        tag pulled mid-run would change what the run measures)."""
        if image in self._checked_images:
            return
        try:
            self._engine.images.get(image)
        except self._sdk.errors.ImageNotFound as err:
            fix = ("build it: scripts/cpu_image.sh" if image == CPU_IMAGE
                   else f"build it (fleet images build) or `docker pull {image}`")
            raise ConfigError(f"image {image} is not on this Docker engine", where="--backend docker",
                              fix=fix) from err
        except self._sdk.errors.DockerException as err:
            raise InfrastructureError(f"cannot read image {image} from the Docker engine: {err}",
                                      where="--backend docker", fix="check `docker info`") from err
        self._checked_images.add(image)

    def _scratch(self, directory: Path) -> tuple[Path, str]:
        """A directory the container's user can write, and that user: this host's own uid when it is not
        root (the files stay the caller's), else the Job's run_as_user, who is given the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return directory, f"{os.geteuid()}:{os.getegid()}"
        uid = self.settings.run_as_user
        os.chown(directory, uid, uid)
        return directory, f"{uid}:{uid}"

    def _run(self, attempt: Attempt) -> AttemptOutcome:
        directory = self.cell_dir(attempt.cell.id)
        result_path = directory / f"result.attempt-{attempt.number}.json"
        log_path = directory / f"attempt-{attempt.number}.log"
        started = time.time()
        if self._cancelled.is_set():
            cancelled = ResultError(category="infrastructure", reason="Cancelled",
                                    message="the run was cancelled")
            return AttemptOutcome(attempt, None, cancelled, None, None, started, time.time())
        cache, _ = self._scratch(self.settings.cache_dir or self.run_dir / "cache")
        for sub in ("models", "vllm", "vllm/reference"):
            self._scratch(cache / sub)
        results, user = self._scratch(directory / f"attempt-{attempt.number}")
        mounts = Mounts(cell_json=directory / "cell.json", results=results, cache=cache)
        spec = container_spec(attempt, image_of(attempt.cell, self.settings, attempt.run_id), mounts,
                              user=user, network=self.settings.network,
                              gpu=gpu_options(attempt.cell.hardware, self._gpus,
                                              self.settings.amd_supplemental_groups))
        if self._on_start is not None:
            self._on_start(attempt)
        try:
            exit_code, timed_out, oom = self._run_container(spec, log_path, attempt.cell.timeout_s)
        except self._sdk.errors.DockerException as err:
            broken = ResultError(category="infrastructure", reason="NoResult",
                                 message=f"the Docker engine failed the container: {err}")
            return AttemptOutcome(attempt, None, broken, None, None, started, time.time())
        finished = time.time()
        written = results / Path(RESULT_PATH).name
        if written.exists():
            written.replace(result_path)
        with contextlib.suppress(OSError):
            results.rmdir()
        result, unreadable = _read_result(result_path)
        if oom and result is None:
            failure: ResultError | None = ResultError(
                category="infrastructure", reason="OOMKilled", exit_code=exit_code,
                message=f"the container went over the pool's memory ({attempt.cell.hardware.memory})")
        else:
            failure = _failure(exit_code, timed_out, result, unreadable, log_path, attempt.cell.timeout_s)
        return AttemptOutcome(attempt, result, failure, result_path if result else None, exit_code,
                              started, finished)

    def _run_container(self, spec: dict[str, Any], log_path: Path, timeout_s: int) -> tuple[int, bool, bool]:
        """Run to the end (or the deadline), streaming its output into the log; (exit code, timed out,
        killed for memory). A container left by an earlier controller under the same name is replaced."""
        with contextlib.suppress(self._sdk.errors.NotFound):
            self._engine.containers.get(spec["name"]).remove(force=True)
        container = self._engine.containers.create(**spec)
        with self._lock:
            self._running.add(container)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(self._sdk.errors.DockerException):
                container.kill()

        timer = threading.Timer(timeout_s, expire)
        try:
            container.start()
            timer.start()
            with log_path.open("wb") as log:
                for chunk in container.logs(stream=True, follow=True):
                    log.write(chunk)
                    log.flush()
            exit_code = int(container.wait()["StatusCode"])
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        finally:
            timer.cancel()
            with self._lock:
                self._running.discard(container)
            with contextlib.suppress(self._sdk.errors.DockerException):
                container.remove(force=True)
        return exit_code, expired.is_set(), oom
