"""The vLLM engine end to end where no GPU is needed: results from real H200 child output, skips, crashes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet.model import Cell, RunResult
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.suite.engines.base import EngineConfigError
from fleet.suite.engines.vllm import VllmEngine
from fleet.suite.engines.vllm_config import cache_root
from fleet.suite.engines.vllm_job import child_job
from fleet.suite.engines.vllm_launch import run_child
from fleet.suite.engines.vllm_results import build_engine_run
from fleet.suite.prompts import load_prompts
from fleet.suite.runner import run_cell_file, run_suite

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vllm"
JOBS = Path(__file__).resolve().parents[3] / "jobs"
VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def fixture(name: str) -> tuple[dict[str, Any], str]:
    result = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return result, (FIXTURES / f"{name}.log").read_text(encoding="utf-8")


def h200_cell(variant: str) -> Cell:
    cells = expand(load_tier(JOBS, "h200"), load_catalog(JOBS), tier_path="jobs/h200.yaml")
    return next(cell for cell in cells if cell.variant.name == variant)


def engine_with_probed_capabilities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    cell: Cell) -> VllmEngine:
    """An engine whose compile-cache root already holds the capabilities probed on the H200."""
    monkeypatch.setenv("FLEET_VLLM_CACHE_ROOT", str(tmp_path / "cache"))
    engine = VllmEngine()
    folder = Path(cache_root(str(tmp_path / "cache"), engine.version, cell.hardware.name))
    folder.mkdir(parents=True)
    (folder / "fleet-capabilities.json").write_text((FIXTURES / "capabilities-0.26.0.json").read_text())
    return engine


def test_speculative_run_keeps_vllms_own_counters_beside_the_suites_when_built_from_a_real_run() -> None:
    result, log = fixture("draft_model-k4-speculative")
    run = build_engine_run(result, log, phase="speculative")
    assert run.counters is not None and run.engine_counters is not None
    assert run.engine_counters["vllm_reported"] == run.counters.model_dump()
    assert run.engine_counters["prometheus_delta"] == run.counters.model_dump()
    assert all(e["name"].startswith("vllm:spec_decode") for e in run.engine_counters["snapshot_after"])
    assert run.provenance["attention_backend"] == "FLASH_ATTN"
    assert run.provenance["async_scheduling"] is False and run.provenance["model_runner"] == "v1"


def test_measurement_has_batch_outputs_and_single_request_timings_when_built_from_a_real_run() -> None:
    result, log = fixture("ngram-k4-speculative")
    measurement = build_engine_run(result, log, phase="speculative").measurement
    assert len(measurement.token_ids) == len(result["batch"]["requests"])
    assert all(len(ids) == 128 for ids in measurement.token_ids)
    assert [t.prompt_index for t in measurement.timings] == [s["index"] for s in result["singles"]]
    assert measurement.timings[0].e2e_s == result["singles"][0]["client_e2e_s"]
    assert measurement.engine_start_s == result["engine_start_s"]


def test_reference_run_reports_its_async_scheduling_for_the_comparison_when_built_from_a_real_run() -> None:
    result, log = fixture("tiny-stdlib-reference")
    run = build_engine_run(result, log, phase="reference")
    assert run.counters is None and run.engine_counters is None
    assert run.provenance["async_scheduling_reference"] is True
    assert run.provenance["reference_engine"]["model_runner"] == "v2"
    assert "extra" not in run.provenance  # the speculative run's extra is laid over it by the runner


def test_job_resolves_bundled_models_and_draft_when_built_for_the_synthetic_cell() -> None:
    cell = h200_cell("draft_model-synthetic-k4")
    job = child_job(cell, load_prompts(cell.workload), "speculative")
    assert Path(job["model"], "config.json").is_file()
    assert Path(job["speculative_config"]["model"], "config.json").is_file()
    assert job["llm_args"]["load_format"] == "dummy" and job["llm_args"]["disable_log_stats"] is False
    assert (len(job["prompts"]), len(job["warmup_prompts"]), job["single_prompts"]) == (50, 8, 16)
    assert child_job(cell, job["prompts"], "reference")["speculative_config"] is None


def test_missing_local_draft_is_a_config_error_when_the_path_does_not_exist() -> None:
    cell = h200_cell("draft_model-k4").model_copy(update={"draft_model": "/nonexistent/draft-model"})
    with pytest.raises(EngineConfigError):
        child_job(cell, ["a prompt"], "speculative")


def test_cell_is_skipped_with_reason_when_this_vllm_lacks_the_method(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cell = h200_cell("ngram-k4")
    suffix = cell.variant.model_copy(update={"method": "suffix", "options": {}})
    cell = cell.model_copy(update={"variant": suffix})
    engine = engine_with_probed_capabilities(tmp_path, monkeypatch, cell)
    result = run_suite(cell, engine=engine, reference_cache=None)
    assert result.status == "skipped"
    assert result.skip_reason is not None and "arctic_inference" in result.skip_reason
    assert engine.launches == []  # decided from the capabilities, no engine started


@pytest.mark.skipif(VLLM_INSTALLED, reason="needs an environment where the vllm child cannot import vllm")
def test_crashed_engine_is_an_infrastructure_error_with_its_log_tail_when_the_child_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cell = h200_cell("ngram-k4")
    engine_with_probed_capabilities(tmp_path, monkeypatch, cell)
    cell_path = tmp_path / "cell.json"
    cell_path.write_text(cell.model_dump_json(), encoding="utf-8")
    code = run_cell_file(cell_path, tmp_path / "result.json", None)
    result = RunResult.model_validate_json((tmp_path / "result.json").read_text())
    assert code == 3 and result.status == "error" and result.error is not None
    assert (result.error.category, result.error.reason) == ("infrastructure", "engine_start_failed")
    assert "No module named 'vllm'" in result.error.log_tail


def test_child_is_killed_and_reported_as_timed_out_when_it_outlives_its_timeout(tmp_path: Path) -> None:
    outcome = run_child([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(60)"],
                        workdir=tmp_path, result_path=tmp_path / "result.json", env={}, timeout_s=0.5)
    assert outcome.timed_out and outcome.result is None
    assert "started" in outcome.log_text and outcome.wall_s < 30


def test_the_speculative_run_carries_the_prefix_cache_delta_and_the_reference_run_none() -> None:
    result, log = fixture("ngram-k4-speculative")
    reference, reference_log = fixture("tiny-stdlib-reference")

    run = build_engine_run(result, log, phase="speculative")

    assert run.prefix_cache is not None and run.prefix_cache.queries == 66 * 200
    assert run.engine_counters is not None
    assert {e["name"] for e in run.engine_counters["prefix_cache_after"]} == {"vllm:prefix_cache_queries",
                                                                              "vllm:prefix_cache_hits"}
    assert build_engine_run(reference, reference_log, phase="reference").prefix_cache is None


def test_the_job_of_a_differential_h200_cell_sets_its_axes_for_the_speculative_run_only() -> None:
    cells = expand(load_tier(JOBS, "h200"), load_catalog(JOBS), tier_path="jobs/h200.yaml")
    cell = next(c for c in cells if c.execution == {"cudagraph": "piecewise", "prefix_caching": "on"})

    speculative = child_job(cell, load_prompts(cell.workload), "speculative")
    reference = child_job(cell, speculative["prompts"], "reference")

    assert speculative["llm_args"]["compilation_config"] == {"cudagraph_mode": "PIECEWISE"}
    assert speculative["llm_args"]["enable_prefix_caching"] is True
    assert "enable_prefix_caching" not in reference["llm_args"]
    assert len(speculative["warmup_prompts"]) == 8
