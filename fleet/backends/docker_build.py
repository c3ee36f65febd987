"""Carry out an image build plan on the local Docker engine through the docker SDK.

The plan (fleet.plan.images) is pure and tested without an engine; this module talks to the engine
through the docker SDK, imported when an image is built, so the rest of fleet runs without it. Only this
module and the docker backend (fleet.backends.docker, through `docker_sdk`) reach the SDK.

A build uses a base image the engine already has and pulls it only when it is missing (`pull=True`
pulls it always): a base made on this machine, in no registry (images/cpu's, scripts/debian_base.sh),
must be usable, and a bisection pins its base by digest (`pinned_tag`) rather than by pulling.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from fleet.errors import ConfigError, InfrastructureError
from fleet.plan.images import BuildPlan

#: Seconds one engine request may take: a build step that prints nothing for minutes (a large layer
#: committed on a copying storage driver) must not time the build out.
ENGINE_TIMEOUT_S = 3600
_STEP = re.compile(r"^Step \d+/\d+ : ")
_FROM_STEP = re.compile(r"^Step \d+/\d+ : FROM ", re.IGNORECASE)


def run_build(plan: BuildPlan, *, push: bool = False, pull: bool = False) -> str:
    """Build (and push) through the local Docker engine; returns the image id. `pull`: fetch the base
    image even when the engine has it (a newer image under the same tag)."""
    docker = docker_sdk()
    with contextlib.closing(engine_client(docker, where=plan.dockerfile)) as engine:
        return _build(docker, engine, plan, push=push, pull=pull)


def _build(docker: Any, engine: Any, plan: BuildPlan, *, push: bool, pull: bool) -> str:
    try:
        image, _logs = engine.images.build(path=str(plan.context), dockerfile=plan.dockerfile,
                                           buildargs=plan.buildargs, tag=plan.tag, labels=plan.labels,
                                           rm=True, pull=pull)
    except docker.errors.BuildError as err:
        raise build_failure(plan, str(err), pulled=pull, step=failed_step(err.build_log)) from err
    except docker.errors.DockerException as err:
        raise build_failure(plan, str(err), pulled=pull) from err
    if push:
        repository, _, tag = plan.tag.rpartition(":")
        try:
            # A refused push does not raise: the engine reports it in the streamed progress.
            for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
                if isinstance(line, dict) and line.get("error"):
                    raise InfrastructureError(f"docker push of {plan.tag} failed: {line['error']}",
                                              where=repository,
                                              fix="log in to the registry (`docker login`) with push rights")
        except docker.errors.DockerException as err:
            raise InfrastructureError(f"docker push of {plan.tag} failed: {err}", where=repository,
                                      fix="check the registry's address and `docker login`") from err
    return str(image.id)


def base_image(plan: BuildPlan) -> str:
    """The image the plan's Dockerfile starts FROM, as its build arguments name it."""
    args = plan.buildargs
    if "BASE_IMAGE" in args:
        return args["BASE_IMAGE"]
    image = args.get("VLLM_IMAGE", "")
    return f"{image}:{args['VLLM_TAG']}" if image and args.get("VLLM_TAG") else image


def failed_step(build_log: Any) -> str | None:
    """The last step the engine started ("Step 2/9 : FROM ..."): where the build failed."""
    steps = [line.strip() for entry in build_log or () if isinstance(entry, dict)
             for line in str(entry.get("stream") or "").splitlines() if _STEP.match(line.strip())]
    return steps[-1] if steps else None


def build_failure(plan: BuildPlan, message: str, *, pulled: bool, step: str | None = None
                  ) -> InfrastructureError:
    """A failed build, with the hint that fits what failed: getting the base image (the failed step is a
    FROM, or the engine's message names the base), or a later step of the Dockerfile. The engine was
    reached: an unreachable one fails in `engine_client`, with its own hint."""
    base = base_image(plan)
    repository = base.split("@")[0].rsplit(":", 1)[0] if base else ""
    message = " ".join(message.split())
    names_base = bool(repository) and repository in message
    if (step is not None and _FROM_STEP.match(step)) or (step is None and names_base):
        if pulled:
            fix = (f"a base only on this engine is in no registry: build without pull (the default) to use "
                   f"it (`docker image inspect {base}`); else check the tag and `docker login`")
        else:
            fix = (f"{base} is neither on this engine nor pullable: make or load it (`docker image inspect "
                   f"{base}`; images/cpu's base: scripts/debian_base.sh), or check the tag and the registry")
        return InfrastructureError(f"docker build cannot get its base image {base}: {message}",
                                   where=plan.dockerfile, fix=fix)
    at = f" at `{step[:120]}`" if step else ""
    return InfrastructureError(f"docker build of {plan.tag} failed{at}: {message}", where=plan.dockerfile,
                               fix=f"rerun `{plan.describe()}` for the step's whole output")


def engine_client(docker: Any, *, where: str) -> Any:
    """A client of the local engine, which answered; InfrastructureError when none answers."""
    try:
        engine = docker.from_env(timeout=ENGINE_TIMEOUT_S)
        engine.ping()
    except docker.errors.DockerException as err:
        raise InfrastructureError(f"cannot reach a Docker engine: {err}", where=where,
                                  fix="check that a Docker engine is running (`docker info`; DOCKER_HOST "
                                      "names another)") from err
    return engine


def pinned_tag(image: str, tag: str) -> str:
    """`tag@sha256:...`: the tag with the digest it points to now, so that every build of a bisection starts
    from the same base even if a release moves the tag meanwhile (FROM image:tag@digest uses the digest)."""
    docker = docker_sdk()
    try:
        with contextlib.closing(docker.from_env()) as engine:
            digest = engine.images.get_registry_data(f"{image}:{tag}").id
    except docker.errors.DockerException as err:
        raise InfrastructureError(f"cannot read the digest of {image}:{tag}: {err}", where=image,
                                  fix="check the Docker engine (`docker info`) and the registry") from err
    return f"{tag}@{digest}"


def docker_sdk() -> Any:  # the SDK ships no types
    """The docker SDK, imported only where it is used; ConfigError if it is not installed."""
    try:
        import docker
    except ImportError as err:
        raise ConfigError("the docker SDK is not installed", fix="pip install docker") from err
    return docker
