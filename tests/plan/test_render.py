"""Rendering cells into Job manifests: names, placement, images, caches, policies, Kueue, dry-run YAML."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from fleet.errors import ConfigError
from fleet.model import Cell
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.render import (
    DATASET_ROOT,
    RenderContext,
    job_name,
    label_value,
    render_job,
    render_run,
    to_yaml,
)

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def weekly_cells() -> list[Cell]:
    return expand(load_tier(JOBS, "weekly"), load_catalog(JOBS), tier_path="weekly.yaml")


def cell_on(hardware: str) -> Cell:
    return next(c for c in weekly_cells() if c.hardware.name == hardware)


def test_job_name_is_deterministic_dns_safe_and_distinct_per_attempt_when_rendered_twice() -> None:
    cells = weekly_cells()
    names = {job_name("weekly-1", c.id, 1) for c in cells}
    assert len(names) == len(cells)
    assert job_name("weekly-1", cells[0].id, 1) == job_name("weekly-1", cells[0].id, 1)
    assert job_name("weekly-1", cells[0].id, 2) != job_name("weekly-1", cells[0].id, 1)
    assert job_name("weekly-2", cells[0].id, 1) != job_name("weekly-1", cells[0].id, 1)
    for name in names:
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


def test_long_or_odd_ids_become_valid_unique_label_values_when_labelled() -> None:
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert label_value("ngram__qwen3-8b__h200") == "ngram__qwen3-8b__h200"
    assert label_value(long_a) != label_value(long_b)
    for value in (label_value(long_a), label_value("a/b:c"), label_value("-lead")):
        assert len(value) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value)


def test_nvidia_cell_gets_its_pool_gpu_cuda_image_and_labels_when_rendered() -> None:
    cell = cell_on("h200")
    job = render_job(cell, 1, RenderContext(run_id="weekly-1", vllm_version="v0.11.0"))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["labels"]["fleet.run-id"] == "weekly-1"
    assert job["metadata"]["labels"]["fleet.hardware"] == "h200"
    assert job["metadata"]["labels"]["fleet.tier"] == "weekly"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].endswith("fleet-cuda:v0.11.0")
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert Cell.model_validate_json(annotations["fleet.cell-json"]) == cell


def test_amd_cell_gets_amd_gpu_rocm_image_and_device_groups_when_rendered() -> None:
    job = render_job(cell_on("mi300"), 1, RenderContext(run_id="r", vllm_version="rocm7"))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["amd.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["image"].endswith("fleet-rocm:rocm7")
    assert pod["nodeSelector"] == {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}
    assert pod["securityContext"]["supplementalGroups"] == [44]


def test_job_is_non_privileged_with_shm_secret_token_deadline_ttl_and_failure_policy() -> None:
    cell = cell_on("l4")
    job = render_job(cell, 1, RenderContext(run_id="r", ttl_after_finished_s=600, deadline_slack_s=100))
    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "privileged": False,
                                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": cell.hardware.shm_size}
    token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert spec["activeDeadlineSeconds"] == cell.timeout_s + 100
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["backoffLimit"] == 0
    rules = spec["podFailurePolicy"]["rules"]
    disruption = [{"type": "DisruptionTarget", "status": "True"}]
    assert rules[0] == {"action": "Ignore", "onPodConditions": disruption}
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["values"] == [2]
    assert rules[1]["onPodConditions"] == []  # required by Kubernetes 1.26-1.28's schema


def test_caches_are_pvcs_only_when_named() -> None:
    cell = cell_on("h100")
    bare = render_job(cell, 1, RenderContext(run_id="r"))["spec"]["template"]["spec"]["volumes"]
    assert {v["name"]: "emptyDir" in v for v in bare}["compile-cache"]
    context = RenderContext(run_id="r", model_cache_pvc="models", compile_cache_pvc="vllm-cc")
    named = render_job(cell, 1, context)
    volumes = {v["name"]: v for v in named["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "models"}
    assert volumes["compile-cache"]["persistentVolumeClaim"] == {"claimName": "vllm-cc"}
    env = {e["name"]: e.get("value") for e in named["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLEET_VLLM_CACHE_ROOT"] == "/var/cache/fleet/vllm"


def test_a_cell_reading_a_dataset_mounts_the_dataset_pvc_read_only_where_its_prompts_live() -> None:
    cell = cell_on("l4")
    assert cell.workload.prompts.startswith(DATASET_ROOT + "/")
    pod = render_job(cell, 1, RenderContext(run_id="r"))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["datasets"]["persistentVolumeClaim"] == {"claimName": "fleet-datasets", "readOnly": True}
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "datasets"]
    assert mount == {"name": "datasets", "mountPath": DATASET_ROOT, "readOnly": True}


def test_a_bundled_prompt_cell_mounts_no_dataset_volume() -> None:
    cell = cell_on("l4").model_copy(update={"workload": cell_on("l4").workload.model_copy(
        update={"prompts": "bundled:tiny-stdlib"})})
    pod = render_job(cell, 1, RenderContext(run_id="r", dataset_pvc=None))["spec"]["template"]["spec"]
    assert "datasets" not in {v["name"] for v in pod["volumes"]}


def test_a_dataset_cell_without_a_dataset_pvc_is_a_config_error_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="mounts no dataset volume") as caught:
        render_job(cell_on("l4"), 1, RenderContext(run_id="r", dataset_pvc=None))
    assert "docs/operating.md" in caught.value.line()


def test_sharded_cell_becomes_an_indexed_job_with_per_index_backoff() -> None:
    spec = render_job(cell_on("a100"), 1, RenderContext(run_id="r", shards=4))["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 4
    assert spec["backoffLimitPerIndex"] == 0 and "backoffLimit" not in spec
    assert spec["podFailurePolicy"]["rules"][1]["action"] == "FailIndex"


def test_kueue_adds_queue_and_priority_labels_and_creates_suspended() -> None:
    job = render_job(cell_on("l4"), 1, RenderContext(run_id="r", kueue=True))
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "weekly"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "weekly"
    assert job["spec"]["suspend"] is True
    plain = render_job(cell_on("l4"), 1, RenderContext(run_id="r"))
    assert "suspend" not in plain["spec"] and "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


@pytest.mark.parametrize("options", [{}, {"kueue": True, "shards": 2, "model_cache_pvc": "m"}])
def test_every_rendered_job_validates_against_the_kubernetes_schema(options: dict[str, object]) -> None:
    context = RenderContext(run_id="weekly-20260101-000000-abcd", **options)  # type: ignore[arg-type]
    for hardware in ("l4", "mi300"):
        kubernetes_validate.validate(render_job(cell_on(hardware), 1, context), "1.30", strict=True)
        rerun = render_job(cell_on(hardware), 3, context, avoid_nodes=["gpu-b", "gpu-a", "gpu-b"])
        kubernetes_validate.validate(rerun, "1.30", strict=True)


def test_a_rerun_only_prefers_other_nodes_one_field_requirement_per_node() -> None:
    pod = render_job(cell_on("h100"), 2, RenderContext(run_id="r"), avoid_nodes=["gpu-b", "gpu-a", "gpu-b"])
    affinity = pod["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    # Preferred, never required: a pool of one node (or with its other nodes busy) must still run it.
    assert list(affinity) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    # The API takes one value per NotIn on a node field; a term's requirements must all hold.
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]["matchFields"] == [
        {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-a"]},
        {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-b"]}]
    first = render_job(cell_on("h100"), 1, RenderContext(run_id="r"))
    assert "affinity" not in first["spec"]["template"]["spec"]


def test_the_suite_learns_its_node_from_the_downward_api() -> None:
    job = render_job(cell_on("h100"), 1, RenderContext(run_id="r"))
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FLEET_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in env


def test_dry_run_yaml_holds_one_document_per_cell() -> None:
    cells = weekly_cells()
    documents = list(yaml.safe_load_all(to_yaml(render_run(cells, RenderContext(run_id="r")))))
    assert [d["kind"] for d in documents] == ["Job"] * len(cells)


def test_the_h200_differential_cells_render_as_distinct_valid_jobs() -> None:
    cells = [c for c in expand(load_tier(JOBS, "h200"), load_catalog(JOBS), tier_path="h200.yaml")
             if c.execution]
    jobs = [render_job(cell, 1, RenderContext(run_id="h200-1")) for cell in cells]

    assert len({job["metadata"]["name"] for job in jobs}) == len(cells) == 18
    assert len({label_value(cell.id) for cell in cells}) == 18
    kubernetes_validate.validate(jobs[0], "1.30", strict=True)
