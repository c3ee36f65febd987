"""The docker backend runs each attempt as a container of fleet's image under its Job's security settings and
gathers the result from the mounted results directory, as a pod's results volume.

Most tests fake the Docker engine at its port (the docker SDK, tests/docker_fake.py): a container's
scripted behaviour writes into the host side of its mounts. The last ones run a real engine and fleet's cpu
image; they are skipped, saying why, where neither is there (.ci/run starts one, builds the image and sets
FLEET_REQUIRE_DOCKER=1, which turns those skips into failures).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.docker import (
    CPU_IMAGE,
    ENGINE_TIMEOUT_S,
    DockerBackend,
    DockerSettings,
    HostGpus,
    Mounts,
    container_spec,
    detect_gpus,
    gpu_options,
    quantity_bytes,
)
from fleet.errors import ConfigError, InfrastructureError
from fleet.model import Cell, Hardware, RunResult, Workload
from fleet.plan.render import CELL_PATH, RESULT_PATH, RenderContext, render_job
from tests.builders import make_cell, ok_result
from tests.docker_engine import real_engine_with
from tests.docker_fake import Exit, FakeDocker, fake_docker

RESULTS_DIR = str(Path(RESULT_PATH).parent)


def cpu_cell(timeout_s: int = 600) -> Cell:
    cell = make_cell()
    hardware = Hardware(name="cpu", vendor="cpu", gpu_count=0, cpu="2", memory="8Gi", shm_size="1Gi")
    return cell.model_copy(update={"hardware": hardware, "timeout_s": timeout_s})


def spec_of(cell: Cell, gpu: dict[str, Any] | None = None) -> dict[str, Any]:
    mounts = Mounts(cell_json=Path("/h/cell.json"), results=Path("/h/attempt-1"), cache=Path("/h/cache"))
    return container_spec(Attempt(cell, 1, "run-1"), "img:1", mounts, user="1000:1000", network="none",
                          gpu=gpu or {})


def test_a_container_gets_the_jobs_security_settings_and_its_paths() -> None:
    cell = cpu_cell()
    spec = spec_of(cell)
    job = render_job(cell, 1, RenderContext(run_id="run-1"))
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["securityContext"]["capabilities"]["drop"] == spec["cap_drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "no-new-privileges" in spec["security_opt"] and spec["privileged"] is False
    assert spec["user"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert spec["read_only"] is True and "/tmp" in spec["tmpfs"]
    assert spec["shm_size"] == 2**30 and spec["mem_limit"] == 8 * 2**30
    # The pod's paths: the cell read-only where the Job mounts it, the result where its command writes it.
    assert container["args"][:4] == ["--cell", CELL_PATH, "--out", RESULT_PATH] == spec["command"][5:9]
    binds = {bind["bind"]: bind["mode"] for bind in spec["volumes"].values()}
    assert binds[CELL_PATH] == "ro" and binds[RESULTS_DIR] == "rw"
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {RESULTS_DIR, "/dev/shm", "/tmp"}
    assert spec["network_mode"] == "none" and "device_requests" not in spec and "devices" not in spec


def test_a_container_gets_the_environment_a_jobs_container_gets() -> None:
    cell = cpu_cell()
    job = render_job(cell, 1, RenderContext(run_id="run-1"))
    job_env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    env = spec_of(cell)["environment"]
    for variable in job_env:
        if variable["name"] == "HF_TOKEN":  # a cluster secret; the local tier's hub is offline
            continue
        assert variable["name"] in env, variable["name"]
        if "value" in variable:
            assert env[variable["name"]] == variable["value"], variable["name"]
    assert env["FLEET_NODE_NAME"] and env["HF_HUB_OFFLINE"] == "1"


def test_gpu_pools_get_their_gpus_where_the_host_has_them_and_are_refused_where_not() -> None:
    nvidia = Hardware(name="h100", vendor="nvidia", gpu_count=2, gpu_resource="nvidia.com/gpu")
    amd = Hardware(name="mi300", vendor="amd", gpu_count=1, gpu_resource="amd.com/gpu")
    assert gpu_options(nvidia, HostGpus(nvidia=True), ()) == {
        "device_requests": [{"count": 2, "capabilities": [["gpu"]]}]}
    assert gpu_options(amd, HostGpus(amd=True), (44,)) == {
        "devices": ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"], "group_add": ["44"]}
    assert gpu_options(cpu_cell().hardware, HostGpus(), ()) == {}
    for pool, host in ((nvidia, HostGpus(amd=True)), (amd, HostGpus(nvidia=True))):
        with pytest.raises(ConfigError, match="has none"):
            gpu_options(pool, host, ())


def test_gpus_are_detected_by_the_engines_runtime_or_the_drivers_device() -> None:
    assert detect_gpus({"runc": {}}, lambda path: False) == HostGpus()
    assert detect_gpus({"nvidia": {}}, lambda path: False) == HostGpus(nvidia=True)
    assert detect_gpus({}, lambda path: path == "/dev/nvidiactl") == HostGpus(nvidia=True)
    assert detect_gpus({}, lambda path: path == "/dev/kfd") == HostGpus(amd=True)


def test_memory_quantities_are_read_as_kubernetes_writes_them() -> None:
    assert quantity_bytes("16Gi", "x") == 16 * 2**30
    assert quantity_bytes("512M", "x") == 512 * 10**6
    assert quantity_bytes("1.5Gi", "x") == 3 * 2**29
    with pytest.raises(ConfigError, match="quantity"):
        quantity_bytes("lots", "hardware cpu.memory")


def write_result(spec: dict[str, Any], cell: Cell, fake: FakeDocker) -> None:
    results = fake.host_path(spec, RESULTS_DIR)
    (results / Path(RESULT_PATH).name).write_text(ok_result(cell).model_dump_json())


def run_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: Any,
            cell: Cell | None = None) -> tuple[AttemptOutcome, FakeDocker]:
    cell = cell or cpu_cell()
    fake = fake_docker(monkeypatch, behaviour=lambda spec, killed: behaviour(spec, killed, fake),
                       images={CPU_IMAGE})
    backend = DockerBackend(tmp_path)
    backend.submit([Attempt(cell, 1, "run-1")])
    [outcome] = list(backend.outcomes())
    return outcome, fake


def test_the_result_written_on_the_mounted_results_directory_is_gathered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def behaviour(spec: dict[str, Any], killed: threading.Event, fake: FakeDocker) -> Exit:
        cell = Cell.model_validate_json(fake.host_path(spec, CELL_PATH).read_text())
        assert spec["environment"]["FLEET_CELL_ID"] == cell.id
        write_result(spec, cell, fake)
        return Exit(0, b"prefill done\nmeasured 20 prompts\n")

    outcome, fake = run_one(tmp_path, monkeypatch, behaviour)
    assert outcome.failure is None and outcome.exit_code == 0
    assert isinstance(outcome.result, RunResult) and outcome.result.metrics == {"acceptance_length": 2.0}
    cell_dir = tmp_path / "cells" / outcome.cell_id
    assert outcome.result_path == cell_dir / "result.attempt-1.json"
    assert (cell_dir / "attempt-1.log").read_text().endswith("measured 20 prompts\n")
    assert not (cell_dir / "attempt-1").exists()  # the results directory is emptied and removed
    [spec] = fake.containers
    assert fake.calls[-1] == ("remove", spec["name"])
    assert spec["image"] == CPU_IMAGE


def test_exit_2_without_a_result_is_a_config_failure_with_the_last_log_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, _ = run_one(tmp_path, monkeypatch,
                         lambda spec, killed, fake: Exit(2, b"config error: no model\n"))
    assert outcome.failure is not None and outcome.failure.category == "config"
    assert outcome.failure.message == "config error: no model"


def test_a_container_killed_for_memory_is_oomkilled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, _ = run_one(tmp_path, monkeypatch, lambda spec, killed, fake: Exit(137, b"", oom=True))
    assert outcome.failure is not None and outcome.failure.reason == "OOMKilled"
    assert "8Gi" in outcome.failure.message


def test_a_cell_past_its_timeout_is_killed_as_deadline_exceeded(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(spec: dict[str, Any], killed: threading.Event, fake: FakeDocker) -> Exit:
        assert killed.wait(30)
        return Exit(137)

    outcome, fake = run_one(tmp_path, monkeypatch, hang, cpu_cell(timeout_s=1))
    assert outcome.failure is not None and outcome.failure.reason == "DeadlineExceeded"
    assert any(call[0] == "kill" for call in fake.calls)


def test_a_container_left_by_an_earlier_controller_is_replaced(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cell = cpu_cell()
    fake = fake_docker(monkeypatch, behaviour=lambda spec, killed: Exit(0), images={CPU_IMAGE})
    backend = DockerBackend(tmp_path)
    name = spec_of(cell)["name"]
    fake.leftovers.add(name)
    backend.submit([Attempt(cell, 1, "run-1")])
    list(backend.outcomes())
    assert fake.calls[:2] == [("remove", name), ("create", name)]


def test_cancel_asks_every_running_container_to_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()

    def hang(spec: dict[str, Any], killed: threading.Event) -> Exit:
        started.set()
        assert killed.wait(30)
        return Exit(143)

    fake = fake_docker(monkeypatch, behaviour=hang, images={CPU_IMAGE})
    backend = DockerBackend(tmp_path)
    backend.submit([Attempt(cpu_cell(), 1, "run-1")])
    assert started.wait(30)
    backend.cancel()
    [outcome] = list(backend.outcomes())
    assert outcome.failure is not None and outcome.failure.category == "infrastructure"
    assert ("kill", f"{fake.containers[0]['name']}:SIGTERM") in fake.calls


def test_an_image_the_engine_lacks_is_refused_before_any_container(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_docker(monkeypatch, behaviour=lambda spec, killed: Exit(0))
    with pytest.raises(ConfigError, match="not on this Docker engine") as raised:
        DockerBackend(tmp_path).submit([Attempt(cpu_cell(), 1, "run-1")])
    assert "scripts/cpu_image.sh" in raised.value.line() and fake.containers == []


def test_a_gpu_cell_on_a_host_without_gpus_is_refused_before_any_container(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = Hardware(name="h100", vendor="nvidia", gpu_count=1, gpu_resource="nvidia.com/gpu",
                   image="fleet-cuda:t")
    fake = fake_docker(monkeypatch, behaviour=lambda spec, killed: Exit(0), images={"fleet-cuda:t"})
    with pytest.raises(ConfigError, match="has none"):
        DockerBackend(tmp_path).submit([Attempt(cpu_cell().model_copy(update={"hardware": gpu}), 1, "run-1")])
    assert fake.containers == []


def test_a_gpu_cell_gets_its_gpus_on_a_host_with_the_nvidia_runtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = Hardware(name="h100", vendor="nvidia", gpu_count=1, gpu_resource="nvidia.com/gpu",
                   image="fleet-cuda:t")
    fake = fake_docker(monkeypatch, behaviour=lambda spec, killed: Exit(0), images={"fleet-cuda:t"},
                       runtimes={"runc": {}, "nvidia": {}})
    backend = DockerBackend(tmp_path)
    backend.submit([Attempt(cpu_cell().model_copy(update={"hardware": gpu}), 1, "run-1")])
    list(backend.outcomes())
    [spec] = fake.containers
    assert spec["image"] == "fleet-cuda:t"
    assert spec["device_requests"] == [{"count": 1, "capabilities": [["gpu"]]}]


def test_an_unreachable_engine_is_an_infrastructure_error_that_says_to_start_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(monkeypatch, unreachable=True)
    with pytest.raises(InfrastructureError, match="cannot reach") as raised:
        DockerBackend(tmp_path)
    assert "dockerd" in raised.value.line()


# --- a real engine -----------------------------------------------------------------------------------------

def real_engine() -> Any:
    """A client of a running engine that has fleet's cpu image."""
    return real_engine_with(CPU_IMAGE, made_by="scripts/cpu_image.sh", timeout=ENGINE_TIMEOUT_S)


PROBE = r"""
import json, os
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
def writable(path):
    try:
        open(os.path.join(path, "probe"), "w").close()
        return True
    except OSError:
        return False
mounts = {line.split()[1]: line.split() for line in open("/proc/self/mounts")}
print(json.dumps({"uid": os.getuid(), "cap_eff": status["CapEff"].strip(),
                  "no_new_privs": status["NoNewPrivs"].strip(),
                  "root": writable("/"), "tmp": writable("/tmp"), "shm": writable("/dev/shm"),
                  "results": writable("/var/run/fleet"), "shm_type": mounts["/dev/shm"][2],
                  "cell": json.load(open("/etc/fleet/cell/cell.json"))["variant"]["name"]}))
"""


def test_a_real_container_runs_non_root_without_capabilities_on_a_read_only_root(tmp_path: Path) -> None:
    engine = real_engine()
    cell = cpu_cell()
    (tmp_path / "cell.json").write_text(cell.model_dump_json())
    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "cache").mkdir()
    if os.geteuid() == 0:
        os.chown(results, 1000, 1000)
    user = "1000:1000" if os.geteuid() == 0 else f"{os.geteuid()}:{os.getegid()}"
    spec = container_spec(Attempt(cell, 1, "probe"), CPU_IMAGE,
                          Mounts(cell_json=tmp_path / "cell.json", results=results, cache=tmp_path / "cache"),
                          user=user, network="none", gpu={})
    spec.update(command=["python3", "-c", PROBE], name=f"fleet-probe-{os.getpid()}")
    container = engine.containers.create(**spec)
    try:
        container.start()
        assert container.wait()["StatusCode"] == 0, container.logs().decode()
        seen = json.loads(container.logs().decode().strip().splitlines()[-1])
    finally:
        container.remove(force=True)
        engine.close()
    assert seen["uid"] != 0 and int(seen["cap_eff"], 16) == 0 and seen["no_new_privs"] == "1"
    assert seen["root"] is False and seen["tmp"] and seen["shm"] and seen["results"]
    assert seen["shm_type"] == "tmpfs" and seen["cell"] == cell.variant.name


def test_a_real_container_runs_a_cell_and_its_result_is_gathered(tmp_path: Path) -> None:
    real_engine().close()
    cell = cpu_cell().model_copy(update={"workload": Workload(num_prompts=2, max_tokens=8, warmup_prompts=0)})
    backend = DockerBackend(tmp_path, DockerSettings())
    backend.submit([Attempt(cell, 1, "real-engine")])
    [outcome] = list(backend.outcomes())
    backend.close()
    log = (tmp_path / "cells" / cell.id / "attempt-1.log").read_text()
    assert outcome.failure is None, f"{outcome.failure}\n{log}"
    assert outcome.result is not None and outcome.result.status == "ok"
    assert outcome.result.metrics["acceptance_length"] >= 1.0
