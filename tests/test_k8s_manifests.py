"""k8s/: every kustomization renders with `kubectl kustomize`, every object validates, RBAC stays minimal.

Built-in objects are validated by kubernetes-validate. Kueue objects are validated against schemas written
here from Kueue's v1beta1 CRDs for the fields fleet uses (required fields, types, enums); the CRD files
themselves are not vendored. Regenerate the catalog ConfigMap after editing jobs/ with
`python tests/test_k8s_manifests.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
CONFIGMAP = K8S / "base" / "jobs-configmap.yaml"
KUSTOMIZATIONS = [K8S / "base", K8S / "overlays" / "nvidia-cloud", K8S / "overlays" / "amd-mi300-onprem"]

_QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^[0-9.]+[A-Za-z]*$"}]}
_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
KUEUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "ResourceFlavor": {"type": "object", "required": ["metadata"], "properties": {"metadata": _META, "spec": {
        "type": "object", "additionalProperties": False, "properties": {
            "nodeLabels": {"type": "object", "maxProperties": 8, "additionalProperties": {"type": "string"}},
            "nodeTaints": {"type": "array"}, "tolerations": {"type": "array"},
            "topologyName": {"type": "string"}}}}},
    "ClusterQueue": {"type": "object", "required": ["metadata", "spec"], "properties": {
        "metadata": _META, "spec": {
        "type": "object", "properties": {
            "namespaceSelector": {"type": "object"},
            "queueingStrategy": {"enum": ["StrictFIFO", "BestEffortFIFO"]},
            "preemption": {"type": "object", "properties": {
                "withinClusterQueue": {"enum": ["Never", "LowerPriority", "LowerOrNewerEqualPriority"]}}},
            "resourceGroups": {"type": "array", "maxItems": 16, "items": {
                "type": "object", "required": ["coveredResources", "flavors"], "additionalProperties": False,
                "properties": {
                    "coveredResources": {"type": "array", "maxItems": 64, "items": {"type": "string"}},
                    "flavors": {"type": "array", "minItems": 1, "maxItems": 64, "items": {
                        "type": "object", "required": ["name", "resources"], "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "resources": {
                            "type": "array", "minItems": 1, "maxItems": 64, "items": {
                                "type": "object", "required": ["name", "nominalQuota"],
                                "properties": {"name": {"type": "string"}, "nominalQuota": _QUANTITY,
                                               "borrowingLimit": _QUANTITY,
                                               "lendingLimit": _QUANTITY}}}}}}}}}}}}},
    "LocalQueue": {"type": "object", "required": ["metadata", "spec"], "properties": {
        "metadata": {**_META, "required": ["name", "namespace"]},
        "spec": {"type": "object", "required": ["clusterQueue"],
                 "properties": {"clusterQueue": {"type": "string"}}}}},
    "WorkloadPriorityClass": {"type": "object", "required": ["metadata", "value"], "properties": {
        "metadata": _META, "value": {"type": "integer"}, "description": {"type": "string"}}},
}


def jobs_configmap() -> str:
    data = {path.name: path.read_text() for path in sorted((ROOT / "jobs").glob("*.yaml"))}
    document = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fleet-jobs", "namespace": "fleet"}, "data": data}
    header = "# Generated from jobs/ by `python tests/test_k8s_manifests.py`; do not edit by hand.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=110)


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_catalog_configmap_matches_jobs() -> None:
    assert CONFIGMAP.read_text() == jobs_configmap(), "regenerate: python tests/test_k8s_manifests.py"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomization_renders_and_every_object_validates(directory: Path) -> None:
    objects = render(directory)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("kueue.x-k8s.io/"):
            jsonschema.validate(obj, KUEUE_SCHEMAS[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, "1.30", strict=True)


def test_overlays_add_a_cluster_queue_whose_flavors_exist() -> None:
    for overlay in KUSTOMIZATIONS[1:]:
        objects = render(overlay)
        flavors = {o["metadata"]["name"] for o in objects if o["kind"] == "ResourceFlavor"}
        [queue] = [o for o in objects if o["kind"] == "ClusterQueue"]
        used = {f["name"] for g in queue["spec"]["resourceGroups"] for f in g["flavors"]}
        assert used == flavors
        locals_ = {o["metadata"]["name"] for o in objects if o["kind"] == "LocalQueue"}
        assert locals_ == {"smoke", "nightly", "weekly", "bisect"}


def test_priorities_order_smoke_over_nightly_over_weekly_over_bisect() -> None:
    values = {o["metadata"]["name"]: o["value"] for o in render(K8S / "base")
              if o["kind"] == "WorkloadPriorityClass"}
    assert values["smoke"] > values["nightly"] > values["weekly"] > values["bisect"]


def test_role_grants_nothing_beyond_jobs_pods_and_pod_logs_in_one_namespace() -> None:
    objects = render(K8S / "base")
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    [role] = [o for o in objects if o["kind"] == "Role"]
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}
    assert granted == {("batch", "jobs"), ("", "pods"), ("", "pods/log")}
    verbs = {resource: set(rule["verbs"]) for rule in role["rules"] for resource in rule["resources"]}
    assert verbs["pods"] <= {"get", "list", "watch"} and verbs["pods/log"] == {"get"}
    assert "*" not in set().union(*verbs.values())


if __name__ == "__main__":
    CONFIGMAP.write_text(jobs_configmap())
    sys.stdout.write(f"wrote {CONFIGMAP.relative_to(ROOT)}\n")
