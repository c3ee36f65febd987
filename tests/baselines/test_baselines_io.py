"""Baseline files: paths, loading (one clear line per defect), path agreement, atomic saving, schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from fleet.baselines.store import (
    baseline_json_schema,
    baseline_path,
    baseline_to_json,
    find_baseline,
    load_baseline,
    result_json_schema,
    save_baseline,
)
from fleet.errors import ConfigError
from fleet.model import Baseline, Cell, Hardware, Provenance, RunResult, Variant, Workload
from tests.builders import DELETE, edit

# The RFC #28135 benchmark example, verbatim (it spells hardware `gpu_type`); the file is
# tests/data/rfc28135/benchmark_gpu_type.json, with the RFC's other spellings beside it.
RFC_BASELINE: dict[str, Any] = {
    "variant": "eagle3",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "draft_model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
    "gpu_type": "L4",
    "dataset": "sharegpt",
    "baselines": {
        "ttft_p50_ms": {"expected": 44.0, "tolerance_pct": 15},
        "tpot_p50_ms": {"expected": 12.3, "tolerance_pct": 15},
        "acceptance_rate": {"expected": 0.73, "tolerance_pct": 10},
        "speedup": {"expected": 2.1, "tolerance_pct": 15},
    },
    "last_updated": "2025-11-05",
    "baseline_commit": "3481e4074",
    "notes": "Baseline from 10 benchmark runs on L4 GPU",
}


def make_cell(hardware: str = "l4") -> Cell:
    return Cell(
        tier="smoke",
        variant=Variant(name="eagle3", method="eagle3", num_speculative_tokens=3),
        model="meta-llama/Llama-3.1-8B-Instruct",
        hardware=Hardware(name=hardware, vendor="nvidia"),
        workload=Workload(),
        engine="vllm",
    )


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def rfc_with(**changes: Any) -> dict[str, Any]:
    """The RFC's example with changes given as key paths (`baselines__speedup__tolerance_pct=0`)."""
    document: dict[str, Any] = json.loads(json.dumps(RFC_BASELINE))
    for dotted, value in changes.items():
        edit(document, dotted, value, sep="__")
    return document




def test_baseline_path_is_hardware_folder_and_variant_model_file() -> None:
    assert baseline_path(Path("baselines"), "l4", "eagle3", "llama-3.1-8b-instruct") == Path(
        "baselines/l4/eagle3__llama-3.1-8b-instruct.json"
    )


def test_rfc_example_loads_as_is_when_it_uses_gpu_type(tmp_path: Path) -> None:
    baseline = load_baseline(write(tmp_path / "x.json", RFC_BASELINE))
    assert baseline.hardware == "l4"
    assert baseline.baselines["speedup"].expected == 2.1


MALFORMED: list[tuple[str, Any, str]] = [
    ("not_json", '{"variant": "eagle3",}', "not valid JSON: Expecting property name enclosed in double"),
    ("not_an_object", "[1, 2]", "(top level): a baseline must be a JSON object, not list"),
    (
        "missing_field",
        rfc_with(baselines__speedup__expected=DELETE),
        "baselines.speedup.expected: Field required",
    ),
    ("missing_hardware", rfc_with(gpu_type=DELETE), "hardware (gpu_type): Field required"),
    ("missing_metrics", rfc_with(baselines=DELETE), "baselines (metrics): Field required"),
    (
        "negative_tolerance",
        rfc_with(baselines__acceptance_rate__tolerance_pct=-5),
        "baselines.acceptance_rate.tolerance_pct: Input should be greater than 0",
    ),
    (
        "zero_tolerance",
        rfc_with(baselines__speedup__tolerance_pct=0),
        "baselines.speedup.tolerance_pct: Input should be greater than 0",
    ),
    ("unknown_field", rfc_with(tolerance=10), "tolerance: unknown field (a typo?)"),
    (
        "unknown_metric_field",
        rfc_with(baselines__speedup__tolerence_pct=10),
        "baselines.speedup.tolerence_pct: unknown field (a typo?)",
    ),
    (
        "wrong_type",
        rfc_with(baselines__ttft_p50_ms__expected="fast"),
        "baselines.ttft_p50_ms.expected: Input should be a valid number",
    ),
    ("empty_baselines", rfc_with(baselines={}), "baselines: Dictionary should have at least 1 item"),
    ("metric_not_object", rfc_with(baselines__speedup=2.1), "baselines.speedup: Input should be a valid"),
]


@pytest.mark.parametrize(("case", "document", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_baseline_is_one_line_naming_file_and_field(
    tmp_path: Path, case: str, document: Any, message: str
) -> None:
    path = write(tmp_path / "baselines" / "l4" / f"{case}.json", document)
    with pytest.raises(ConfigError) as caught:
        load_baseline(path)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"config error: {path}: ")
    assert message in line
    assert caught.value.exit_code == 2


def test_several_defects_are_counted_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.json", rfc_with(variant=DELETE, model=DELETE, notes=3))
    with pytest.raises(ConfigError, match=r"variant: Field required \(and 2 more: model, notes\)"):
        load_baseline(path)


def test_missing_file_is_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x\.json: baseline file does not exist"):
        load_baseline(tmp_path / "x.json")


def test_find_baseline_returns_none_and_path_when_not_recorded(tmp_path: Path) -> None:
    baseline, path = find_baseline(tmp_path, make_cell())
    assert baseline is None
    assert path == tmp_path / "l4" / "eagle3__llama-3.1-8b-instruct.json"


def test_find_baseline_loads_when_path_agrees(tmp_path: Path) -> None:
    write(tmp_path / "l4" / "eagle3__llama-3.1-8b-instruct.json", RFC_BASELINE)
    baseline, _ = find_baseline(tmp_path, make_cell())
    assert baseline is not None and baseline.baseline_commit == "3481e4074"


@pytest.mark.parametrize(
    ("folder", "file", "message"),
    [
        ("a100", "eagle3__llama-3.1-8b-instruct.json", "hardware (gpu_type): says hardware 'l4' but"),
        ("l4", "eagle__llama-3.1-8b-instruct.json", "variant: says variant 'eagle3' but its path is for"),
        ("l4", "eagle__llama-3.1-8b-instruct.json", "next: move it to"),
    ],
)
def test_find_baseline_refuses_when_fields_disagree_with_path(
    tmp_path: Path, folder: str, file: str, message: str
) -> None:
    path = write(tmp_path / folder / file, RFC_BASELINE)
    cell = make_cell(folder).model_copy(
        update={"variant": Variant(name=file.split("__")[0], method="eagle", num_speculative_tokens=3)}
    )
    with pytest.raises(ConfigError) as caught:
        find_baseline(tmp_path, cell)
    assert str(caught.value).startswith(f"config error: {path}: ")
    assert message in str(caught.value)


def test_find_baseline_refuses_when_model_disagrees_with_path(tmp_path: Path) -> None:
    write(tmp_path / "l4" / "eagle3__llama-3.1-8b-instruct.json", rfc_with(model="Qwen/Qwen3-8B"))
    with pytest.raises(ConfigError, match="model: says model 'Qwen/Qwen3-8B'"):
        find_baseline(tmp_path, make_cell())


def test_saved_baseline_round_trips_with_sorted_metrics_and_newline(tmp_path: Path) -> None:
    original = Baseline.model_validate(RFC_BASELINE)
    path = tmp_path / "new" / "l4" / "eagle3__llama-3.1-8b-instruct.json"
    save_baseline(path, original)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "variant": "eagle3"')
    assert list(json.loads(text)["baselines"]) == ["acceptance_rate", "speedup", "tpot_p50_ms", "ttft_p50_ms"]
    assert load_baseline(path) == original
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_failed_save_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    # A directory in the way makes the final rename fail after the temporary file was written.
    blocker = tmp_path / "b.json"
    write(blocker / "keep.txt", "kept")
    with pytest.raises(OSError):
        save_baseline(blocker, Baseline.model_validate(RFC_BASELINE))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
    assert (blocker / "keep.txt").read_text(encoding="utf-8") == "kept"


def test_baseline_schema_accepts_rfc_file_and_fleet_file() -> None:
    schema = baseline_json_schema()
    jsonschema.validate(RFC_BASELINE, schema)
    jsonschema.validate(json.loads(baseline_to_json(Baseline.model_validate(RFC_BASELINE))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rfc_with(gpu_type=DELETE), schema)


def test_result_schema_accepts_a_written_result_document() -> None:
    result = RunResult(
        cell=make_cell(),
        status="skipped",
        skip_reason="eagle3 unavailable",
        provenance=Provenance(fleet_version="0.1.0", engine="vllm"),
    )
    document = json.loads(result.model_dump_json())
    jsonschema.validate(document, result_json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"bogus": 1}, result_json_schema())
