"""A smoke-tier Job's container command, run as its container would run it, gets past its arguments and
its dataset, against a stand-in model.

The rendered Job is the input: its command, args and env (downward-API values filled in as the kubelet
would), its volumes laid out under one folder (the downward-API cell file and the dataset PVC read-only,
the emptyDirs writable, owned by the pod's fsGroup), and its security settings as far as this machine
allows: the pod's uid and gid with no supplementary groups, no new privileges and an empty capability
bounding set (setpriv, when the test runs as root), in a read-only working folder (the image's WORKDIR
under a read-only root). Paths are the only thing changed: each mountPath maps to its folder, in the
args, the env and the cell's dataset path. The model is the bundled tiny-stdlib pair in place of
Llama-3.1-8B; the dataset volume holds a stand-in sharegpt.jsonl (no ShareGPT download exists here).
Without vLLM the suite then stops at the engine, and says so: that, not an argument or dataset error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.backends.kube.status import extract_result
from fleet.model import Cell, RunResult
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.render import (
    ANNOTATION_CELL_JSON,
    DATASET_ROOT,
    RESULT_PATH,
    RenderContext,
    render_job,
)

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
TINY_PROMPTS = ROOT / "fleet" / "assets" / "tiny-stdlib" / "prompts.json"
PATH = "/usr/local/bin:/usr/bin:/bin"
STAND_IN = {"model": "bundled:tiny-stdlib/target", "draft_model": "bundled:tiny-stdlib/draft"}


def smoke_job() -> dict[str, Any]:
    [cell] = expand(load_tier(JOBS, "smoke"), load_catalog(JOBS), tier_path="smoke.yaml")
    return render_job(cell, 1, RenderContext(run_id="smoke-20261207-000000-ab12"))


class Pod:
    """The Job's pod laid out under `root`: each volume a folder at root + its mountPath."""

    def __init__(self, job: dict[str, Any], root: Path) -> None:
        self.root = root
        self.template = job["spec"]["template"]
        self.spec = self.template["spec"]
        [self.container] = self.spec["containers"]
        security = self.spec["securityContext"]
        self.uid, self.gid, self.fs_group = security["runAsUser"], security["runAsGroup"], security["fsGroup"]
        self.mounts = sorted(self.container["volumeMounts"], key=lambda m: -len(m["mountPath"]))

    def host(self, path: str) -> str:
        """Where a path of the container is here: under its volume's folder (a mountPath prefix)."""
        for mount in self.mounts:
            prefix = mount["mountPath"]
            if path == prefix or path.startswith(prefix + "/"):
                return str(self.root) + path
        return path

    def folder(self, mount_path: str) -> Path:
        return self.root / mount_path.lstrip("/")

    def lay_out(self, cell_json: str, dataset_lines: list[str] | None) -> Path:
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        for mount in self.container["volumeMounts"]:
            folder = self.folder(mount["mountPath"])
            folder.mkdir(parents=True)
            volume = volumes[mount["name"]]
            if "downwardAPI" in volume:
                [item] = volume["downwardAPI"]["items"]
                assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{ANNOTATION_CELL_JSON}']"
                (folder / item["path"]).write_text(cell_json, encoding="utf-8")
            elif "persistentVolumeClaim" in volume and dataset_lines is not None:
                (folder / "sharegpt.jsonl").write_text("".join(dataset_lines), encoding="utf-8")
            self._own(folder, writable="emptyDir" in volume and not mount.get("readOnly", False))
        workdir = self.root / "opt" / "fleet"
        workdir.mkdir(parents=True)
        self._own(workdir, writable=False)
        # Every folder above the volumes must be traversable by the pod's uid.
        for parent in [self.root, *{p for f in self.root.rglob("*") if f.is_dir() for p in f.parents}]:
            if parent.is_relative_to(self.root):
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
        return workdir

    def _own(self, folder: Path, *, writable: bool) -> None:
        for path in [folder, *folder.rglob("*")]:
            if os.geteuid() == 0:
                os.chown(path, 0 if not writable else self.uid, self.fs_group)
            if path.is_dir():
                path.chmod(0o2775 if writable else 0o555)
            else:
                path.chmod(0o444)

    def python(self) -> str | None:
        """A python3 on the container's PATH that the pod's uid can run, of this test's version: the
        venv's interpreter may live under a home the pod's uid cannot enter (/root)."""
        found = shutil.which("python3", path=PATH)
        if found is None:
            return None
        probe = [found, "-c", "import sys; print(sys.version_info[:2])"]
        version = subprocess.run(probe, capture_output=True, text=True, check=False).stdout.strip()
        return found if version == str(sys.version_info[:2]) else None

    def drops_to_the_pods_uid(self) -> bool:
        return os.geteuid() == 0 and shutil.which("setpriv") is not None and self.python() is not None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {"PATH": PATH}
        # fleet and its dependencies from this checkout and its environment, as the image has them installed.
        installed = sysconfig.get_paths()
        paths = [str(ROOT), *dict.fromkeys([installed["purelib"], installed["platlib"]])]
        if "PYTHONPATH" in os.environ:
            paths.insert(0, os.environ["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        for var in self.container["env"]:
            if "value" in var:
                env[var["name"]] = self.host(var["value"])
            elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                env[var["name"]] = "stand-in-node"
            else:  # the HF token: an optional secret that does not exist here
                assert var["valueFrom"]["secretKeyRef"]["optional"] is True
        return env

    def argv(self) -> list[str]:
        command = self.container["command"]
        assert command[0] == "python3"
        python = self.python() if self.drops_to_the_pods_uid() else sys.executable
        assert python is not None
        return [python, *command[1:], *[self.host(arg) for arg in self.container["args"]]]

    def as_the_pod(self, argv: list[str]) -> list[str]:
        """argv under the container's security settings, where this machine can impose them."""
        security = self.container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
        setpriv = shutil.which("setpriv")
        if not self.drops_to_the_pods_uid() or setpriv is None:
            return argv  # not root (the uid cannot change and holds no capabilities), or no way to drop
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", f"--groups={self.fs_group}",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", *argv]


def stand_in_cell(job: dict[str, Any], pod: Pod) -> str:
    cell = Cell.model_validate_json(job["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CELL_JSON])
    assert cell.workload.prompts.startswith(DATASET_ROOT + "/")
    workload = cell.workload.model_copy(update={"prompts": pod.host(cell.workload.prompts)})
    return cell.model_copy(update={**STAND_IN, "workload": workload}).model_dump_json()


def stand_in_dataset(count: int) -> list[str]:
    """`count` prompts in the tiers' JSONL shape, from the bundled tiny-stdlib prompts."""
    prompts: list[str] = json.loads(TINY_PROMPTS.read_text(encoding="utf-8"))
    lines = [prompts[i % len(prompts)] + ("" if i < len(prompts) else f"  # {i}") for i in range(count)]
    return [json.dumps({"prompt": line}) + "\n" for line in lines]


@pytest.fixture
def pod_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parent is private to the user running the tests, and the pod's
    # uid must reach the volumes.
    folder = Path(tempfile.mkdtemp(prefix="fleet-pod-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_the_container(pod: Pod, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pod.as_the_pod(pod.argv()), cwd=workdir, env=pod.env(), capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_smoke_job_command_gets_past_its_arguments_and_dataset_to_the_engine(pod_root: Path) -> None:
    job = smoke_job()
    pod = Pod(job, pod_root)
    workload = Cell.model_validate_json(
        job["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CELL_JSON]).workload
    dataset = stand_in_dataset(workload.num_prompts + workload.warmup_prompts)
    workdir = pod.lay_out(stand_in_cell(job, pod), dataset)
    done = run_the_container(pod, workdir)
    # The result the suite wrote to the results emptyDir, and the copy the pod printed for the controller.
    document = Path(pod.host(RESULT_PATH)).read_bytes()
    printed, problem = extract_result(done.stdout)
    assert problem is None and printed == document, done.stderr
    result = RunResult.model_validate_json(document)
    assert result.cell.workload.num_prompts == 100
    if result.status == "error":
        assert result.error is not None
        # Argument errors never get this far (argparse exits 2 with no document); a dataset error is a
        # ConfigError naming the prompt file.
        assert result.error.reason != "ConfigError", result.error.message
        if importlib.util.find_spec("vllm") is None:
            assert result.error.reason == "engine_not_installed", result.error.message
            assert "vllm is not installed" in result.error.message
            assert done.returncode == 2  # fleet's category for a missing engine: configuration
        # With vLLM installed the engine itself fails next (no GPU, or the stand-in draft is no EAGLE-3
        # head): any reason but the prompt file's.
    if pod.drops_to_the_pods_uid():
        assert Path(pod.host(RESULT_PATH)).stat().st_uid == pod.uid  # written as the pod's uid, not root


def test_an_empty_dataset_volume_fails_at_once_naming_the_path_and_how_to_fill_it(pod_root: Path) -> None:
    job = smoke_job()
    pod = Pod(job, pod_root)
    workdir = pod.lay_out(stand_in_cell(job, pod), dataset_lines=None)
    done = run_the_container(pod, workdir)
    assert done.returncode == 2  # the podFailurePolicy's FailJob code: no retry of a pod that cannot work
    result = RunResult.model_validate_json(Path(pod.host(RESULT_PATH)).read_bytes())
    assert result.error is not None and result.error.reason == "ConfigError"
    assert pod.host(f"{DATASET_ROOT}/sharegpt.jsonl") in result.error.message
    assert "fleet-datasets" in result.error.message and "docs/operating.md" in result.error.message
