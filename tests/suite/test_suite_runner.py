"""The suite for one cell: inputs (models, prompts), outcomes as documents, exit codes, reference reuse."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fleet.errors import ConfigError
from fleet.model import (
    Cell,
    Measurement,
    PrefixCacheCounters,
    RequestTiming,
    ResultError,
    RunResult,
    Workload,
)
from fleet.suite.engines import get_engine
from fleet.suite.engines.base import Engine, EngineFailure, EngineRun
from fleet.suite.model_refs import resolve_model
from fleet.suite.prompts import load_prompts, load_warmup_prompts
from fleet.suite.runner import run_cell_file, run_suite


def cell_document(method: str = "ngram", *, model: str = "bundled:tiny-stdlib/target",
                  num_prompts: int = 2, max_tokens: int = 8) -> dict[str, Any]:
    variant: dict[str, Any] = {"name": f"{method}-k4", "method": method, "num_speculative_tokens": 4}
    if method == "ngram":
        variant["options"] = {"prompt_lookup_min": 2, "prompt_lookup_max": 4}
    return {
        "tier": "test", "variant": variant, "model": model,
        "draft_model": "bundled:tiny-stdlib/draft" if method != "ngram" else None,
        "hardware": {"name": "cpu-local", "vendor": "cpu", "gpu_count": 0},
        "workload": {"num_prompts": num_prompts, "max_tokens": max_tokens, "warmup_prompts": 1},
        "engine": "reference",
    }


def write_cell(folder: Path, document: dict[str, Any], name: str = "cell.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def read_result(path: Path) -> RunResult:
    return RunResult.model_validate_json(path.read_text(encoding="utf-8"))


class FakeEngine:
    """An Engine at the port: answers from fixed token lists, or fails the way it is told to."""

    name = "reference"
    version = "fake-1"

    def __init__(self, failure: Exception | None = None,
                 prefix_cache: PrefixCacheCounters | None = None) -> None:
        self.failure = failure
        self.prefix_cache = prefix_cache
        self.calls: list[str] = []

    def unsupported_reason(self, cell: Cell) -> str | None:
        return None

    def _run(self, prompts: Sequence[str]) -> EngineRun:
        if self.failure is not None:
            raise self.failure
        timings = [RequestTiming(prompt_index=i, prompt_tokens=3, output_tokens=2, ttft_s=0.1, tpot_s=0.1,
                                 e2e_s=0.2) for i in range(len(prompts))]
        return EngineRun(measurement=Measurement(token_ids=[[1, 2]] * len(prompts), timings=timings))

    def run_reference(self, cell: Cell, prompts: Sequence[str]) -> EngineRun:
        self.calls.append("reference")
        run = self._run(prompts)
        return EngineRun(measurement=run.measurement, provenance={"async_scheduling_reference": True})

    def run_speculative(self, cell: Cell, prompts: Sequence[str], *, latency_only: bool = False) -> EngineRun:
        self.calls.append("speculative")
        run = self._run(prompts)
        return EngineRun(measurement=run.measurement, prefix_cache=self.prefix_cache)


def factory(engine: Engine) -> Any:
    return lambda name: engine


# -- inputs ------------------------------------------------------------------------------------------


def test_bundled_model_resolves_to_a_folder_inside_fleet() -> None:
    path = Path(resolve_model("bundled:tiny-stdlib/target"))
    assert path.is_absolute() and (path / "config.json").is_file()
    assert resolve_model("org/model") == "org/model"


def test_unknown_bundled_model_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="tiny-stdlib/nope"):
        resolve_model("bundled:tiny-stdlib/nope")


def test_measured_prompts_come_from_the_start_and_warmup_from_the_end() -> None:
    workload = Workload(num_prompts=3, warmup_prompts=2)
    everything = load_prompts(Workload(num_prompts=50))
    assert load_prompts(workload) == everything[:3]
    assert load_warmup_prompts(workload) == everything[-2:]


def test_jsonl_prompts_are_read_from_the_prompt_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b", "id": 2}\n', encoding="utf-8")
    assert load_prompts(Workload(prompts=str(path), num_prompts=2)) == ["a", "b"]


def test_malformed_jsonl_line_is_a_config_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.jsonl:2"):
        load_prompts(Workload(prompts=str(path), num_prompts=1))


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", "not json"])
def test_json_prompts_that_are_not_a_list_of_strings_are_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.json"):
        load_prompts(Workload(prompts=str(path), num_prompts=1))


def test_too_few_prompts_or_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('["a"]', encoding="utf-8")
    with pytest.raises(ConfigError, match="holds 1"):
        load_prompts(Workload(prompts=str(path), num_prompts=2))
    with pytest.raises(ConfigError, match=r"absent\.json"):
        load_prompts(Workload(prompts=str(tmp_path / "absent.json"), num_prompts=1))


# -- outcomes ----------------------------------------------------------------------------------------


def test_variant_the_engine_cannot_run_is_written_as_skipped(tmp_path: Path) -> None:
    # mtp: a method vLLM has and the reference engine does not (it runs ngram, draft_model, eagle3, eagle,
    # medusa).
    code = run_cell_file(write_cell(tmp_path, cell_document("mtp")), tmp_path / "r.json", None)
    result = read_result(tmp_path / "r.json")
    assert code == 0
    assert result.status == "skipped" and result.skip_reason and "mtp" in result.skip_reason


def test_missing_model_path_exits_2_with_a_config_error_result(tmp_path: Path) -> None:
    document = cell_document(model=str(tmp_path / "missing-model"))
    code = run_cell_file(write_cell(tmp_path, document), tmp_path / "r.json", None)
    result = read_result(tmp_path / "r.json")
    assert code == 2
    assert result.status == "error" and result.error is not None
    assert result.error.category == "config" and "missing-model" in result.error.message


def test_engine_crash_exits_3_with_the_traceback_tail(tmp_path: Path) -> None:
    engine = FakeEngine(failure=RuntimeError("CUDA went away"))
    code = run_cell_file(write_cell(tmp_path, cell_document()), tmp_path / "r.json", None,
                         engine_factory=factory(engine))
    result = read_result(tmp_path / "r.json")
    assert code == 3
    assert result.error is not None and result.error.category == "infrastructure"
    assert result.error.reason == "engine_crash"
    assert "RuntimeError: CUDA went away" in result.error.log_tail
    assert len(result.error.log_tail.splitlines()) <= 40


def test_engine_failure_keeps_its_reason_and_log(tmp_path: Path) -> None:
    engine = FakeEngine(failure=EngineFailure("engine died", reason="oom", log_tail="killed"))
    code = run_cell_file(write_cell(tmp_path, cell_document()), tmp_path / "r.json", None,
                         engine_factory=factory(engine))
    result = read_result(tmp_path / "r.json")
    assert code == 3
    assert result.error is not None and (result.error.reason, result.error.log_tail) == ("oom", "killed")


def test_invalid_cell_raises_config_error_and_writes_nothing(tmp_path: Path) -> None:
    document = cell_document()
    document["workload"]["num_prompts"] = 0
    with pytest.raises(ConfigError, match="num_prompts"):
        run_cell_file(write_cell(tmp_path, document), tmp_path / "r.json", None)
    assert not (tmp_path / "r.json").exists()


def test_unwritable_output_is_refused_before_the_engine_runs(tmp_path: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(ConfigError, match="cannot write"):
        run_cell_file(write_cell(tmp_path, cell_document()), tmp_path / "absent" / "r.json", None,
                      engine_factory=factory(engine))
    assert engine.calls == []


def test_fake_engine_results_carry_metrics_and_provenance(tmp_path: Path) -> None:
    engine = FakeEngine()
    result = run_suite(Cell.model_validate(cell_document()), engine=engine, reference_cache=None)
    assert result.status == "ok" and result.metrics["match_rate"] == 1.0
    assert result.metrics["speedup"] == pytest.approx(1.0)
    assert result.provenance.engine == "reference" and result.provenance.started_at


def test_reference_is_computed_once_and_reused_by_the_next_variant(tmp_path: Path) -> None:
    engine = FakeEngine()
    cache = tmp_path / "refs"
    ngram, draft = (Cell.model_validate(cell_document(method)) for method in ("ngram", "draft_model"))
    first = run_suite(ngram, engine=engine, reference_cache=cache)
    second = run_suite(draft, engine=engine, reference_cache=cache)
    assert engine.calls == ["reference", "speculative", "speculative"]
    assert first.reference is not None and first.reference.reused_from is None
    assert second.reference is not None and second.reference.reused_from is not None
    assert second.reference.token_ids == first.reference.token_ids
    assert len(list(cache.glob("*.json"))) == 1


def test_a_reused_reference_keeps_what_its_engine_said_about_itself(tmp_path: Path) -> None:
    engine = FakeEngine()
    cache = tmp_path / "refs"
    ngram, draft = (Cell.model_validate(cell_document(method)) for method in ("ngram", "draft_model"))
    run_suite(ngram, engine=engine, reference_cache=cache)
    second = run_suite(draft, engine=engine, reference_cache=cache)
    assert second.provenance.async_scheduling_reference is True


def test_reference_is_not_reused_across_different_workloads(tmp_path: Path) -> None:
    engine = FakeEngine()
    cache = tmp_path / "refs"
    run_suite(Cell.model_validate(cell_document(max_tokens=8)), engine=engine, reference_cache=cache)
    run_suite(Cell.model_validate(cell_document(max_tokens=9)), engine=engine, reference_cache=cache)
    assert engine.calls.count("reference") == 2


def test_real_cells_share_one_reference_and_report_lossless_speculation(tmp_path: Path) -> None:
    cache = tmp_path / "refs"
    engine = get_engine("reference")
    codes = [run_cell_file(write_cell(tmp_path, cell_document(m), f"{m}.json"), tmp_path / f"{m}.out.json",
                           cache, engine_factory=factory(engine))
             for m in ("ngram", "draft_model")]
    ngram, draft = read_result(tmp_path / "ngram.out.json"), read_result(tmp_path / "draft_model.out.json")
    assert codes == [0, 0]
    assert draft.reference is not None and draft.reference.reused_from is not None
    for result in (ngram, draft):
        assert result.status == "ok" and result.metrics["match_rate"] == 1.0
        assert result.metrics["acceptance_length"] >= 1.0 and "ttft_p50_ms" in result.metrics
        assert result.provenance.dtype == "float32" and result.provenance.cpu_threads
    assert draft.counters is not None and draft.counters.num_drafts > 0


# -- prefix caching (issue 30) -------------------------------------------------------------------------


def prefix_cell(value: str) -> dict[str, Any]:
    return {**cell_document(), "execution": {"prefix_caching": value}}


def test_a_prefix_caching_cell_whose_cache_never_hit_is_a_config_error_not_a_pass(tmp_path: Path) -> None:
    engine = FakeEngine(prefix_cache=PrefixCacheCounters(queries=400, hits=0))
    out = tmp_path / "r.json"

    code = run_cell_file(write_cell(tmp_path, prefix_cell("on")), out, None, engine_factory=factory(engine))

    result = read_result(out)
    assert code == 2 and result.status == "error" and result.error is not None
    assert result.error.reason == "PrefixCacheNotHit"
    assert "hit 0 of 400 prompt tokens" in result.error.message
    assert "shared-prefix" in result.error.message


def test_a_prefix_caching_cell_without_counters_is_an_error_too(tmp_path: Path) -> None:
    out = tmp_path / "r.json"

    code = run_cell_file(write_cell(tmp_path, prefix_cell("on")), out, None,
                         engine_factory=factory(FakeEngine(prefix_cache=None)))

    assert code == 2 and "no prefix-cache counters" in (read_result(out).error or ResultError(
        category="config", reason="", message="")).message


def test_a_prefix_caching_cell_that_hit_records_the_counters(tmp_path: Path) -> None:
    engine = FakeEngine(prefix_cache=PrefixCacheCounters(queries=400, hits=320))

    result = run_suite(Cell.model_validate(prefix_cell("on")), engine=engine, reference_cache=None)

    assert result.status == "ok" and result.prefix_cache is not None
    assert result.prefix_cache.hit_rate == pytest.approx(0.8)


def test_no_hits_are_fine_when_prefix_caching_is_off(tmp_path: Path) -> None:
    engine = FakeEngine(prefix_cache=PrefixCacheCounters(queries=400, hits=0))

    result = run_suite(Cell.model_validate(prefix_cell("off")), engine=engine, reference_cache=None)

    assert result.status == "ok"


def test_cells_that_differ_only_in_execution_share_one_reference_run(tmp_path: Path) -> None:
    engine = FakeEngine(prefix_cache=PrefixCacheCounters(queries=400, hits=100))
    cache = tmp_path / "refs"
    for value in ("off", "on"):
        run_suite(Cell.model_validate(prefix_cell(value)), engine=engine, reference_cache=cache)

    assert engine.calls == ["reference", "speculative", "speculative"]
