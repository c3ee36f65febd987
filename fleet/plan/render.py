"""Cell + run context -> a Kubernetes Job manifest (a plain dict): pure, so it can be read, diffed and tested.

The manifest is the whole contract with the cluster. Its name is a function of (run, cell, attempt) only,
so re-submitting after a crash names the same Job and the API server's 409 stops a duplicate. Labels
carry the run, cell, tier, hardware and attempt, so a new controller finds a run's Jobs with one LIST.
The cell document rides in a pod annotation and reaches the container through the downward API, which
costs no extra object (a ConfigMap per cell would double the API calls per Job).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import Field

from fleet.errors import ConfigError
from fleet.model import Cell
from fleet.model._base import Strict
from fleet.plan.images import image_tag

LABEL_RUN = "fleet.run-id"
LABEL_CELL = "fleet.cell"
LABEL_TIER = "fleet.tier"
LABEL_HARDWARE = "fleet.hardware"
LABEL_ATTEMPT = "fleet.attempt"
ANNOTATION_CELL_ID = "fleet.cell-id"
ANNOTATION_CELL_JSON = "fleet.cell-json"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

CONTAINER = "suite"
CELL_PATH = "/etc/fleet/cell/cell.json"
RESULT_PATH = "/var/run/fleet/result.json"
CACHE_ROOT = "/var/cache/fleet"
#: Where a Job mounts the dataset volume (read-only): a tier's `workload.prompts` under it, e.g.
#: /var/lib/fleet/datasets/sharegpt.jsonl, is read from the run's dataset PVC (docs/operating.md, Datasets).
DATASET_ROOT = "/var/lib/fleet/datasets"
#: Where the suite reads the name of the node it runs on (the downward API's spec.nodeName).
NODE_NAME_ENV = "FLEET_NODE_NAME"
#: The scheduler's weight for running a rerun away from the nodes the cell's earlier attempts ran on.
AVOID_WEIGHT = 100
#: The suite's exit code for a configuration error (fleet.errors.ExitCode.CONFIG): the Job fails at once.
CONFIG_EXIT_CODE = 2

#: The oldest Kubernetes minor fleet's Jobs are supported on: sharded cells are Indexed Jobs with
#: backoffLimitPerIndex and podFailurePolicy's FailIndex, beta and on by default from 1.29 (alpha, off, in
#: 1.28). Unsharded Jobs also validate on 1.26-1.28; 1.25 has podFailurePolicy off by default.
MIN_KUBERNETES = "1.29"

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


class RenderContext(Strict):
    """Everything about a run that is not in its cells: where and with what its Jobs run.

    It is persisted in runs/<run-id>/run.json so that `fleet resume` renders the very same Jobs.
    """

    run_id: str = Field(min_length=1, max_length=63)
    namespace: str = "fleet"
    vllm_version: str = "latest"
    #: Image per vendor where a pool names none (jobs/hardware.yaml `image`); `{vllm_version}` is filled
    #: in. These are fleet's images (images/), built FROM vLLM's official CUDA and ROCm images with the
    #: suite installed.
    images: dict[str, str] = Field(default_factory=lambda: {
        "nvidia": image_tag("cuda", "{vllm_version}"),
        "amd": image_tag("rocm", "{vllm_version}"),
        "cpu": image_tag("cuda", "{vllm_version}"),
    })
    #: Images given for this run per vendor (`--image VENDOR=IMAGE`, a bisection's commit image): before a
    #: pool's own image and the vendor's default.
    image_overrides: dict[str, str] = Field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    service_account: str = "fleet-runner"
    model_cache_pvc: str | None = None
    compile_cache_pvc: str | None = None
    #: The PVC mounted read-only at DATASET_ROOT for cells whose prompts live there (k8s/base deploys it).
    dataset_pvc: str | None = "fleet-datasets"
    hf_token_secret: str | None = "hf-token"
    hf_token_key: str = "token"
    hf_offline: bool = False
    #: Seconds a Job may run beyond its cell's timeout: image pull, engine start, model download.
    deadline_slack_s: int = Field(default=900, ge=0)
    ttl_after_finished_s: int = Field(default=86400, ge=0)
    kueue: bool = False
    queue_name: str | None = None
    priority_class: str | None = None
    shards: int = Field(default=1, ge=1)
    #: Extra groups for non-root access to /dev/kfd and /dev/dri on AMD nodes (video; render varies).
    amd_supplemental_groups: list[int] = Field(default_factory=lambda: [44])
    run_as_user: int = 1000


def label_value(text: str) -> str:
    """`text` if it is a valid label value, else a readable prefix plus a hash (still unique)."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:50].strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def job_name(run_id: str, cell_id: str, attempt: int) -> str:
    """Deterministic and DNS-safe: the same (run, cell, attempt) always names the same Job."""
    digest = hashlib.sha256(f"{run_id}\0{cell_id}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", cell_id.lower()).strip("-")[:40].strip("-")
    return f"{slug}-{digest}-a{attempt}"


def run_selector(run_id: str) -> str:
    return f"{LABEL_RUN}={label_value(run_id)}"


def image_for(cell: Cell, context: RenderContext) -> str:
    """The image the cell's Job runs: the run's override for the vendor, else the pool's own, else the
    vendor's default; `{vllm_version}` filled in."""
    vendor = cell.hardware.vendor
    template = context.image_overrides.get(vendor) or cell.hardware.image or context.images.get(vendor)
    if template is None:
        raise ConfigError(f"no image configured for vendor {vendor!r}", where="images",
                          fix=f"set an image for {vendor} (e.g. --image {vendor}=REPO:TAG)")
    return template.replace("{vllm_version}", context.vllm_version)


def queue_for(cell: Cell, context: RenderContext) -> tuple[str | None, str | None]:
    """Kueue's LocalQueue and WorkloadPriorityClass for the cell's tier (named after it by default)."""
    if not context.kueue:
        return None, None
    return context.queue_name or cell.tier, context.priority_class or cell.tier


def _resources(cell: Cell) -> dict[str, Any]:
    hardware = cell.hardware
    requests: dict[str, str] = {"cpu": hardware.cpu, "memory": hardware.memory}
    limits: dict[str, str] = {"memory": hardware.memory}
    if hardware.gpu_count > 0:
        if not hardware.gpu_resource:
            raise ConfigError(f"hardware {hardware.name!r} has gpu_count but no gpu_resource",
                              where=f"hardware.yaml: {hardware.name}.gpu_resource",
                              fix="set gpu_resource: nvidia.com/gpu or amd.com/gpu")
        requests[hardware.gpu_resource] = str(hardware.gpu_count)
        limits[hardware.gpu_resource] = str(hardware.gpu_count)
    return {"requests": requests, "limits": limits}


def _env(cell: Cell, attempt: int, context: RenderContext) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "FLEET_RUN_ID", "value": context.run_id},
        {"name": "FLEET_CELL_ID", "value": cell.id},
        {"name": "FLEET_ATTEMPT", "value": str(attempt)},
        {"name": "FLEET_VLLM_CACHE_ROOT", "value": f"{CACHE_ROOT}/vllm"},
        {"name": "HF_HOME", "value": f"{CACHE_ROOT}/models"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
        {"name": "HOME", "value": "/tmp"},
        # The node, not the pod, is the host a result's provenance names (fleet.suite.provenance).
        {"name": NODE_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    if context.hf_offline:
        env += [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "TRANSFORMERS_OFFLINE", "value": "1"}]
    if context.hf_token_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": context.hf_token_secret, "key": context.hf_token_key, "optional": True}}})
    if context.shards > 1:
        env.append({"name": "FLEET_SHARDS", "value": str(context.shards)})
    return env


def _cache_volume(name: str, claim: str | None) -> dict[str, Any]:
    if claim:
        return {"name": name, "persistentVolumeClaim": {"claimName": claim}}
    return {"name": name, "emptyDir": {}}


def reads_dataset_volume(cell: Cell) -> bool:
    """Whether the cell's prompts are a file on the dataset volume (not bundled, not in the image)."""
    return cell.workload.prompts.startswith(DATASET_ROOT.rstrip("/") + "/")


def _dataset_volume(cell: Cell, context: RenderContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not reads_dataset_volume(cell):
        return [], []
    if not context.dataset_pvc:
        raise ConfigError(
            f"cell {cell.id} reads {cell.workload.prompts}, but the Job mounts no dataset volume",
            where="workload.prompts",
            cause=f"prompts under {DATASET_ROOT} come from the dataset PVC, and none is set",
            fix="deploy k8s/ (PVC fleet-datasets) and fill it as docs/operating.md says, "
                "or point workload.prompts at a file the image carries")
    claim = {"claimName": context.dataset_pvc, "readOnly": True}
    volume = {"name": "datasets", "persistentVolumeClaim": claim}
    return [volume], [{"name": "datasets", "mountPath": DATASET_ROOT, "readOnly": True}]


def _volumes(cell: Cell, context: RenderContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "cell", "downwardAPI": {"items": [{
            "path": "cell.json",
            "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_CELL_JSON}']"}}]}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cell.hardware.shm_size}},
        {"name": "results", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        _cache_volume("model-cache", context.model_cache_pvc),
        _cache_volume("compile-cache", context.compile_cache_pvc),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "cell", "mountPath": "/etc/fleet/cell", "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "results", "mountPath": "/var/run/fleet"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "model-cache", "mountPath": f"{CACHE_ROOT}/models"},
        # The engine keys the compile cache by vLLM version and hardware under this root
        # (fleet.suite.engines.vllm_config.cache_root): one PVC serves every version and pool.
        {"name": "compile-cache", "mountPath": f"{CACHE_ROOT}/vllm"},
    ]
    dataset_volumes, dataset_mounts = _dataset_volume(cell, context)
    return volumes + dataset_volumes, mounts + dataset_mounts


def _pod_failure_policy(context: RenderContext) -> dict[str, Any]:
    fail = "FailIndex" if context.shards > 1 else "FailJob"
    return {"rules": [
        # Preemption, eviction by the API, node drains: not the cell's fault, and Kubernetes
        # replaces the pod without spending the Job's backoff.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        # The suite rejected its input: the same pod would fail the same way. `onPodConditions` is
        # spelled out empty: Kubernetes 1.26-1.28 declare it required (optional only from 1.29).
        {"action": fail, "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                         "values": [CONFIG_EXIT_CODE]}, "onPodConditions": []},
    ]}


def render_job(cell: Cell, attempt: int, context: RenderContext,
               avoid_nodes: Sequence[str] = ()) -> dict[str, Any]:
    """The Job that runs attempt `attempt` of `cell` in this run, preferably on none of `avoid_nodes`."""
    name = job_name(context.run_id, cell.id, attempt)
    labels = {
        LABEL_RUN: label_value(context.run_id),
        LABEL_CELL: label_value(cell.id),
        LABEL_TIER: label_value(cell.tier),
        LABEL_HARDWARE: label_value(cell.hardware.name),
        LABEL_ATTEMPT: str(attempt),
    }
    queue, priority = queue_for(cell, context)
    job_labels = dict(labels)
    if queue:
        job_labels[KUEUE_QUEUE_LABEL] = queue
    if priority:
        job_labels[KUEUE_PRIORITY_LABEL] = priority
    annotations = {ANNOTATION_CELL_ID: cell.id}
    volumes, mounts = _volumes(cell, context)
    hardware = cell.hardware
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True, "runAsUser": context.run_as_user, "runAsGroup": context.run_as_user,
        "fsGroup": context.run_as_user, "seccompProfile": {"type": "RuntimeDefault"},
    }
    if hardware.vendor == "amd" and context.amd_supplemental_groups:
        pod_security["supplementalGroups"] = list(context.amd_supplemental_groups)
    container = {
        "name": CONTAINER,
        "image": image_for(cell, context),
        "imagePullPolicy": context.image_pull_policy,
        "command": ["python3", "-m", "fleet.backends.kube.pod"],
        "args": ["--cell", CELL_PATH, "--out", RESULT_PATH,
                 "--reference-cache", f"{CACHE_ROOT}/vllm/reference"],
        "env": _env(cell, attempt, context),
        "resources": _resources(cell),
        "volumeMounts": mounts,
        # A read-only root: the suite and the engine write only to the volumes above (results, /tmp as
        # HOME, the model and compile caches, /dev/shm).
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": context.service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if hardware.node_labels:
        pod_spec["nodeSelector"] = dict(hardware.node_labels)
    if hardware.tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in hardware.tolerations]
    if avoid_nodes:
        pod_spec["affinity"] = _away_from(avoid_nodes)
    spec: dict[str, Any] = {
        "activeDeadlineSeconds": cell.timeout_s + context.deadline_slack_s,
        "ttlSecondsAfterFinished": context.ttl_after_finished_s,
        "podFailurePolicy": _pod_failure_policy(context),
        "template": {
            "metadata": {"labels": labels,
                         "annotations": {**annotations, ANNOTATION_CELL_JSON: cell.model_dump_json()}},
            "spec": pod_spec,
        },
    }
    if context.shards > 1:
        spec.update(completionMode="Indexed", completions=context.shards, parallelism=context.shards,
                    backoffLimitPerIndex=0, maxFailedIndexes=0)
    else:
        # Retrying is the controller's decision, by failure reason and budget (fleet.plan.retry).
        spec["backoffLimit"] = 0
    if queue:
        spec["suspend"] = True  # Kueue admits (unsuspends) the Job when its pool has quota
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": context.namespace, "labels": job_labels,
                     "annotations": annotations},
        "spec": spec,
    }


def _away_from(nodes: Sequence[str]) -> dict[str, Any]:
    """A preference, not a requirement, for any node but `nodes`: on the H200 one host ran the same
    vLLM's GPU-bound cell slower, above all in the tail, than two others (docs/judging.md#host-shift), so
    reruns that stay on one host repeat its level instead of sampling the pool's, and the judge's
    best-run test takes them as independent engine starts. A pool of one node, or one whose other
    nodes are busy, still runs the rerun where it can. Node names match by field (metadata.name), one
    value per requirement as the API requires; the requirements of one term must all hold."""
    term = [{"key": "metadata.name", "operator": "NotIn", "values": [node]} for node in sorted(set(nodes))]
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": AVOID_WEIGHT, "preference": {"matchFields": term}}]}}


def render_run(cells: list[Cell], context: RenderContext, attempt: int = 1) -> list[dict[str, Any]]:
    return [render_job(cell, attempt, context) for cell in cells]


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream, as `kubectl apply -f -` reads it."""
    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False, width=110)
