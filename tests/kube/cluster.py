"""The rest of a cluster, simulated over the emulator: Kueue admission, the Job controller and the kubelet.

Each Job gets a pod and then the status a real cluster would write for a scripted scenario. Successful
pods' logs carry the result document framed exactly as the container's entry point frames it
(fleet.backends.kube.status.encode_result), so the backend reads them the way it reads a real pod's log.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fleet.backends.kube.status import encode_result
from fleet.model import Cell, Provenance, ResultError, RunResult
from tests.builders import ok_result
from tests.kube.emulator import Emulator, _now

#: Scenario names: what happens to one attempt of a cell.
OK = "ok"
SUITE_ERROR = "engine_start_failed"      # the suite ran and wrote an infrastructure error document
CONFIG = "config"                        # the suite rejected the cell: exit 2
OOM = "oom"
EVICTED = "evicted"
PREEMPTED_THEN_OK = "preempted_then_ok"  # the podFailurePolicy's Ignore rule at work
PREEMPTED = "preempted"
IMAGE_PULL = "image_pull"
UNSCHEDULABLE = "unschedulable"
DEADLINE = "deadline"
XID = "xid"
HANG = "hang"                            # runs until released


def error_result(cell: Cell, reason: str, exit_code: int, category: str = "infrastructure") -> RunResult:
    error = ResultError(category="config" if category == "config" else "infrastructure", reason=reason,
                        message=f"{reason} (scripted)", exit_code=exit_code)
    return RunResult(cell=cell, status="error", error=error,
                     provenance=Provenance(fleet_version="test", engine="scripted"))


class Cluster:
    """Reacts to every new Job of the emulator; `script(cell_id, attempt)` names the scenario."""

    def __init__(self, emulator: Emulator, script: Callable[[str, int], str] | None = None,
                 result: Callable[[Cell], RunResult] = ok_result,
                 missing_images: frozenset[str] = frozenset(), nodes: Sequence[str] = ()) -> None:
        self.emu = emulator
        #: Nodes a pod is placed on, as the scheduler would: the first its Job does not prefer to avoid.
        self.nodes = list(nodes)
        self.script = script or (lambda cell_id, attempt: OK)
        self.missing_images = missing_images  # the registry has no such image: every pull backs off
        self.result = result
        self.held: list[dict[str, Any]] = []
        self._work: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()
        self.pods_created = 0
        self.released = False
        emulator.listeners.append(self._on_event)

    def __enter__(self) -> Cluster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._work.put(None)
        self._thread.join(timeout=5)

    def _on_event(self, kind: str, etype: str, obj: dict[str, Any]) -> None:
        if kind == "jobs" and etype == "ADDED":
            self._work.put(obj)

    def release(self) -> None:
        """Let every held (HANG) Job finish successfully, and every later one run through."""
        with self._lock:
            held, self.held = self.held, []
            self.released = True
        for job in held:
            self._finish(job, OK)

    def _run(self) -> None:
        while (job := self._work.get()) is not None:
            annotations = job["metadata"].get("annotations") or {}
            labels = job["metadata"]["labels"]
            scenario = self.script(annotations["fleet.cell-id"], int(labels["fleet.attempt"]))
            if job["spec"]["template"]["spec"]["containers"][0]["image"] in self.missing_images:
                scenario = IMAGE_PULL
            if scenario == HANG and self.released:
                scenario = OK
            if scenario == HANG:
                self._pod(job, phase="Running", ready=True)
                with self._lock:
                    self.held.append(job)
                continue
            self._finish(job, scenario)

    # -- building blocks ------------------------------------------------------------------------------

    def _pod(self, job: dict[str, Any], *, phase: str, ready: bool = False, suffix: str = "0",
             status: dict[str, Any] | None = None, log: str | None = None) -> str:
        meta = job["metadata"]
        template_labels = dict(job["spec"]["template"]["metadata"]["labels"])
        name = f"{meta['name']}-{suffix}abcd"
        template_labels.update({"job-name": meta["name"], "batch.kubernetes.io/job-name": meta["name"]})
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": meta["namespace"], "labels": template_labels,
                            "creationTimestamp": f"2026-01-01T00:00:0{suffix}Z"},
               "status": {"phase": phase, **(status or {})}}
        if self.nodes and phase != "Pending":
            pod["spec"] = {"nodeName": self._place(job)}
        if log is not None:
            with self.emu.cond:
                self.emu.logs[(meta["namespace"], name)] = log
        self.emu.put("pods", pod)
        self.pods_created += 1
        if ready:
            self._job_status(job, {"active": 1, "ready": 1, "startTime": _now()})
        return name

    def _place(self, job: dict[str, Any]) -> str:
        """The first node the Job's preferred node affinity does not exclude, else the first node."""
        affinity = job["spec"]["template"]["spec"].get("affinity") or {}
        avoided = {value for term in affinity.get("nodeAffinity", {}).get(
                       "preferredDuringSchedulingIgnoredDuringExecution", [])
                   for field in term["preference"].get("matchFields", []) if field["operator"] == "NotIn"
                   for value in field["values"]}
        return next((node for node in self.nodes if node not in avoided), self.nodes[0])

    def _job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        current = self.emu.get("jobs", job["metadata"]["namespace"], job["metadata"]["name"])
        if current is None:
            return
        current["status"] = {**(current.get("status") or {}), **status}
        self.emu.put("jobs", current)

    def _end_job(self, job: dict[str, Any], *, ok: bool, reason: str = "BackoffLimitExceeded") -> None:
        now = _now()
        if ok:
            status = {"succeeded": 1, "active": 0, "ready": 0, "completionTime": now, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now}]}
        else:
            status = {"failed": 1, "active": 0, "ready": 0, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": now},
                {"type": "Failed", "status": "True", "reason": reason, "message": f"{reason} (simulated)",
                 "lastTransitionTime": now}]}
        self._job_status(job, {"startTime": now, **status})

    def _cell(self, job: dict[str, Any]) -> Cell:
        return Cell.model_validate_json(job["spec"]["template"]["metadata"]["annotations"]["fleet.cell-json"])

    @staticmethod
    def _terminated(code: int, reason: str) -> dict[str, Any]:
        return {"containerStatuses": [{"name": "suite", "state": {"terminated": {"exitCode": code,
                                                                                 "reason": reason}}}]}

    def _finish(self, job: dict[str, Any], scenario: str) -> None:
        cell = self._cell(job)
        noise = "INFO engine starting\nINFO loading weights\n"
        if scenario == OK:
            document = json.dumps(self.result(cell).model_dump(mode="json")).encode()
            self._pod(job, phase="Succeeded", status=self._terminated(0, "Completed"),
                      log=noise + encode_result(document))
            self._end_job(job, ok=True)
        elif scenario in (SUITE_ERROR, XID, CONFIG):
            code = 2 if scenario == CONFIG else 3
            reason = {SUITE_ERROR: "engine_start_failed", XID: "engine_crashed", CONFIG: "ConfigError"}
            failed = error_result(cell, reason[scenario], code, "config" if scenario == CONFIG else "infra")
            extra = "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n" if scenario == XID else ""
            self._pod(job, phase="Failed", status=self._terminated(code, "Error"),
                      log=noise + extra + encode_result(failed.model_dump_json().encode()))
            why = "PodFailurePolicy" if scenario == CONFIG else "BackoffLimitExceeded"
            self._end_job(job, ok=False, reason=why)
        elif scenario == OOM:
            self._pod(job, phase="Failed", status=self._terminated(137, "OOMKilled"), log=noise)
            self._end_job(job, ok=False)
        elif scenario == EVICTED:
            evicted = {"reason": "Evicted", "message": "The node was low on resource: memory."}
            self._pod(job, phase="Failed", status={**evicted, **self._terminated(137, "Error")}, log=noise)
            self._end_job(job, ok=False)
        elif scenario in (PREEMPTED, PREEMPTED_THEN_OK):
            condition = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
            disrupted = {"conditions": [condition], **self._terminated(143, "Error")}
            self._pod(job, phase="Failed", status=disrupted, log=noise)
            if scenario == PREEMPTED:
                self._end_job(job, ok=False)
                return
            document = json.dumps(self.result(cell).model_dump(mode="json")).encode()
            self._pod(job, phase="Succeeded", suffix="1", status=self._terminated(0, "Completed"),
                      log=noise + encode_result(document))
            self._end_job(job, ok=True)
        elif scenario == IMAGE_PULL:
            waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image fleet-cuda:nope"}
            self._pod(job, phase="Pending",
                      status={"containerStatuses": [{"name": "suite", "state": {"waiting": waiting}}]})
        elif scenario == UNSCHEDULABLE:
            self._pod(job, phase="Pending", status={"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/12 nodes are available: 12 Insufficient nvidia.com/gpu."}]})
        elif scenario == DEADLINE:
            self._pod(job, phase="Failed", status=self._terminated(143, "Error"), log=noise)
            self._end_job(job, ok=False, reason="DeadlineExceeded")
        else:
            raise ValueError(f"unknown scenario {scenario}")
