"""The CUDA and ROCm images run the in-cluster controller, start from vLLM's own images, know uid 1000.

A Dockerfile cannot be built here (no registry to pull vLLM's images from), so these read what the
build would do; tests/deploy/test_images.py runs hadolint over the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet.plan.images import CUDA_RELEASE_BASE, ROCM_BASE
from fleet.plan.render import RenderContext

ROOT = Path(__file__).resolve().parents[2]


def dockerfile(vendor: str) -> str:
    return (ROOT / "images" / vendor / "Dockerfile").read_text()


def default_arg(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, flags=re.MULTILINE)
    assert match is not None, name
    return match.group(1)


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
def test_the_image_installs_fleet_with_the_kube_extra_and_proves_the_controller_imports(vendor: str) -> None:
    text = dockerfile(vendor)
    assert re.search(r"pip install [^\n]*\"\.\[kube\]\"", text)
    assert "import kubernetes, fleet.backends.kube.client" in text and "fleet submit --help" in text


def test_images_start_from_vllms_official_cuda_and_rocm_images() -> None:
    assert default_arg(dockerfile("cuda"), "VLLM_IMAGE") == CUDA_RELEASE_BASE == "vllm/vllm-openai"
    # vLLM's installation docs name vllm/vllm-openai-rocm as its ROCm image (not AMD's rocm/vllm).
    assert default_arg(dockerfile("rocm"), "VLLM_IMAGE") == ROCM_BASE == "vllm/vllm-openai-rocm"


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
def test_the_jobs_uid_has_a_passwd_entry_in_the_image(vendor: str) -> None:
    uid = RenderContext(run_id="r").run_as_user
    text = dockerfile(vendor)
    assert f"USER {uid}:{uid}" in text
    assert f"getent passwd {uid}" in text and f"useradd --uid {uid}" in text
