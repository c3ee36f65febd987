"""A small stateful Kubernetes API server over real HTTP: Jobs, pods, pod logs, label selectors, watches.

Why not kmock's KubernetesEmulator: kmock 0.8 keeps objects without resourceVersions, ignores label
selectors, cannot resume a watch from a resourceVersion (so there is no 410 Gone to provoke) and serves
no pods/log; fleet's backend depends on all four. This server implements exactly those semantics, plus
fault injection (429 with Retry-After, 500/503, a reply that never comes, a dropped connection, a
dropped or expired watch), behind the same seam: a URL handed to the official client's Configuration.host.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_PATH = re.compile(r"^/(?:api/v1|apis/batch/v1)/namespaces/([^/]+)/(jobs|pods)(?:/([^/]+))?(?:/(log))?$")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality (=, ==, !=), set (in, notin) and existence (key, !key) requirements, comma-separated."""
    for requirement in re.findall(r"[^,(]+(?:\([^)]*\))?", selector or ""):
        requirement = requirement.strip()
        if not requirement:
            continue
        if match := re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", requirement):
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in requirement:
            key, value = requirement.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif requirement not in labels:
            return False
    return True


@dataclass
class Faults:
    """Which requests fail and how; `rate` of requests fail at random (seeded), `script` names exact ones."""

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = ("429", "500", "503", "timeout", "drop")
    watch_kinds: tuple[str, ...] = ("drop-watch", "gone")
    script: list[str] = field(default_factory=list)   # consumed first: one fault (or "") per request
    stall_s: float = 0.3
    _rng: random.Random = field(init=False)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self, watch: bool) -> str:
        with self._lock:
            fault = ""
            if self.script:
                fault = self.script.pop(0)
            elif self.rate and self._rng.random() < self.rate:
                fault = self._rng.choice(self.watch_kinds if watch else self.kinds)
            if fault:
                self.injected[fault] += 1
            return fault


class Emulator:
    """The cluster's state; the HTTP server and the test's simulated kubelet both change it."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []   # rv, kind, type, object
        self.versions: list[int] = []
        self.compacted_below = 0
        self.version = 0
        self.cond = threading.Condition()
        self.requests: Counter[str] = Counter()
        self.created: Counter[str] = Counter()       # Job name -> successful creates
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []
        self.closed = False

    # -- state ---------------------------------------------------------------------------------------

    def _commit(self, kind: str, etype: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            key = (kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
            if etype == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            snapshot = copy.deepcopy(obj)
            self.events.append((self.version, kind, etype, snapshot))
            self.versions.append(self.version)
            self.cond.notify_all()
        for listener in list(self.listeners):
            listener(kind, etype, snapshot)
        return snapshot

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        key = (kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        etype = "MODIFIED" if key in self.objects else "ADDED"
        obj.setdefault("metadata", {}).setdefault("creationTimestamp", _now())
        return self._commit(kind, etype, copy.deepcopy(obj))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.get(kind, namespace, name)
        if obj is None:
            return None
        if kind == "jobs":
            for pod in self.list("pods", namespace, f"job-name={name}"):
                self._commit("pods", "DELETED", pod)
        return self._commit(kind, "DELETED", obj)

    def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        with self.cond:
            return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                    if k == kind and ns == namespace
                    and selector_matches(selector, o["metadata"].get("labels") or {})]

    def compact(self) -> None:
        """Forget every event so far, as etcd's compaction does: older resourceVersions get 410."""
        with self.cond:
            self.compacted_below = self.version + 1
            self.events.clear()
            self.versions.clear()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # -- counting -------------------------------------------------------------------------------------

    def count(self, key: str) -> None:
        with self.cond:
            self.requests[key] += 1


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                           "reason": reason, "message": message}, headers)

    def _fault(self, fault: str) -> bool:
        """Answer with the fault before doing anything; True if the request is answered."""
        if fault == "429":
            self._status(429, "TooManyRequests", "slow down", {"Retry-After": "1"})
        elif fault in ("500", "503"):
            self._status(int(fault), "InternalError", "injected")
        elif fault == "drop":
            self.close_connection = True
            self.connection.close()
        else:
            return False
        return True

    def _route(self, method: str) -> None:
        emu = self.server.emulator
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        match = _PATH.match(url.path)
        body: dict[str, Any] | None = None
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = json.loads(self.rfile.read(length))
        if match is None:
            self._status(404, "NotFound", f"no route {url.path}")
            return
        namespace, kind, name, sub = match.groups()
        watch = query.get("watch") == "true"
        verb = f"{method} {kind}{'/log' if sub else ''}{' watch' if watch else ('' if name else ' list')}"
        if method == "POST":
            verb = f"POST {kind}"
        emu.count(verb)
        fault = emu.faults.pick(watch)
        if self._fault(fault):
            return
        if watch:
            self._watch(kind, namespace, query, fault)
            return
        if method == "POST" and body is not None:
            key = (kind, namespace, body["metadata"]["name"])
            with emu.cond:
                exists = key in emu.objects
            if exists:
                self._status(409, "AlreadyExists", f"{kind} \"{key[2]}\" already exists")
                return
            body["metadata"].setdefault("namespace", namespace)
            body["metadata"]["uid"] = f"uid-{key[2]}"
            body.setdefault("status", {})
            stored = emu.put(kind, body)
            emu.created[key[2]] += 1
            if fault == "timeout":  # committed, but the answer never arrives in time
                time.sleep(emu.faults.stall_s)
                self.close_connection = True
                return
            self._reply(201, stored)
            return
        if fault == "timeout":
            time.sleep(emu.faults.stall_s)
            self.close_connection = True
            return
        if method == "DELETE" and name:
            deleted = emu.delete(kind, namespace, name)
            if deleted is None:
                self._status(404, "NotFound", f"{kind} {name} not found")
            else:
                self._reply(200, deleted)
        elif name and sub == "log":
            with emu.cond:
                text = emu.logs.get((namespace, name))
            if text is None:
                self._status(404, "NotFound", f"no log for pod {name}")
                return
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif name:
            obj = emu.get(kind, namespace, name)
            if obj is None:
                self._status(404, "NotFound", f"{kind} {name} not found")
            else:
                self._reply(200, obj)
        else:
            with emu.cond:
                items = emu.list(kind, namespace, query.get("labelSelector", ""))
                version = str(emu.version)
            self._reply(200, {"kind": "List", "metadata": {"resourceVersion": version}, "items": items})

    def _chunk(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, kind: str, namespace: str, query: dict[str, str], fault: str) -> None:
        emu = self.server.emulator
        selector = query.get("labelSelector", "")
        timeout = float(query.get("timeoutSeconds") or 300)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        since = int(query["resourceVersion"]) if query.get("resourceVersion") else None
        if fault == "gone" or (since is not None and since + 1 < emu.compacted_below):
            self._chunk({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                     "message": "too old resource version"}})
            self.wfile.write(b"0\r\n\r\n")
            return
        budget = emu.faults._rng.randint(0, 5) if fault == "drop-watch" else None
        deadline = time.monotonic() + timeout
        if since is None:
            with emu.cond:
                since = emu.version
                initial = emu.list(kind, namespace, selector)
            for obj in initial:
                self._chunk({"type": "ADDED", "object": obj})
        try:
            while not emu.closed and time.monotonic() < deadline:
                with emu.cond:
                    first = bisect.bisect_right(emu.versions, since)
                    pending = emu.events[first:]
                    if not pending:
                        emu.cond.wait(timeout=0.05)
                        continue
                for version, ekind, etype, obj in pending:
                    since = version
                    if ekind != kind or obj["metadata"]["namespace"] != namespace:
                        continue
                    if not selector_matches(selector, obj["metadata"].get("labels") or {}):
                        continue
                    if budget is not None:
                        if budget == 0:
                            self.close_connection = True
                            self.connection.close()
                            return
                        budget -= 1
                    self._chunk({"type": etype, "object": obj})
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, closed watches) are part of the tests, not errors


class EmulatorServer:
    """Runs an Emulator on 127.0.0.1 on a free port; `url` goes into Configuration.host."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.emulator = emulator
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> EmulatorServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.close()
        self.httpd.shutdown()
        self.httpd.server_close()
