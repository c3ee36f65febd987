"""A client of the real Docker engine for the tests that need one, or a skip that says what is missing
(a failure under FLEET_REQUIRE_DOCKER=1, which .ci/run sets where it started the engine)."""

from __future__ import annotations

import gc
import os
import warnings
from typing import Any

import pytest


def missing(why: str) -> None:
    if os.environ.get("FLEET_REQUIRE_DOCKER") == "1":
        pytest.fail(f"FLEET_REQUIRE_DOCKER=1 but {why}")
    pytest.skip(why)


def real_engine_with(image: str, *, made_by: str, timeout: int = 60) -> Any:
    """A client of a running engine that has `image` (`made_by` says which script builds it)."""
    try:
        import docker
    except ImportError:
        missing("the docker SDK is not installed (pip install docker)")
    unreachable = None
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
    except docker.errors.DockerException as err:
        unreachable = str(err)[:80]
    if unreachable is not None:
        # The SDK does not close the socket of a connect that failed (docker/transport/unixconn.py); it is
        # collected here, or its ResourceWarning is raised in whichever test happens to run next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        missing(f"no Docker engine is reachable ({unreachable}): start dockerd, as .ci/run does")
    try:
        engine.images.get(image)
    except docker.errors.ImageNotFound:
        engine.close()
        missing(f"{image} is not on the engine: {made_by} makes it (.ci/run runs it)")
    return engine
