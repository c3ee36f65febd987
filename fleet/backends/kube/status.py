"""Pure helpers of the kube backend: raw API objects -> facts, watch lines -> events, logs -> results.

They take and return plain values (the JSON the API server sends), so they are tested without a server
and reused by the pod-side entry point (the result framing), which must not import `kubernetes`.

Results travel in the pod's log, framed so that they can be found after any amount of engine output
and checked for truncation:

    FLEET-RESULT-BEGIN v1 sha256=<hex of the JSON> bytes=<length of the JSON>
    <base64 of gzip(JSON)>, wrapped at 4096 characters
    FLEET-RESULT-END
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.plan.retry import JobFacts, PodFacts

BEGIN = "FLEET-RESULT-BEGIN"
END = "FLEET-RESULT-END"
_BEGIN_LINE = re.compile(rf"^{BEGIN} v1 sha256=([0-9a-f]{{64}}) bytes=(\d+)\s*$")
_WRAP = 4096


# --- results in logs ---------------------------------------------------------------------------------

def encode_result(document: bytes) -> str:
    """The framed block the pod prints after the suite has written its result."""
    packed = base64.b64encode(gzip.compress(document, mtime=0)).decode("ascii")
    lines = [packed[i:i + _WRAP] for i in range(0, len(packed), _WRAP)] or [""]
    digest = hashlib.sha256(document).hexdigest()
    return "\n".join([f"{BEGIN} v1 sha256={digest} bytes={len(document)}", *lines, END]) + "\n"


def extract_result(log: str) -> tuple[bytes | None, str | None]:
    """The last complete framed result in `log`, or None and why not (None, None: no frame at all)."""
    lines = log.splitlines()
    begins = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    if not begins:
        return None, None
    start = begins[-1]
    match = _BEGIN_LINE.match(lines[start])
    if match is None:
        return None, f"malformed result header: {lines[start][:120]!r}"
    try:
        end = lines.index(END, start + 1)
    except ValueError:
        return None, "the result block has no end marker (log truncated or the pod was killed mid-print)"
    try:
        document = gzip.decompress(base64.b64decode("".join(lines[start + 1:end]), validate=True))
    except (ValueError, OSError, EOFError) as err:
        return None, f"the result block does not decode: {err}"
    if len(document) != int(match.group(2)) or hashlib.sha256(document).hexdigest() != match.group(1):
        return None, "the result block fails its checksum"
    return document, None


def log_tail(log: str, lines: int = 40) -> str:
    """The last lines of a log, the framed result block left out (it is the result, not a clue)."""
    kept: list[str] = []
    inside = False
    for line in log.splitlines():
        if line.startswith(BEGIN):
            inside = True
        elif line == END:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept[-lines:])


# --- Jobs and pods -----------------------------------------------------------------------------------

def _conditions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def job_facts(job: Mapping[str, Any]) -> JobFacts:
    name = str(job["metadata"]["name"])
    for condition in _conditions(job):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobFacts(name=name, succeeded=True)
        if condition.get("type") == "Failed":
            return JobFacts(name=name, failed=True, reason=condition.get("reason"),
                            message=condition.get("message"))
    return JobFacts(name=name)


def slim_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """What the backend keeps of a Job: names, labels, suspension and status (not the pod template)."""
    meta = job.get("metadata") or {}
    return {"metadata": {key: meta[key] for key in ("name", "labels", "annotations", "resourceVersion")
                         if key in meta},
            "spec": {"suspend": (job.get("spec") or {}).get("suspend")},
            "status": job.get("status") or {}}


def is_finished(job: Mapping[str, Any]) -> bool:
    facts = job_facts(job)
    return facts.succeeded or facts.failed


def is_suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def is_started(job: Mapping[str, Any]) -> bool:
    """Some pod of the Job is (or was) running: the engine has the GPU, so no pending check is due."""
    status = job.get("status") or {}
    return bool(status.get("ready") or status.get("succeeded") or status.get("failed"))


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    facts: dict[str, Any] = {"name": str(meta.get("name", "")), "phase": status.get("phase") or "Pending",
                             "reason": status.get("reason"), "message": status.get("message"),
                             "created": str(meta.get("creationTimestamp") or "")}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            facts["disruption_reason"] = condition.get("reason") or "DisruptionTarget"
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            facts["unschedulable"] = condition.get("message") or "Unschedulable"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
        if terminated:
            facts["exit_code"] = terminated.get("exitCode")
            facts["terminated_reason"] = terminated.get("reason")
        waiting = state.get("waiting")
        if waiting:
            facts["waiting_reason"] = waiting.get("reason")
            facts["waiting_message"] = waiting.get("message")
    return PodFacts(**facts)


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def resource_version(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value else None


# --- watch streams -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WatchEvent:
    type: str                       # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: dict[str, Any]

    @property
    def gone(self) -> bool:
        """The server compacted past our resourceVersion: the only way on is a fresh LIST."""
        return self.type == "ERROR" and self.object.get("code") == 410


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Reassemble newline-delimited JSON from arbitrary chunks of a streamed response."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())
    if buffer.strip():
        yield buffer


def parse_watch_line(line: bytes) -> WatchEvent:
    raw = json.loads(line)
    return WatchEvent(type=str(raw.get("type", "")), object=dict(raw.get("object") or {}))
