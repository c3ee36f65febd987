"""The sim backend answers attempts from a scenario through the Backend port, on a virtual clock."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fleet.backends.base import Attempt
from fleet.backends.git import with_image
from fleet.backends.sim.backend import SimBackend
from fleet.backends.sim.scenario import Scenario, draw_run, load_scenario
from fleet.errors import ConfigError
from tests.builders import make_cell

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bisect" / "ngram_al_drop.yaml"


def scenario(**changes: object) -> Scenario:
    data: dict[str, object] = {
        "commits": 10,
        "metrics": {"acceptance_length": {
            "segments": [{"start": 0, "mean": 2.0}, {"start": 6, "mean": 1.8}]}},
        "broken": [{"first": 3, "last": 3, "reason": "no-image"}],
        "run_minutes": 30,
    }
    data.update(changes)
    return Scenario.model_validate(data)


def test_each_commit_gets_its_segments_value_and_broken_commits_fail() -> None:
    sim = SimBackend(scenario(), image_template="sim:{sha}")
    cell = make_cell()
    attempts = [Attempt(with_image(cell, "sim:{sha}", sha), 1, "r") for sha in ("c0000", "c0003", "c0007")]
    sim.submit(attempts)
    outcomes = list(sim.outcomes())
    assert outcomes[0].result is not None and outcomes[0].result.metrics["acceptance_length"] == 2.0
    assert outcomes[1].error is not None and outcomes[1].error.reason == "ImageNotFound"
    assert outcomes[2].result is not None and outcomes[2].result.metrics["acceptance_length"] == 1.8
    assert outcomes[2].result.provenance.engine == "sim"
    assert {o.finished_at - o.started_at for o in outcomes} == {1800.0}
    assert sim.clock == 1800.0


def test_the_flaky_rate_is_honoured() -> None:
    model = scenario(flaky_rate=0.25, broken=[])
    rng = random.Random(0)
    draws = [draw_run(model, 1, rng) for _ in range(4000)]
    assert 0.22 < sum(d == "flaky" for d in draws) / len(draws) < 0.28


def test_the_fixture_scenario_loads() -> None:
    loaded = load_scenario(FIXTURE)
    assert len(loaded.shas()) == 200 and loaded.broken_reason(62) == "no-image"


def test_a_broken_range_outside_the_commits_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("commits: 5\nmetrics: {acceptance_length: {segments: [{start: 0, mean: 2}]}}\n"
                    "broken: [{first: 3, last: 9}]\n")
    with pytest.raises(ConfigError, match="outside"):
        load_scenario(path)
