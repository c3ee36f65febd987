"""Building fleet's images: the plan is fleet.plan.images', the engine fleet.backends.docker_build's."""

from __future__ import annotations

from fleet.backends.docker_build import run_build
from fleet.plan.images import BuildPlan


def build_image(plan: BuildPlan, *, push: bool = False) -> str:
    """Build (and push) the planned image through the local Docker engine; returns the image id."""
    return run_build(plan, push=push)
