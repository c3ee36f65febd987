"""The RFC #28135's own baseline spellings load as they are, judge, and are written back in fleet's.

The fixtures are in tests/data/rfc28135/ (README there: which are verbatim, which reconstructed): the
benchmark example (`gpu_type`), Appendix B's (`baselines`, no `last_updated`) and section 4's (`metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from fleet.baselines.store import baseline_json_schema, baseline_to_json, find_baseline, load_baseline
from fleet.errors import ConfigError
from fleet.judge import judge_cell, summarize
from fleet.model import Baseline, Cell, Hardware, Provenance, RunResult, Variant, Workload
from fleet.report import render_text

RFC = Path(__file__).resolve().parents[1] / "data" / "rfc28135"
SPELLINGS = ["benchmark_gpu_type.json", "appendix_b_baselines.json", "section4_metrics.json"]


def document(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RFC / name).read_text(encoding="utf-8"))
    return data


def rfc_cell() -> Cell:
    return Cell(tier="smoke", variant=Variant(name="eagle3", method="eagle3", num_speculative_tokens=3),
                model="meta-llama/Llama-3.1-8B-Instruct", draft_model="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
                hardware=Hardware(name="l4", vendor="nvidia"), workload=Workload(), engine="vllm")


def result_at(metrics: dict[str, float]) -> RunResult:
    return RunResult(cell=rfc_cell(), status="ok", metrics=metrics,
                     provenance=Provenance(fleet_version="0.1.0", engine="vllm"))


@pytest.mark.parametrize("name", SPELLINGS)
def test_each_rfc_spelling_is_found_for_its_cell_as_written(tmp_path: Path, name: str) -> None:
    path = tmp_path / "l4" / "eagle3__llama-3.1-8b-instruct.json"
    path.parent.mkdir()
    path.write_text((RFC / name).read_text(encoding="utf-8"), encoding="utf-8")
    baseline, found = find_baseline(tmp_path, rfc_cell())
    assert baseline is not None and found == path
    metrics = document(name).get("baselines") or document(name)["metrics"]
    assert {n: (m.expected, m.tolerance_pct) for n, m in baseline.baselines.items()} == {
        n: (m["expected"], m["tolerance_pct"]) for n, m in metrics.items()}
    assert baseline.hardware == "l4"


@pytest.mark.parametrize("name", SPELLINGS)
def test_each_rfc_spelling_validates_against_the_published_schema(name: str) -> None:
    jsonschema.validate(document(name), baseline_json_schema())


@pytest.mark.parametrize("name", SPELLINGS)
def test_each_rfc_spelling_judges_its_expected_values_as_passing_by_the_rfc_rule(name: str) -> None:
    baseline = load_baseline(RFC / name)
    result = result_at({n: m.expected for n, m in baseline.baselines.items()})
    verdict = judge_cell(result, baseline, baseline_path=str(RFC / name), result_path=None, attempts=1,
                         error=None)
    assert verdict.status == "PASS"
    assert all(m.rule.startswith("rfc28135") for m in verdict.metrics)


def test_a_metrics_file_is_written_back_in_fleets_spelling_with_the_same_numbers() -> None:
    baseline = load_baseline(RFC / "section4_metrics.json")
    written = json.loads(baseline_to_json(baseline))
    assert "metrics" not in written and "gpu_type" not in written
    assert written["baselines"] == document("section4_metrics.json")["metrics"]
    assert Baseline.model_validate(written) == baseline


def test_a_file_that_says_both_baselines_and_metrics_is_refused(tmp_path: Path) -> None:
    both = document("section4_metrics.json") | {"baselines": document("section4_metrics.json")["metrics"]}
    path = tmp_path / "both.json"
    path.write_text(json.dumps(both), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown field"):
        load_baseline(path)


def test_a_failure_against_a_baseline_without_last_updated_says_so() -> None:
    baseline = load_baseline(RFC / "appendix_b_baselines.json")
    assert baseline.last_updated is None
    result = result_at({n: m.expected for n, m in baseline.baselines.items()} | {"acceptance_rate": 0.5})
    verdict = judge_cell(result, baseline, baseline_path="eagle3_llama3.1_8b.json", result_path=None,
                         attempts=1, error=None)
    report = summarize([verdict], run_id="r", tier="smoke", backend="kube", started_at="s", finished_at="f")
    text = render_text(report, {}, {verdict.cell_id: baseline})
    assert "Last updated: unknown" in text.splitlines()
