"""The failure taxonomy: each reason from Job/pod facts, its retry budget, the original exit code kept."""

from __future__ import annotations

import pytest

from fleet.model import ResultError
from fleet.plan.retry import (
    DEFAULT_BUDGETS,
    JobFacts,
    PodFacts,
    RetryPolicy,
    classify_finished,
    classify_pending,
)

FAILED = JobFacts(name="j", failed=True, reason="BackoffLimitExceeded")
POLICY = RetryPolicy()

CASES = [
    ("OOMKilled", FAILED, PodFacts(name="p", phase="Failed", exit_code=137, terminated_reason="OOMKilled"),
     "", 137),
    ("OOMKilled", FAILED, PodFacts(name="p", phase="Failed", exit_code=137, terminated_reason="Error"),
     "", 137),
    ("Evicted", FAILED, PodFacts(name="p", phase="Failed", reason="Evicted", exit_code=137), "", 137),
    ("Preempted", FAILED, PodFacts(name="p", phase="Failed", exit_code=143,
                                   disruption_reason="PreemptionByScheduler"), "", 143),
    ("DeadlineExceeded", JobFacts(name="j", failed=True, reason="DeadlineExceeded"),
     PodFacts(name="p", phase="Failed", exit_code=143), "", 143),
    ("ImagePullBackOff", FAILED, PodFacts(name="p", waiting_reason="ErrImagePull"), "", None),
    ("GpuXid", FAILED, PodFacts(name="p", phase="Failed", exit_code=3),
     "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.", 3),
    ("ConfigError", JobFacts(name="j", failed=True, reason="PodFailurePolicy"),
     PodFacts(name="p", phase="Failed", exit_code=2), "config error: no such model", 2),
    ("NoResult", FAILED, PodFacts(name="p", phase="Failed", exit_code=1), "Traceback", 1),
]


@pytest.mark.parametrize(("reason", "job", "pod", "log", "exit_code"), CASES, ids=[c[0] + str(i) for i, c in
                                                                                  enumerate(CASES)])
def test_each_failure_reason_keeps_its_exit_code_and_states_its_budget(
        reason: str, job: JobFacts, pod: PodFacts, log: str, exit_code: int | None) -> None:
    error = classify_finished(job, [pod], log_tail=log, suite_error=None, has_result=False)
    assert error is not None
    assert error.reason == reason
    assert error.exit_code == exit_code
    assert f"retry budget: {POLICY.attempts_allowed(error)} attempt(s)" in error.message


def test_budgets_differ_by_reason_and_config_errors_are_never_retried() -> None:
    def make(reason: str, category: str = "infrastructure") -> ResultError:
        return ResultError(category=category, reason=reason, message="m")  # type: ignore[arg-type]
    assert POLICY.attempts_allowed(make("Preempted")) == 4
    assert POLICY.attempts_allowed(make("Evicted")) == 3
    assert POLICY.attempts_allowed(make("OOMKilled")) == 2
    assert POLICY.attempts_allowed(make("DeadlineExceeded")) == 1
    assert POLICY.attempts_allowed(make("Unschedulable")) == 1
    assert POLICY.attempts_allowed(make("ConfigError", "config")) == 1
    assert not POLICY.should_retry(make("Preempted"), 4) and POLICY.should_retry(make("Preempted"), 3)
    assert set(DEFAULT_BUDGETS) >= {"Preempted", "Evicted", "GpuXid", "OOMKilled", "ImagePullBackOff",
                                    "engine_start_failed", "DeadlineExceeded", "Unschedulable"}


def test_a_measured_result_is_never_a_failure_so_a_regression_is_never_retried() -> None:
    done = JobFacts(name="j", succeeded=True)
    pod = PodFacts(name="p", phase="Succeeded", exit_code=0)
    assert classify_finished(done, [pod], log_tail="", suite_error=None, has_result=True) is None
    assert not POLICY.should_retry(None, 1)


def test_suite_error_stands_unless_the_cluster_knows_better() -> None:
    suite = ResultError(category="infrastructure", reason="engine_start_failed", message="m", exit_code=3)
    pod = PodFacts(name="p", phase="Failed", exit_code=3)
    assert classify_finished(FAILED, [pod], log_tail="INFO", suite_error=suite, has_result=True) is None
    xid = classify_finished(FAILED, [pod], log_tail="NVRM: Xid 48", suite_error=suite, has_result=True)
    assert xid is not None and xid.reason == "GpuXid"


def test_the_latest_pod_decides_when_a_job_had_several() -> None:
    old = PodFacts(name="p0", phase="Failed", disruption_reason="PreemptionByScheduler",
                   created="2026-01-01T00:00:00Z")
    new = PodFacts(name="p1", phase="Failed", terminated_reason="OOMKilled", exit_code=137,
                   created="2026-01-01T00:05:00Z")
    error = classify_finished(FAILED, [new, old], log_tail="", suite_error=None, has_result=False)
    assert error is not None and error.reason == "OOMKilled"


def test_pending_pod_fails_only_after_its_grace() -> None:
    pulling = PodFacts(name="p", waiting_reason="ImagePullBackOff", waiting_message="not found")
    stuck = PodFacts(name="p", unschedulable="0/3 nodes are available")
    kwargs = {"image_pull_grace_s": 300.0, "unschedulable_after_s": 1800.0}
    assert classify_pending(pulling, waited_s=299, **kwargs) is None
    image = classify_pending(pulling, waited_s=300, **kwargs)
    assert image is not None and image.reason == "ImagePullBackOff"
    assert classify_pending(stuck, waited_s=1000, **kwargs) is None
    unschedulable = classify_pending(stuck, waited_s=1800, **kwargs)
    assert unschedulable is not None and unschedulable.reason == "Unschedulable"
    assert classify_pending(PodFacts(name="p", phase="Pending"), waited_s=1e6, **kwargs) is None
