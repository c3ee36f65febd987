"""The controller's loop over a fake Backend (the port): retries, final outcomes, order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.model import ResultError, RunResult
from fleet.plan.retry import RetryPolicy
from fleet.run.controller import execute, new_run_id
from fleet.run.kube import earlier_results
from tests.builders import make_cell, ok_result


class ScriptedBackend:
    """Answers each attempt from a script: cell id -> list of failures (None = success) per attempt."""

    name = "scripted"

    def __init__(self, script: dict[str, list[ResultError | None]]) -> None:
        self.script = script
        self.queue: list[Attempt] = []
        self.submitted: list[tuple[str, int]] = []

    def submit(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            self.submitted.append((attempt.cell.id, attempt.number))
            self.queue.append(attempt)

    def outcomes(self) -> Iterator[AttemptOutcome]:
        while self.queue:
            attempt = self.queue.pop(0)
            failure = self.script[attempt.cell.id][attempt.number - 1]
            result = None if failure else ok_result(attempt.cell)
            yield AttemptOutcome(attempt, result, failure, None, 0 if result else 3, 1.0, 2.0)

    def cancel(self) -> None:
        self.queue.clear()


EVICTED = ResultError(category="infrastructure", reason="Evicted", message="node pressure")
BAD_CONFIG = ResultError(category="config", reason="ConfigError", message="no such model")


def test_infrastructure_failure_is_retried_and_the_retry_result_kept() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [EVICTED, None]})
    [outcome] = execute([cell], backend, run_id="r")
    assert outcome.result is not None and outcome.error is None
    assert outcome.attempts == 2
    assert backend.submitted == [(cell.id, 1), (cell.id, 2)]


def test_config_failure_is_never_retried() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [BAD_CONFIG, None]})
    [outcome] = execute([cell], backend, run_id="r")
    assert outcome.error == BAD_CONFIG
    assert outcome.attempts == 1


def test_retries_stop_at_the_reasons_budget() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [EVICTED, EVICTED, EVICTED, None]})
    policy = RetryPolicy(budgets={"Evicted": 3})
    [outcome] = execute([cell], backend, run_id="r", policy=policy)
    assert outcome.error == EVICTED
    assert outcome.attempts == 3


def test_outcomes_come_back_in_cell_order_whatever_the_finishing_order() -> None:
    first, second = make_cell("a"), make_cell("b")
    backend = ScriptedBackend({first.id: [EVICTED, None], second.id: [None]})
    outcomes = execute([first, second], backend, run_id="r")
    assert [o.cell.id for o in outcomes] == [first.id, second.id]


def test_progress_callback_sees_every_attempt_and_whether_it_retries() -> None:
    cell = make_cell()
    seen: list[tuple[int, bool]] = []
    backend = ScriptedBackend({cell.id: [EVICTED, None]})
    execute([cell], backend, run_id="r", on_outcome=lambda o, retry: seen.append((o.attempt.number, retry)))
    assert seen == [(1, True), (2, False)]


def test_run_ids_name_the_tier_and_differ() -> None:
    assert new_run_id("local").startswith("local-")
    assert new_run_id("local") != new_run_id("local")


# --- INCONCLUSIVE-driven reruns ----------------------------------------------------------------------


def test_an_inconclusive_cell_is_rerun_and_keeps_every_run_as_a_candidate() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [None, None, None]})
    asked: list[int] = []

    def rerun(_cell: object, results: object) -> bool:
        asked.append(len(results))  # type: ignore[arg-type]
        return len(results) < 3  # type: ignore[arg-type]

    [outcome] = execute([cell], backend, run_id="r", rerun=rerun, max_runs=5)
    assert asked == [1, 2, 3]
    assert len(outcome.candidates) == 3 and outcome.attempts == 3
    assert backend.submitted == [(cell.id, 1), (cell.id, 2), (cell.id, 3)]


def test_reruns_stop_at_the_budget_even_when_still_inconclusive() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [None] * 10})
    [outcome] = execute([cell], backend, run_id="r", rerun=lambda _c, _r: True, max_runs=4)
    assert len(outcome.candidates) == 4


def test_a_failed_rerun_leaves_the_runs_already_measured_to_judge() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [None, BAD_CONFIG]})
    [outcome] = execute([cell], backend, run_id="r", rerun=lambda _c, r: len(r) < 2, max_runs=5)
    assert outcome.error is None and outcome.result is not None and len(outcome.candidates) == 1


def test_infrastructure_retries_inside_a_rerun_have_their_own_budget() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [None, EVICTED, None]})
    [outcome] = execute([cell], backend, run_id="r", rerun=lambda _c, r: len(r) < 2, max_runs=5)
    assert len(outcome.candidates) == 2 and outcome.attempts == 3


def test_without_a_rerun_check_each_cell_runs_once() -> None:
    cell = make_cell()
    backend = ScriptedBackend({cell.id: [None, None]})
    [outcome] = execute([cell], backend, run_id="r")
    assert outcome.attempts == 1 and len(outcome.candidates) == 1


class AdoptingBackend(ScriptedBackend):
    """Like a kube backend after `fleet resume`: asked for attempt 1, it adopts the cell's attempt 3 Job."""

    def submit(self, attempts: Sequence[Attempt]) -> None:
        super().submit([Attempt(a.cell, max(a.number, 3), a.run_id) for a in attempts])


def test_a_resumed_cell_keeps_the_runs_its_earlier_attempts_measured() -> None:
    cell = make_cell()
    backend = AdoptingBackend({cell.id: [None, EVICTED, None, None]})
    asked: list[int] = []

    def earlier(_cell: object, before: int) -> list[RunResult]:
        asked.append(before)
        return [ok_result(cell), ok_result(cell).model_copy(update={"status": "error"})]

    [outcome] = execute([cell], backend, run_id="r", rerun=lambda _c, r: len(r) < 3, max_runs=5,
                        earlier=earlier)
    assert asked == [3]
    # attempt 1's run (attempt 2 was evicted) + the adopted attempt 3 + one more rerun, attempt 4
    assert len(outcome.candidates) == 3 and outcome.attempts == 4


def test_resume_reads_the_earlier_attempts_results_from_the_run_directory(tmp_path: Path) -> None:
    cell = make_cell()
    folder = tmp_path / "cells" / cell.id
    folder.mkdir(parents=True)
    (folder / "result.attempt-1.json").write_text(ok_result(cell).model_dump_json())
    (folder / "result.attempt-2.json").write_text("{truncated")  # an attempt killed mid-write
    (folder / "result.attempt-3.json").write_text(ok_result(cell).model_dump_json())
    assert len(earlier_results(tmp_path, cell, 3)) == 1
    assert len(earlier_results(tmp_path, cell, 4)) == 2


def test_progress_calls_a_rerun_of_an_inconclusive_cell_a_rerun_and_a_retry_after_a_failure_a_retry(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli._progress import CellProgress as Progress

    cell = make_cell("ngram-k4")
    progress = Progress(1)
    lost = ResultError(category="infrastructure", reason="NodeLost", message="the node went away")
    for number, result, failure in [(1, ok_result(cell), None), (2, None, lost), (3, ok_result(cell), None)]:
        attempt = Attempt(cell, number, "r1")
        progress.started(attempt)
        progress.ended(AttemptOutcome(attempt, result, failure, None, None, 0.0, 1.0), will_retry=True)
    progress.started(Attempt(cell, 4, "r1"))
    lines = [line.strip() for line in capsys.readouterr().err.splitlines()
             if line.strip().startswith(("[", "rerunning", "retrying"))]
    assert lines[1].startswith("rerunning") and "run 2" in lines[1]
    assert lines[2].startswith("retrying") and "attempt 3" in lines[2]
    assert lines[3].startswith("rerunning") and "run 3" in lines[3]
