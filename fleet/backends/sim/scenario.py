"""The scenario a rehearsal runs against: per-commit metric distributions, broken commits, flaky runs.

A bisection over real GPUs costs hours; rehearsing it against a scenario costs nothing and says how many
rounds, runs and GPU-hours it will take and how often it finds the right commit. The file (YAML or
JSON) is validated here at the edge; drawing a value is a pure function of the scenario and a random
generator, so the benchmark can draw millions without a backend around it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from fleet.errors import ConfigError
from fleet.model._base import Strict
from fleet.plan.catalog import yaml_error

BrokenReason = Literal["no-image", "build-failure", "engine-crash"]


class Noise(Strict):
    """Run-to-run noise, relative to the mean: normal with `relative_sd`, or a smoothed bootstrap of
    recorded `residuals` (value / mean - 1 of real repeated runs) with Gaussian jitter `jitter_sd`."""

    relative_sd: float = Field(default=0.0, ge=0)
    residuals: list[float] = Field(default_factory=list)
    jitter_sd: float = Field(default=0.0, ge=0)

    def draw(self, rng: random.Random) -> float:
        if self.residuals:
            return rng.choice(self.residuals) + (rng.gauss(0.0, self.jitter_sd) if self.jitter_sd else 0.0)
        return rng.gauss(0.0, self.relative_sd) if self.relative_sd else 0.0


class Segment(Strict):
    """From commit index `start` on (until the next segment), the metric is mean x (1 + noise)."""

    start: int = Field(ge=0)
    mean: float


class MetricScenario(Strict):
    segments: list[Segment] = Field(min_length=1)
    noise: Noise = Field(default_factory=Noise)

    @model_validator(mode="after")
    def _ordered(self) -> MetricScenario:
        starts = [s.start for s in self.segments]
        if starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError("segments must start at 0 and be in increasing order of start")
        return self

    def mean_at(self, index: int) -> float:
        return [s.mean for s in self.segments if s.start <= index][-1]


class BrokenRange(Strict):
    first: int = Field(ge=0)
    last: int = Field(ge=0)
    reason: BrokenReason = "build-failure"


class Scenario(Strict):
    description: str = ""
    commits: list[str] | int = Field(description="commit SHAs oldest first, or a count (names c0000, ...)")
    metrics: dict[str, MetricScenario] = Field(min_length=1)
    broken: list[BrokenRange] = Field(default_factory=list)
    flaky_rate: float = Field(default=0.0, ge=0, lt=1)
    run_minutes: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _in_range(self) -> Scenario:
        size = len(self.shas())
        if size < 2:
            raise ValueError("a scenario needs at least two commits")
        for item in self.broken:
            if not item.first <= item.last < size:
                raise ValueError(f"broken range {item.first}..{item.last} is outside 0..{size - 1}")
        for name, metric in self.metrics.items():
            if metric.segments[-1].start >= size:
                raise ValueError(f"metrics.{name}: a segment starts after the last commit")
        return self

    def shas(self) -> list[str]:
        if isinstance(self.commits, int):
            width = max(4, len(str(self.commits - 1)))
            return [f"c{i:0{width}d}" for i in range(self.commits)]
        return list(self.commits)

    def broken_reason(self, index: int) -> BrokenReason | None:
        for item in self.broken:
            if item.first <= index <= item.last:
                return item.reason
        return None


def draw_run(scenario: Scenario, index: int, rng: random.Random) -> dict[str, float] | str:
    """One run of commit `index`: its metrics, or the failure's reason ("flaky" or the broken reason)."""
    broken = scenario.broken_reason(index)
    if broken is not None:
        return broken
    if scenario.flaky_rate and rng.random() < scenario.flaky_rate:
        return "flaky"
    values = {}
    for name, metric in scenario.metrics.items():
        value = metric.mean_at(index) * (1.0 + metric.noise.draw(rng))
        values[name] = value if math.isfinite(value) else metric.mean_at(index)
    return values


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read the scenario: {err.strerror}", where=str(path),
                          fix="pass --scenario FILE (examples in tests/fixtures/bisect/)") from err
    except yaml.MarkedYAMLError as err:
        raise yaml_error(err, str(path)) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}".replace("\n", " "), where=str(path)) from err
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise ConfigError(f"{field}: {first['msg']}", where=str(path),
                          fix="see tests/fixtures/bisect/ for a valid scenario") from err
