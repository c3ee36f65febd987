"""How the bisection's shell treats a commit's failed runs: a config error is the commit's, at once; a crash
of the engine or the machine is retried as a flake."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.bisect.posterior import metric_policy
from fleet.judge.compare import Spread
from fleet.model import Cell, Hardware, Provenance, ResultError, RunResult
from fleet.run.bisection import BisectOutcome, run_bisection
from tests.builders import make_cell

SHAS = [f"{i:040x}" for i in range(60)]
CULPRIT = 30


class SuiteBackend:
    """Answers each attempt as the suite's result document would: the metric, or the error the suite wrote
    (status "error", its category and reason) for the commits in `errors`, on its `attempts`-th tries."""

    name = "suite"

    def __init__(self, errors: dict[int, tuple[ResultError, set[int] | None]]) -> None:
        self.errors = errors
        self.queue: list[Attempt] = []
        self.attempts: dict[int, list[int]] = {}
        self.rng = random.Random(2)

    def submit(self, attempts: Sequence[Attempt]) -> None:
        self.queue.extend(attempts)

    def outcomes(self) -> Iterator[AttemptOutcome]:
        while self.queue:
            attempt = self.queue.pop(0)
            index = SHAS.index(attempt.cell.hardware.image or "")
            self.attempts.setdefault(index, []).append(attempt.number)
            provenance = Provenance(fleet_version="test", engine="reference")
            error, on = self.errors.get(index, (None, None))
            if error is not None and (on is None or attempt.number in on):
                result = RunResult(cell=attempt.cell, status="error", error=error, provenance=provenance)
                yield AttemptOutcome(attempt, result, None, None, error.exit_code, 1.0, 2.0)
                continue
            value = 2.0 * (0.9 if index >= CULPRIT else 1.0) * (1 + self.rng.gauss(0, 0.005))
            result = RunResult(cell=attempt.cell, status="ok", provenance=provenance,
                               metrics={"acceptance_length": value})
            yield AttemptOutcome(attempt, result, None, None, 0, 1.0, 2.0)

    def cancel(self) -> None:
        self.queue.clear()

    def close(self) -> None:
        """Holds nothing."""

    @property
    def closed(self) -> bool:
        return False


def bisect(backend: SuiteBackend) -> BisectOutcome:
    cell = make_cell()

    def materialise(sha: str) -> Cell:
        return cell.model_copy(update={"hardware": Hardware(name="cpu", vendor="cpu", gpu_count=0,
                                                            image=sha)})

    return run_bisection(SHAS, metric="acceptance_length", policy=metric_policy("acceptance_length", 4),
                         materialise=materialise, backend_for=lambda sha: backend, run_id="t",
                         noise=Spread(0.005, 9))


#: What fleet.suite.runner writes for a model whose config it cannot use (EngineConfigError).
BROKEN_CONFIG = ResultError(category="config", reason="EngineConfigError", exit_code=2,
                            message="config error: model: config.json is not a model config — next: fix it")
ENGINE_CRASH = ResultError(category="infrastructure", reason="engine_crash", exit_code=3,
                           message="infrastructure error: the engine crashed: RuntimeError: lost")


def test_a_commit_whose_model_config_is_broken_is_untestable_after_its_first_run() -> None:
    broken = range(CULPRIT - 6, CULPRIT)  # the culprit's parent and the five before it
    backend = SuiteBackend({c: (BROKEN_CONFIG, None) for c in broken})
    outcome = bisect(backend)
    tried = [c for c in broken if c in backend.attempts]
    assert tried, "the search never reached the broken commits: the test proves nothing"
    for commit in tried:
        # Never retried as a flake: its runs are those of the round that first tried it (where the
        # posterior put two quantiles on it), none after its first config error came back.
        rounds = [log.number for log in outcome.rounds if any(run.commit == commit for run in log.runs)]
        assert len(set(rounds)) == 1 and len(backend.attempts[commit]) <= 2
        record = outcome.bisection.records[commit]
        assert record.untestable is not None and "EngineConfigError" in record.untestable
    finding = outcome.finding
    assert finding.verified and (finding.first, finding.last) == (CULPRIT - 6, CULPRIT)


def test_a_crashed_engine_is_retried_as_a_flake_and_the_commit_stays_testable() -> None:
    backend = SuiteBackend({CULPRIT: (ENGINE_CRASH, {1}), CULPRIT - 1: (ENGINE_CRASH, {1})})
    outcome = bisect(backend)
    for commit in (CULPRIT - 1, CULPRIT):
        assert len(backend.attempts[commit]) >= 2
        assert outcome.bisection.records[commit].untestable is None
    assert outcome.finding.verified and (outcome.finding.first, outcome.finding.last) == (CULPRIT, CULPRIT)
