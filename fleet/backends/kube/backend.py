"""The kube backend: cells as Jobs, one watch per run, results gathered from pod logs, resumable by labels.

Idempotent by construction, so that a killed controller can be restarted at any point:
- one LIST of the run's Jobs (by the fleet.run-id label) before anything is created;
- a requested attempt whose cell already has a Job with that attempt number or a later one adopts the
  latest Job instead of creating one; a 409 on create (a Job created by a request whose answer was
  lost) adopts it too;
- finished adopted Jobs are gathered at once, running ones when the watch reports them finished.

A later attempt of a cell prefers the nodes its earlier attempts' pods did not run on (the pods gathered
name them; fleet.plan.render._away_from says why), so that a rerun samples the pool rather than one host
again.

Per Job the API sees one create, one LIST of pods (shared by every Job that finished in the same batch)
and one log read; everything else is one watch per run. Jobs that sit without a running pod are looked
at (one pods LIST) only after `pending_check_after_s`, to fail fast on an image that will not pull or a
pod no node can take.
"""

from __future__ import annotations

import datetime as dt
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.kube.port import ApiError, KubeApi
from fleet.backends.kube.status import (
    WatchEvent,
    extract_result,
    is_finished,
    is_started,
    is_suspended,
    job_facts,
    labels,
    log_tail,
    pod_facts,
    resource_version,
    slim_job,
)
from fleet.errors import ConfigError, InfrastructureError
from fleet.model import ResultError, RunResult
from fleet.plan.render import (
    ANNOTATION_CELL_ID,
    CONTAINER,
    LABEL_ATTEMPT,
    RenderContext,
    job_name,
    render_job,
    run_selector,
)
from fleet.plan.retry import PodFacts, RetryPolicy, classify_finished, classify_pending, job_deleted, latest

LEGACY_JOB_NAME_LABEL = "job-name"  # set on Job pods by every Kubernetes version (the new key since 1.27)


@dataclass(frozen=True)
class KubeSettings:
    watch_timeout_s: int = 300
    tick_s: float = 5.0
    pending_check_after_s: float = 120.0
    pending_recheck_s: float = 60.0
    image_pull_grace_s: float = 300.0
    unschedulable_after_s: float = 1800.0
    pod_batch: int = 40
    max_watch_failures: int = 30
    watch_backoff_s: float = 1.0


def _epoch(stamp: Any, default: float) -> float:
    if not stamp:
        return default
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


class KubeBackend:
    name = "kube"

    def __init__(self, api: KubeApi, context: RenderContext, *, run_dir: Path | None = None,
                 settings: KubeSettings | None = None, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 nodes: dict[str, set[str]] | None = None) -> None:
        if context.shards > 1:
            raise ConfigError("the kube backend does not gather sharded cells yet", where="shards",
                              fix="render with --dry-run, or run with shards=1")
        self.api = api
        self.context = context
        self.run_dir = run_dir
        self.settings = settings or KubeSettings()
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._selector = run_selector(context.run_id)
        self._jobs: dict[str, dict[str, Any]] = {}      # name -> latest Job object seen
        self._waiting: dict[str, Attempt] = {}          # Jobs an outcome is owed for
        self._deleted: set[str] = set()
        self._pending_since: dict[str, float] = {}
        self._next_check: dict[str, float] = {}
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._listed_version: str | None = None
        self._listed = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.adopted: list[str] = []
        self.created: list[str] = []
        #: Per cell, the nodes its attempts' pods ran on: a later attempt prefers the others (render). Given,
        #: it is the memory of earlier backends of the same run (a bisection's commit, round after round),
        #: and this one adds to it.
        self.nodes: dict[str, set[str]] = {} if nodes is None else nodes

    # -- submit ---------------------------------------------------------------------------------------

    def submit(self, attempts: Sequence[Attempt]) -> None:
        self._ensure_listed()
        for attempt in attempts:
            latest_number = self._latest_attempt(attempt.cell.id)
            if latest_number is not None and latest_number >= attempt.number:
                adopted = Attempt(attempt.cell, latest_number, attempt.run_id)
                name = job_name(self.context.run_id, attempt.cell.id, latest_number)
                self._waiting[name] = adopted
                self.adopted.append(name)
                continue
            body = render_job(attempt.cell, attempt.number, self.context,
                              avoid_nodes=sorted(self.nodes.get(attempt.cell.id, ())))
            name = body["metadata"]["name"]
            created = self._call(functools.partial(self.api.create_job, body), f"create Job {name}")
            (self.created if created == "created" else self.adopted).append(name)
            self._waiting[name] = attempt

    def _latest_attempt(self, cell_id: str) -> int | None:
        numbers = [int(labels(job).get(LABEL_ATTEMPT, "0")) for job in self._jobs.values()
                   if (job["metadata"].get("annotations") or {}).get(ANNOTATION_CELL_ID) == cell_id
                   and job["metadata"]["name"] not in self._deleted]
        return max(numbers) if numbers else None

    def _ensure_listed(self) -> None:
        if self._listed:
            return
        items, version = self._call(lambda: self.api.list_jobs(self._selector), "list the run's Jobs")
        for item in items:
            self._jobs[item["metadata"]["name"]] = slim_job(item)
        self._listed_version = version
        self._listed = True

    # -- outcomes -------------------------------------------------------------------------------------

    def outcomes(self) -> Iterator[AttemptOutcome]:
        self._ensure_listed()
        self._start_watch()
        while self._waiting:
            finished = [name for name in self._waiting
                        if name in self._jobs and is_finished(self._jobs[name])]
            if finished:
                yield from self._gather(finished)
                continue
            for name in [name for name in self._waiting if name in self._deleted]:
                attempt = self._waiting.pop(name)
                now = time.time()
                yield AttemptOutcome(attempt, None, job_deleted(name, self.policy), None, None, now, now)
            if not self._waiting:
                return
            self._absorb_events()
            yield from self._check_pending()

    def _absorb_events(self) -> None:
        try:
            batch = [self._events.get(timeout=self.settings.tick_s)]
        except queue.Empty:
            return
        while True:
            try:
                batch.append(self._events.get_nowait())
            except queue.Empty:
                break
        for kind, payload in batch:
            if kind == "fatal":
                raise InfrastructureError(f"the watch on the run's Jobs failed for good: {payload}",
                                          where=f"namespace {self.context.namespace}",
                                          fix="check the API server, then `fleet resume` the run")
            if kind == "relist":
                names = {item["metadata"]["name"] for item in payload}
                self._deleted.update(name for name in self._jobs if name not in names)
                self._jobs.update({item["metadata"]["name"]: slim_job(item) for item in payload})
                continue
            event = payload
            name = event.object.get("metadata", {}).get("name")
            if not name:
                continue
            if event.type == "DELETED" and not is_finished(event.object):
                self._deleted.add(name)
            else:
                self._jobs[name] = slim_job(event.object)

    def _gather(self, names: list[str]) -> Iterator[AttemptOutcome]:
        for start in range(0, len(names), self.settings.pod_batch):
            chunk = names[start:start + self.settings.pod_batch]
            pods = self._pods_of(chunk)
            for name in chunk:
                attempt = self._waiting.pop(name)
                yield self._outcome(attempt, self._jobs[name], pods.get(name, []))

    def _pods_of(self, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        selector = f"{self._selector},{LEGACY_JOB_NAME_LABEL} in ({','.join(sorted(names))})"
        items = self._call(lambda: self.api.list_pods(selector), "list the pods of finished Jobs")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for pod in items:
            grouped.setdefault(labels(pod).get(LEGACY_JOB_NAME_LABEL, ""), []).append(pod)
        return grouped

    def _outcome(self, attempt: Attempt, job: dict[str, Any], pods: list[dict[str, Any]]) -> AttemptOutcome:
        facts = job_facts(job)
        self.nodes.setdefault(attempt.cell.id, set()).update(
            node for pod in pods if (node := (pod.get("spec") or {}).get("nodeName")))
        all_pods = [pod_facts(pod) for pod in pods]
        last = latest(all_pods)
        log = ""
        if last is not None:
            log = self._call(lambda: self.api.pod_log(last.name, CONTAINER),
                             f"read the log of {last.name}") or ""
        document, unreadable = extract_result(log)
        tail = log_tail(log)
        result: RunResult | None = None
        if document is not None:
            try:
                parsed = RunResult.model_validate_json(document)
            except (ValidationError, ValueError) as err:
                unreadable = f"the result is not a valid RunResult: {str(err).splitlines()[0]}"
            else:
                if parsed.cell.id == attempt.cell.id:
                    result = parsed
                else:
                    unreadable = f"the log holds the result of another cell ({parsed.cell.id})"
        failure = classify_finished(facts, all_pods, log_tail=tail,
                                    suite_error=result.error if result else None,
                                    has_result=result is not None, policy=self.policy)
        if failure is None and result is None:
            failure = ResultError(category="infrastructure", reason="BadResult",
                                  message=unreadable or "no result", log_tail=tail,
                                  exit_code=last.exit_code if last else None)
        status = job.get("status") or {}
        now = time.time()
        started = _epoch(status.get("startTime"), now)
        finished = _epoch(status.get("completionTime") or (status.get("conditions") or [{}])[-1]
                          .get("lastTransitionTime"), now)
        path = self._save(attempt, document if result is not None else None, log)
        exit_code = last.exit_code if last else None
        return AttemptOutcome(attempt, result, failure, path, exit_code, started, finished)

    def _save(self, attempt: Attempt, document: bytes | None, log: str) -> Path | None:
        if self.run_dir is None:
            return None
        directory = self.run_dir / "cells" / attempt.cell.id
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"attempt-{attempt.number}.log").write_text(log_tail(log, 400))
        if document is None:
            return None
        path = directory / f"result.attempt-{attempt.number}.json"
        path.write_bytes(document)
        return path

    # -- Jobs that do not start -----------------------------------------------------------------------

    def _check_pending(self) -> Iterator[AttemptOutcome]:
        now = self._clock()
        due: list[str] = []
        for name in self._waiting:
            job = self._jobs.get(name)
            if job is None or is_finished(job) or is_suspended(job) or is_started(job):
                self._pending_since.pop(name, None)
                continue
            since = self._pending_since.setdefault(name, now)
            if now - since >= self.settings.pending_check_after_s and now >= self._next_check.get(name, 0.0):
                due.append(name)
        for start in range(0, len(due), self.settings.pod_batch):
            chunk = due[start:start + self.settings.pod_batch]
            pods = self._pods_of(chunk)
            for name in chunk:
                waited = now - self._pending_since[name]
                pod = latest([pod_facts(p) for p in pods.get(name, [])]) or PodFacts(
                    name=f"(no pod of {name})", unschedulable="the Job has created no pod")
                failure = classify_pending(pod, waited_s=waited,
                                           image_pull_grace_s=self.settings.image_pull_grace_s,
                                           unschedulable_after_s=self.settings.unschedulable_after_s,
                                           policy=self.policy)
                if failure is None:
                    self._next_check[name] = now + self.settings.pending_recheck_s
                    continue
                self._call(functools.partial(self.api.delete_job, name), f"delete stuck Job {name}")
                attempt = self._waiting.pop(name)
                wall = time.time()
                yield AttemptOutcome(attempt, None, failure, None, None, wall - waited, wall)

    # -- the watch ------------------------------------------------------------------------------------

    def _start_watch(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_loop, name="fleet-kube-watch", daemon=True)
            self._watcher.start()

    def _watch_loop(self) -> None:
        version = self._listed_version
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    items, version = self.api.list_jobs(self._selector)
                    self._events.put(("relist", [slim_job(item) for item in items]))
                for event in self.api.watch_jobs(self._selector, version, self.settings.watch_timeout_s):
                    if self._stop.is_set():
                        return
                    if event.gone:
                        version = None
                        break
                    if event.type == "ERROR":
                        raise ApiError(int(event.object.get("code") or 500), "watch error",
                                       str(event.object.get("message", "")))
                    version = resource_version(event.object) or version
                    failures = 0
                    if event.type != "BOOKMARK":
                        # slimmed here: events pile up while submit() is still creating Jobs
                        self._events.put(("event", WatchEvent(event.type, slim_job(event.object))))
            except ApiError as err:
                if err.status == 410:
                    version = None
                    continue
                failures = self._watch_failed(err, failures)
            except Exception as err:  # dropped connections and timeouts: reconnect from `version`
                failures = self._watch_failed(err, failures)
            if failures > self.settings.max_watch_failures:
                return

    def _watch_failed(self, err: Exception, failures: int) -> int:
        if isinstance(err, ApiError) and not err.transient:
            self._events.put(("fatal", err))
            return self.settings.max_watch_failures + 1
        failures += 1
        if failures > self.settings.max_watch_failures:
            self._events.put(("fatal", err))
        else:
            self._sleep(min(30.0, self.settings.watch_backoff_s * failures))
        return failures

    # -- shutting down --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching and leave every Job as it is: what a controller that dies does, minus the dying."""
        self._stop.set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def cancel(self) -> None:
        self.close()
        for name in list(self._waiting):
            self._call(functools.partial(self.api.delete_job, name), f"delete Job {name}")

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        try:
            return call()
        except ApiError as err:
            if err.status in (401, 403):
                raise ConfigError(f"cannot {what}: {err}", where=f"namespace {self.context.namespace}",
                                  cause="the service account lacks a Role on jobs, pods or pods/log",
                                  fix="apply k8s/ (Role fleet-runner) or use credentials with it") from err
            if err.status in (400, 404, 422):
                raise ConfigError(f"cannot {what}: {err}", where=f"namespace {self.context.namespace}",
                                  fix="check the namespace exists and the manifest (`fleet submit --dry-run`)"
                                  ) from err
            raise InfrastructureError(f"cannot {what}: {err}", cause="the API server kept failing",
                                      fix="rerun `fleet resume RUN_ID` when the API server is back") from err
        except (OSError, Exception) as err:
            if isinstance(err, ConfigError | InfrastructureError):
                raise
            raise InfrastructureError(f"cannot {what}: {type(err).__name__}: {err}",
                                      cause="the API server is unreachable or timing out",
                                      fix="rerun `fleet resume RUN_ID` when it answers") from err
