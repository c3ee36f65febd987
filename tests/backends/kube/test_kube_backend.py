"""The kube backend through the official client against an emulated API server (real HTTP)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.kube.backend import KubeBackend
from fleet.model import Cell
from fleet.plan.render import job_name
from fleet.report.text import render_text
from fleet.run.controller import CellOutcome, execute, judge_run
from fleet.run.plan import BaselineSet
from tests.builders import make_cell
from tests.kube import cluster as sc
from tests.kube.emulator import Faults
from tests.kube.harness import rig

CELLS = [make_cell(f"v{i}") for i in range(6)]


def jobs_per_cell(emulator_created: Counter[str]) -> Counter[str]:
    return Counter(name.rsplit("-a", 1)[0] for name in emulator_created)


def summary(outcomes: Sequence[CellOutcome]) -> list[tuple[str, str | None, int]]:
    return [(o.cell.id, o.error.reason if o.error else o.result.status if o.result else None, o.attempts)
            for o in outcomes]


def test_cells_finish_with_one_watch_and_at_most_three_requests_per_job() -> None:
    with rig() as r:
        backend = r.backend("run-a")
        outcomes = execute(CELLS, backend, run_id="run-a")
        backend.close()
        assert [o.result is not None and o.result.status == "ok" for o in outcomes] == [True] * len(CELLS)
        requests = r.emulator.requests
        assert requests["GET jobs watch"] == 1
        assert requests["GET jobs list"] == 1
        assert sum(requests.values()) <= 3 * len(CELLS)


def test_resubmitting_a_run_adopts_its_finished_jobs_and_creates_none() -> None:
    with rig() as r:
        first = r.backend("run-b")
        before = summary(execute(CELLS, first, run_id="run-b"))
        first.close()
        second = r.backend("run-b")
        after = summary(execute(CELLS, second, run_id="run-b"))
        second.close()
        assert after == before
        assert second.created == [] and len(second.adopted) == len(CELLS)
        assert max(r.emulator.created.values()) == 1


def test_create_whose_answer_is_lost_gets_409_on_retry_and_is_adopted() -> None:
    with rig(faults=Faults(script=["", "timeout"])) as r:  # list ok, first create commits then stalls
        backend = r.backend("run-c")
        outcomes = execute(CELLS[:2], backend, run_id="run-c")
        backend.close()
        assert all(o.result is not None for o in outcomes)
        assert len(backend.adopted) == 1 and max(r.emulator.created.values()) == 1


def test_watch_expired_with_410_relists_and_still_gathers_everything() -> None:
    with rig(script=lambda cell, attempt: sc.HANG) as r:
        backend = r.backend("run-d")
        backend.submit([Attempt(c, 1, "run-d") for c in CELLS[:3]])
        r.emulator.compact()
        r.emulator.faults.script = ["gone"]  # the next request is the watch: it gets 410 at once
        outcomes = backend.outcomes()
        r.cluster.release()
        got = list(outcomes)
        backend.close()
        assert sorted(o.cell_id for o in got) == sorted(c.id for c in CELLS[:3])
        assert r.emulator.requests["GET jobs list"] >= 2


def test_injected_api_faults_change_no_verdict_and_duplicate_no_job(tmp_path: Path) -> None:
    script = {CELLS[1].id: [sc.EVICTED, sc.OK], CELLS[2].id: [sc.CONFIG], CELLS[3].id: [sc.OOM, sc.OOM]}

    def scenario(cell: str, attempt: int) -> str:
        return script.get(cell, [sc.OK] * 4)[attempt - 1]

    results = []
    for rate in (0.0, 0.10):
        with rig(script=scenario, faults=Faults(rate=rate, seed=7)) as r:
            backend = r.backend(f"run-e{int(rate * 100)}")
            results.append(summary(execute(CELLS, backend, run_id=backend.context.run_id)))
            backend.close()
            assert max(r.emulator.created.values()) == 1
            assert sum(jobs_per_cell(r.emulator.created).values()) == len(CELLS) + 2
            if rate:
                assert sum(r.emulator.requests.values()) > 0
    assert results[0] == results[1]
    assert dict((c, (reason, n)) for c, reason, n in results[0])[CELLS[3].id] == ("OOMKilled", 2)


def avoided_nodes(job: dict[str, Any] | None) -> list[list[str]]:
    """The node names a Job's preferred node affinity asks the scheduler to avoid, per requirement."""
    affinity = (job or {})["spec"]["template"]["spec"].get("affinity", {}).get("nodeAffinity", {})
    terms = affinity.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    return [requirement["values"] for term in terms for requirement in term["preference"]["matchFields"]]


def test_each_rerun_prefers_nodes_its_cell_has_not_run_on() -> None:
    # A GPU that fell off the bus twice: the cell's third attempt runs on the third node, because each
    # rerun's Job asks the scheduler to avoid the nodes its earlier attempts' pods ran on.
    cell = CELLS[0]
    with rig(script=lambda c, a: sc.XID if a < 3 else sc.OK, nodes=("gpu-a", "gpu-b", "gpu-c")) as r:
        backend = r.backend("run-n")
        [outcome] = execute([cell], backend, run_id="run-n")
        backend.close()
        jobs = [r.emulator.get("jobs", "fleet", job_name("run-n", cell.id, n)) for n in (1, 2, 3)]
    assert outcome.error is None and outcome.attempts == 3
    assert [avoided_nodes(job) for job in jobs] == [[], [["gpu-a"]], [["gpu-a"], ["gpu-b"]]]
    assert backend.nodes == {cell.id: {"gpu-a", "gpu-b", "gpu-c"}}


REASONS = {
    sc.OOM: ("OOMKilled", 137, 2),
    sc.EVICTED: ("Evicted", 137, 3),
    sc.PREEMPTED: ("Preempted", 143, 4),
    sc.DEADLINE: ("DeadlineExceeded", 143, 1),
    sc.XID: ("GpuXid", 3, 3),
    sc.SUITE_ERROR: ("engine_start_failed", 3, 2),
    sc.CONFIG: ("ConfigError", 2, 1),
}


@pytest.mark.parametrize("scenario", list(REASONS))
def test_each_failure_reason_uses_its_budget_and_reaches_the_report_with_its_exit_code(
        scenario: str, tmp_path: Path) -> None:
    reason, exit_code, budget = REASONS[scenario]
    cell = make_cell("broken")
    with rig(script=lambda c, a: scenario) as r:
        backend = r.backend("run-f")
        [outcome] = execute([cell], backend, run_id="run-f")
        backend.close()
    assert outcome.error is not None and outcome.error.reason == reason
    assert outcome.error.exit_code == exit_code
    assert outcome.attempts == budget
    report, baselines = judge_run([outcome], baselines=BaselineSet(tmp_path), run_id="run-f", tier="local",
                                  backend="kube", started_at="t0", finished_at="t1")
    text = render_text(report, {}, baselines)
    assert reason in text and f"Exit code: {exit_code}" in text


def test_preemption_the_job_absorbs_is_not_a_failure() -> None:
    with rig(script=lambda c, a: sc.PREEMPTED_THEN_OK) as r:
        backend = r.backend("run-g")
        [outcome] = execute(CELLS[:1], backend, run_id="run-g")
        backend.close()
    assert outcome.error is None and outcome.attempts == 1


@pytest.mark.parametrize(("scenario", "reason"), [(sc.IMAGE_PULL, "ImagePullBackOff"),
                                                  (sc.UNSCHEDULABLE, "Unschedulable")])
def test_pod_that_never_starts_is_failed_after_its_grace_and_its_job_deleted(
        scenario: str, reason: str) -> None:
    with rig(script=lambda c, a: scenario) as r:
        r.clock.step = 20.0  # each look at the clock is 20 s later: the graces pass in a few ticks
        backend = r.backend("run-h")
        [outcome] = execute(CELLS[:1], backend, run_id="run-h")
        backend.close()
        assert outcome.error is not None and outcome.error.reason == reason
        assert outcome.attempts == (2 if reason == "ImagePullBackOff" else 1)
        assert r.emulator.list("jobs", "fleet") == []
        assert r.emulator.requests["DELETE jobs"] == outcome.attempts


def test_cancel_deletes_every_outstanding_job() -> None:
    with rig(script=lambda c, a: sc.HANG) as r:
        backend = r.backend("run-i")
        backend.submit([Attempt(c, 1, "run-i") for c in CELLS[:3]])
        backend.cancel()
        assert r.emulator.list("jobs", "fleet") == []


class Killed(Exception):
    """The controller process dies here."""


class KillSwitch:
    """A Backend that dies after `after_submits` created attempts (mid-submission)."""

    name = "kube"

    def __init__(self, inner: KubeBackend, after_submits: int) -> None:
        self.inner, self.left = inner, after_submits

    def submit(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            if self.left == 0:
                raise Killed()
            self.left -= 1
            self.inner.submit([attempt])

    def outcomes(self) -> Iterator[AttemptOutcome]:
        return self.inner.outcomes()

    def cancel(self) -> None:
        self.inner.cancel()


def _kill_during_outcomes(after: int, retry_only: bool = False):  # type: ignore[no-untyped-def]
    seen = {"n": 0}

    def on_outcome(outcome: AttemptOutcome, will_retry: bool) -> None:
        if retry_only and will_retry:
            raise Killed()
        seen["n"] += 1
        if not retry_only and seen["n"] == after:
            raise Killed()
    return on_outcome


@pytest.mark.parametrize("point", ["mid-submission", "after-some-results", "before-a-retry-is-submitted"])
def test_controller_killed_at_any_point_resumes_with_no_lost_result_and_no_duplicate_job(point: str) -> None:
    cells: list[Cell] = CELLS
    plan = {cells[0].id: [sc.EVICTED, sc.OK], cells[4].id: [sc.HANG]}

    def scenario(cell: str, attempt: int) -> str:
        return plan.get(cell, [sc.OK, sc.OK])[attempt - 1]

    with rig(script=scenario) as r:
        first = r.backend("run-k")
        with pytest.raises(Killed):
            if point == "mid-submission":
                execute(cells, KillSwitch(first, after_submits=3), run_id="run-k")
            elif point == "after-some-results":
                execute(cells, first, run_id="run-k", on_outcome=_kill_during_outcomes(2))
            else:
                execute(cells, first, run_id="run-k", on_outcome=_kill_during_outcomes(0, retry_only=True))
        first.close()
        r.cluster.release()
        resumed = r.backend("run-k")
        outcomes = execute(cells, resumed, run_id="run-k")
        resumed.close()
        assert [o.cell.id for o in outcomes] == [c.id for c in cells]
        assert all(o.result is not None and o.result.status == "ok" for o in outcomes)
        assert outcomes[0].attempts == 2
        assert max(r.emulator.created.values()) == 1
        per_cell = jobs_per_cell(r.emulator.created)
        assert sorted(per_cell.values()) == [1] * (len(cells) - 1) + [2]
