"""Carry out an image build plan on the local Docker engine: the only module that imports `docker`.

The plan (fleet.plan.images) is pure and tested without an engine; this module talks to the engine
through the docker SDK, imported when an image is built, so the rest of fleet runs without it.
"""

from __future__ import annotations

from typing import Any

from fleet.errors import ConfigError, InfrastructureError
from fleet.plan.images import BuildPlan


def run_build(plan: BuildPlan, *, push: bool = False) -> str:
    """Build (and push) through the local Docker engine; returns the image id."""
    docker = docker_sdk()
    try:
        engine = docker.from_env()
        image, _logs = engine.images.build(path=str(plan.context), dockerfile=plan.dockerfile,
                                           buildargs=plan.buildargs, tag=plan.tag, labels=plan.labels,
                                           rm=True, pull=True)
        if push:
            repository, _, tag = plan.tag.rpartition(":")
            # A refused push does not raise: the engine reports it in the streamed progress.
            for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
                if isinstance(line, dict) and line.get("error"):
                    raise InfrastructureError(f"docker push of {plan.tag} failed: {line['error']}",
                                              where=repository,
                                              fix="log in to the registry (`docker login`) with push rights")
    except docker.errors.DockerException as err:
        raise InfrastructureError(f"docker build failed: {err}", where=plan.dockerfile,
                                  fix="check that a Docker engine is running (`docker info`)") from err
    return str(image.id)


def pinned_tag(image: str, tag: str) -> str:
    """`tag@sha256:...`: the tag with the digest it points to now, so that every build of a bisection starts
    from the same base even if a release moves the tag meanwhile (FROM image:tag@digest uses the digest)."""
    docker = docker_sdk()
    try:
        digest = docker.from_env().images.get_registry_data(f"{image}:{tag}").id
    except docker.errors.DockerException as err:
        raise InfrastructureError(f"cannot read the digest of {image}:{tag}: {err}", where=image,
                                  fix="check the Docker engine (`docker info`) and the registry") from err
    return f"{tag}@{digest}"


def docker_sdk() -> Any:  # the SDK ships no types
    """The docker SDK, imported only where an image is built; ConfigError if it is not installed."""
    try:
        import docker
    except ImportError as err:
        raise ConfigError("the docker SDK is not installed", fix="pip install docker") from err
    return docker
