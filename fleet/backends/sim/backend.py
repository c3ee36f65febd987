"""The sim backend: runs no engine, answers each attempt from a scenario, on a virtual clock.

It exists so that a bisection (or any run) can be rehearsed and costed before GPUs are spent: the
controller and the bisection talk to it through the same Backend port as to `local` and `kube`, so
what is rehearsed is the real search, the real retry handling and the real report. Nothing it returns
is presented as measured: every result's provenance says engine "sim" and names the scenario.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.backends.sim.scenario import Scenario, draw_run
from fleet.errors import ConfigError
from fleet.model import Provenance, ResultError, RunResult
from fleet.suite.provenance import fleet_version

#: How a scenario's broken commits show up, in the failure taxonomy's words.
FAILURE_REASONS = {
    "no-image": ("ImageNotFound", "no image was published for this commit"),
    "build-failure": ("BuildFailure", "this commit does not build"),
    "engine-crash": ("EngineCrash", "the engine crashed while starting"),
    "flaky": ("NodeLost", "the node running the attempt went away (simulated flake)"),
}


class SimBackend:
    name = "sim"

    def __init__(self, scenario: Scenario, *, image_template: str, seed: int = 0,
                 scenario_name: str = "scenario", epoch: float = 0.0) -> None:
        if "{sha}" not in image_template:
            raise ConfigError(f"image template {image_template!r} has no {{sha}} placeholder",
                              where="--image-template", fix="write e.g. sim:{sha}")
        self.scenario = scenario
        self.scenario_name = scenario_name
        self._index = {image_template.format(sha=sha): i for i, sha in enumerate(scenario.shas())}
        self._rng = random.Random(seed)
        self._pending: list[Attempt] = []
        self.clock = epoch

    def submit(self, attempts: Sequence[Attempt]) -> None:
        self._pending.extend(attempts)

    def outcomes(self) -> Iterator[AttemptOutcome]:
        """Everything submitted runs at once, as on a pool with a GPU free per attempt."""
        started = self.clock
        finished = started + self.scenario.run_minutes * 60.0
        batch, self._pending = self._pending, []
        for attempt in batch:
            yield self._outcome(attempt, started, finished)
        if batch:
            self.clock = finished

    def close(self) -> None:
        """A rehearsal holds nothing."""

    @property
    def closed(self) -> bool:
        return False  # close() released nothing: it can take more attempts

    def cancel(self) -> None:
        self._pending = []

    def _outcome(self, attempt: Attempt, started: float, finished: float) -> AttemptOutcome:
        image = attempt.cell.hardware.image or ""
        if image not in self._index:
            failure = ResultError(category="infrastructure", reason="ImageNotFound",
                                  message=f"image {image!r} is not a commit of the scenario")
            return AttemptOutcome(attempt, None, failure, None, None, started, finished)
        index = self._index[image]
        drawn = draw_run(self.scenario, index, self._rng)
        if isinstance(drawn, str):
            reason, message = FAILURE_REASONS[drawn]
            failure = ResultError(category="infrastructure", reason=reason, message=message)
            return AttemptOutcome(attempt, None, failure, None, 1, started, finished)
        provenance = Provenance(fleet_version=fleet_version(), engine="sim",
                                engine_version=self.scenario_name, vllm_commit=self.scenario.shas()[index],
                                image=image)
        result = RunResult(cell=attempt.cell, status="ok", provenance=provenance, metrics=drawn)
        return AttemptOutcome(attempt, result, None, None, 0, started, finished)
