"""Why an attempt failed, and whether another try is worth its GPU time: a pure failure taxonomy.

Facts come in as small values (what a Job's and its pods' status say, the log tail, the suite's own error
document) and a ResultError comes out, with a reason from the table below and the container's original
exit code. The retry budget is per reason, because reasons differ in how often they clear on their own:

    reason               category        attempts   why
    Preempted            infrastructure  4          the scheduler took the node for higher priority work
    Evicted              infrastructure  3          node pressure; another node will usually do
    GpuXid               infrastructure  3          a GPU fault (Xid, ECC, fell off the bus); node-local
    OOMKilled            infrastructure  2          host memory; a noisy neighbour, or a limit too low
    ImagePullBackOff     infrastructure  2          registry flake; a wrong tag will not clear
    engine_start_failed  infrastructure  2          vLLM did not come up (driver, download, compile)
    DeadlineExceeded     infrastructure  1          a cell that is simply too slow stays too slow
    Unschedulable        infrastructure  1          no node fits; waiting again rarely helps
    (config errors)      config          1          the same input fails the same way

A regression is never here: a cell that ran and measured worse has a result, not a failure, so it is
judged, never retried as a flake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from fleet.model import ResultError

PREEMPTED = "Preempted"
EVICTED = "Evicted"
GPU_XID = "GpuXid"
OOM_KILLED = "OOMKilled"
IMAGE_PULL = "ImagePullBackOff"
ENGINE_START = "engine_start_failed"
DEADLINE = "DeadlineExceeded"
UNSCHEDULABLE = "Unschedulable"
JOB_DELETED = "JobDeleted"
NO_RESULT = "NoResult"
CONFIG = "ConfigError"
CONFIG_EXIT_CODE = 2

#: Attempts allowed per infrastructure reason, the first included.
DEFAULT_BUDGETS: Mapping[str, int] = MappingProxyType({
    PREEMPTED: 4,
    EVICTED: 3,
    GPU_XID: 3,
    OOM_KILLED: 2,
    IMAGE_PULL: 2,
    ENGINE_START: 2,
    DEADLINE: 1,
    UNSCHEDULABLE: 1,
    "Cancelled": 1,
    "timeout": 1,          # the suite's own per-phase timeout: same as a deadline
    "cuda_oom": 1,         # GPU memory is decided by the model and options, not by luck
    "no_spec_metrics": 1,  # the engine ran but reported no counters: deterministic
})
DEFAULT_INFRASTRUCTURE_ATTEMPTS = 2

_XID_PATTERNS = re.compile(
    r"NVRM: Xid|\bXid \d+\b|Xid \(PCI:|fallen off the bus|uncorrectable ECC|ECC error|"
    r"HSA_STATUS_ERROR_HW_EXCEPTION|amdgpu: GPU reset|GPU reset begin",
)
_PREEMPTION_REASONS = frozenset({"PreemptionByScheduler", "PreemptionByKubeScheduler",
                                 "DeletionByTaintManager", "DeletionByPodGC"})
_IMAGE_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})


@dataclass(frozen=True)
class RetryPolicy:
    budgets: Mapping[str, int] = field(default_factory=lambda: DEFAULT_BUDGETS)
    default_attempts: int = DEFAULT_INFRASTRUCTURE_ATTEMPTS

    def attempts_allowed(self, error: ResultError) -> int:
        if error.category != "infrastructure":
            return 1
        return self.budgets.get(error.reason, self.default_attempts)

    def should_retry(self, error: ResultError | None, attempts_so_far: int) -> bool:
        return error is not None and attempts_so_far < self.attempts_allowed(error)


@dataclass(frozen=True)
class PodFacts:
    """What one pod's status says about how it ended (or why it has not started)."""

    name: str
    phase: str = "Pending"
    reason: str | None = None                # status.reason, e.g. "Evicted"
    message: str | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None     # e.g. "OOMKilled", "Error", "Completed"
    waiting_reason: str | None = None        # e.g. "ImagePullBackOff"
    waiting_message: str | None = None
    disruption_reason: str | None = None     # the DisruptionTarget condition's reason
    unschedulable: str | None = None         # PodScheduled=False's message
    created: str = ""


@dataclass(frozen=True)
class JobFacts:
    """What a finished (or stuck) Job's status says."""

    name: str
    succeeded: bool = False
    failed: bool = False
    reason: str | None = None                # the Failed condition's reason, e.g. "DeadlineExceeded"
    message: str | None = None


def _error(reason: str, message: str, *, exit_code: int | None, log_tail: str, policy: RetryPolicy,
           category: str = "infrastructure") -> ResultError:
    draft = ResultError(category="config" if category == "config" else "infrastructure", reason=reason,
                        message=message, log_tail=log_tail, exit_code=exit_code)
    budget = policy.attempts_allowed(draft)
    return draft.model_copy(update={"message": f"{message} (retry budget: {budget} attempt(s))"})


def has_gpu_fault(log_tail: str) -> bool:
    return bool(_XID_PATTERNS.search(log_tail))


def latest(pods: Sequence[PodFacts]) -> PodFacts | None:
    return max(pods, key=lambda pod: (pod.created, pod.name)) if pods else None


def classify_finished(job: JobFacts, pods: Sequence[PodFacts], *, log_tail: str,
                      suite_error: ResultError | None, has_result: bool,
                      policy: RetryPolicy | None = None) -> ResultError | None:
    """Why a finished Job produced no usable result; None when its result (ok or the suite's error) stands.

    The cluster's view wins over the suite's where it is more specific (an Xid behind an engine crash, a
    kill behind a missing result); otherwise the suite's own error document is kept as it is.
    """
    policy = policy or RetryPolicy()
    pod = latest(pods)
    exit_code = pod.exit_code if pod else None
    if job.succeeded and has_result and suite_error is None:
        return None
    if not job.succeeded and has_gpu_fault(log_tail):
        return _error(GPU_XID, "the GPU faulted (Xid / ECC / reset in the log); the node may need draining",
                      exit_code=exit_code, log_tail=log_tail, policy=policy)
    if job.reason == DEADLINE:
        return _error(DEADLINE, f"the Job ran past its activeDeadlineSeconds: {job.message or ''}".strip(),
                      exit_code=exit_code, log_tail=log_tail, policy=policy)
    if pod is not None:
        found = _pod_failure(pod, log_tail=log_tail, policy=policy)
        if found is not None:
            return found
    if suite_error is not None:
        return None  # the suite said why, with its own exit code
    if exit_code == CONFIG_EXIT_CODE:
        last = log_tail.strip().splitlines()[-1] if log_tail.strip() else "the suite rejected the cell"
        return _error(CONFIG, last, exit_code=exit_code, log_tail=log_tail, policy=policy, category="config")
    if job.succeeded and not has_result:
        return _error(NO_RESULT, "the pod succeeded but its log holds no result document",
                      exit_code=exit_code, log_tail=log_tail, policy=policy)
    why = f"the Job failed ({job.reason or 'no reason given'})" if pod else "the Job failed without a pod"
    return _error(NO_RESULT, f"{why} and left no result; exit code {exit_code}",
                  exit_code=exit_code, log_tail=log_tail, policy=policy)


def _pod_failure(pod: PodFacts, *, log_tail: str, policy: RetryPolicy) -> ResultError | None:
    if pod.terminated_reason == OOM_KILLED:
        return _error(OOM_KILLED, f"pod {pod.name} was killed for memory (exit {pod.exit_code})",
                      exit_code=pod.exit_code, log_tail=log_tail, policy=policy)
    if pod.reason == EVICTED or pod.disruption_reason == "TerminationByKubelet":
        return _error(EVICTED, f"pod {pod.name} was evicted: {pod.message or pod.disruption_reason}",
                      exit_code=pod.exit_code, log_tail=log_tail, policy=policy)
    if pod.disruption_reason in _PREEMPTION_REASONS or pod.disruption_reason == "EvictionByEvictionAPI":
        return _error(PREEMPTED, f"pod {pod.name} was disrupted ({pod.disruption_reason})",
                      exit_code=pod.exit_code, log_tail=log_tail, policy=policy)
    if pod.exit_code == 137:  # SIGKILL with no other reason given: the kernel's OOM killer, mostly
        return _error(OOM_KILLED, f"pod {pod.name} was killed (exit 137) without a reason; out of memory?",
                      exit_code=pod.exit_code, log_tail=log_tail, policy=policy)
    if pod.waiting_reason in _IMAGE_REASONS:
        why = f"pod {pod.name} cannot pull its image: {pod.waiting_message or ''}".strip()
        return _error(IMAGE_PULL, why,
                      exit_code=pod.exit_code, log_tail=log_tail, policy=policy)
    return None


def classify_pending(pod: PodFacts, *, waited_s: float, image_pull_grace_s: float,
                     unschedulable_after_s: float, policy: RetryPolicy | None = None) -> ResultError | None:
    """A pod that has not started: fail it now (image will not pull, no node fits) or keep waiting (None)."""
    policy = policy or RetryPolicy()
    if pod.waiting_reason in _IMAGE_REASONS and waited_s >= image_pull_grace_s:
        return _error(IMAGE_PULL, f"pod {pod.name} could not pull its image for {waited_s:.0f} s: "
                      f"{pod.waiting_reason}: {pod.waiting_message or ''}".strip(),
                      exit_code=None, log_tail="", policy=policy)
    if pod.unschedulable is not None and waited_s >= unschedulable_after_s:
        why = f"pod {pod.name} found no node for {waited_s:.0f} s: {pod.unschedulable}"
        return _error(UNSCHEDULABLE, why,
                      exit_code=None, log_tail="", policy=policy)
    return None


def job_deleted(name: str, policy: RetryPolicy | None = None) -> ResultError:
    return _error(JOB_DELETED, f"Job {name} was deleted before it finished (by a person or a TTL)",
                  exit_code=None, log_tail="", policy=policy or RetryPolicy())
