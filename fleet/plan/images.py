"""fleet's images: which base, which build arguments, which tag, for a vLLM commit or tag and a vendor.

The plan is pure (tested without a Docker engine); fleet.backends.docker_build carries it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fleet.errors import ConfigError

#: Per-commit CUDA images: vLLM's post-merge CI images (nightly-<sha> tags on Docker Hub keep only 14).
CUDA_COMMIT_BASE = "public.ecr.aws/q9t5s3a7/vllm-ci-postmerge-repo"
CUDA_RELEASE_BASE = "vllm/vllm-openai"
#: vLLM's wheel of each main commit since v0.5.3 (a PEP 503 index per commit); its images expire in days.
WHEEL_INDEX_TEMPLATE = "https://wheels.vllm.ai/{sha}"
#: vLLM's official ROCm images (its installation docs, "pre-built images"), tagged per release; no
#: per-commit tags.
ROCM_BASE = "vllm/vllm-openai-rocm"
_SHA = re.compile(r"^[0-9a-f]{40}$")
#: Where `fleet images build` tags its images unless told otherwise.
DEFAULT_REPOSITORY = "ghcr.io/fleet-ci"


def image_tag(vendor: str, version: str, repository: str = DEFAULT_REPOSITORY) -> str:
    """The tag fleet's image of one vLLM build (a commit sha or a release tag) carries."""
    return f"{repository}/fleet-{vendor}:{version}"


#: fleet's CUDA image per vLLM commit, as `fleet images build --vendor cuda --commit SHA` tags it: what a
#: bisection on the cluster runs (vLLM's own nightly-<sha> images lack fleet, and Docker Hub keeps 14).
COMMIT_IMAGE_TEMPLATE = image_tag("cuda", "{sha}")


@dataclass(frozen=True)
class BuildPlan:
    context: Path
    dockerfile: str
    buildargs: dict[str, str]
    tag: str
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"--build-arg {k}={v}" for k, v in sorted(self.buildargs.items()))
        return f"docker build -f {self.dockerfile} {args} -t {self.tag} {self.context}"


def build_plan(repo_root: Path, *, vendor: str, commit: str | None = None, vllm_tag: str | None = None,
               base: str | None = None, repository: str = DEFAULT_REPOSITORY,
               from_wheel: bool = False, wheel_index: str = WHEEL_INDEX_TEMPLATE,
               wheel_base_tag: str = "latest") -> BuildPlan:
    """The Dockerfile, base image and tag for one vendor and one vLLM build (a commit or a tag);
    `from_wheel`: the commit's wheel (from `wheel_index`, with {sha}) over vLLM's latest release image."""
    if (commit is None) == (vllm_tag is None):
        raise ConfigError("give exactly one of --commit and --vllm-tag", where="fleet images build")
    if commit is not None and not _SHA.match(commit):
        raise ConfigError(f"--commit {commit!r} is not a full 40-character commit sha", where="--commit")
    if from_wheel and (commit is None or vendor != "cuda"):
        raise ConfigError("vLLM publishes per-commit wheels for CUDA builds of main commits",
                          where="--from-wheel", fix="use it with --vendor cuda --commit SHA")
    if from_wheel and "{sha}" not in wheel_index:
        raise ConfigError(f"wheel index {wheel_index!r} has no {{sha}} placeholder", where="--wheel-index",
                          fix=f"write e.g. {WHEEL_INDEX_TEMPLATE} (or a variant: .../{{sha}}/cu130)")
    dockerfile = repo_root / "images" / vendor / "Dockerfile"
    if not dockerfile.is_file():
        raise ConfigError(f"no Dockerfile for vendor {vendor!r}", where=str(dockerfile))
    if vendor == "cuda":
        image = base or (CUDA_COMMIT_BASE if commit else CUDA_RELEASE_BASE)
    elif vendor == "rocm":
        if commit is not None and base is None:
            raise ConfigError("AMD publishes no per-commit vLLM images", where="--commit",
                              fix="build vLLM's docker/Dockerfile.rocm for that commit and pass --base")
        image = base or ROCM_BASE
    else:
        raise ConfigError(f"unknown vendor {vendor!r}", where="--vendor", fix="use cuda or rocm")
    version = commit or str(vllm_tag)
    buildargs = {"VLLM_IMAGE": image, "VLLM_TAG": version}
    if from_wheel and commit is not None:
        buildargs = {"VLLM_IMAGE": base or CUDA_RELEASE_BASE, "VLLM_TAG": wheel_base_tag,
                     "VLLM_WHEEL_INDEX": wheel_index.format(sha=commit)}
    return BuildPlan(
        context=repo_root,
        dockerfile=f"images/{vendor}/Dockerfile",
        buildargs=buildargs,
        tag=image_tag(vendor, version, repository),
        labels={"org.opencontainers.image.source": "fleet", "fleet.vllm": version},
    )
