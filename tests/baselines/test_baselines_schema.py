"""Recorded baseline files validate against the exported JSON Schema, and carry what the judge needs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from fleet.baselines.record import record_baseline
from fleet.baselines.store import baseline_json_schema, baseline_to_json, load_baseline
from fleet.model import Hardware, MatchSummary, RunResult, SpecCounters
from tests.builders import make_cell, ok_result

REPO = Path(__file__).resolve().parents[2]


def replicate(speedup: float) -> RunResult:
    counters = SpecCounters(
        num_drafts=100, num_draft_tokens=400, num_accepted_tokens=90, accepted_per_position=[40, 25, 15, 10]
    )
    metrics = {"acceptance_length": 1.9, "acceptance_rate": 0.225, "match_rate": 0.9, "speedup": speedup}
    # A GPU pool: the cpu pool baselines no latency-class metric such as speedup.
    cell = make_cell().model_copy(update={"hardware": Hardware(name="h200", vendor="nvidia")})
    return ok_result(cell).model_copy(
        update={
            "metrics": metrics,
            "counters": counters,
            "match": MatchSummary(num_prompts=20, exact_token_matches=18),
        }
    )


def test_a_recorded_baseline_validates_against_the_exported_schema() -> None:
    baseline = record_baseline(
        [replicate(s) for s in (1.0, 1.1, 0.9, 1.05, 0.95)], command="fleet baseline record"
    )
    jsonschema.validate(json.loads(baseline_to_json(baseline)), baseline_json_schema())


def test_recorded_count_metrics_say_how_many_events_one_run_counts() -> None:
    baseline = record_baseline([replicate(1.0), replicate(1.1)], command="c")
    trials = {name: entry.trials for name, entry in baseline.baselines.items()}
    assert trials == {"acceptance_length": 100, "acceptance_rate": 400, "match_rate": 20, "speedup": None}


def test_every_committed_baseline_validates_against_the_schema_and_loads() -> None:
    files = sorted((REPO / "baselines").glob("*/*.json"))
    assert files
    for path in files:
        jsonschema.validate(json.loads(path.read_text()), baseline_json_schema())
        load_baseline(path)
