"""`fleet judge` on malformed result and baseline files: one clear error line, exit 2, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main
from tests.builders import DELETE, edit, make_cell, ok_result

REPO = Path(__file__).resolve().parents[2]
BASELINE = Path("baselines/cpu/ngram-k4__tiny-stdlib-target.json")


def good_result() -> dict[str, Any]:
    return json.loads(ok_result(make_cell()).model_dump_json())


def good_baseline() -> dict[str, Any]:
    return json.loads((REPO / BASELINE).read_text())


def edited(document: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    change(document)
    return document


def setitem(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        edit(document, path, value)

    return change



RESULTS: list[tuple[str, bytes | None, str]] = [
    ("not_json", b"{not json", "Invalid JSON"),
    ("empty_file", b"", "Invalid JSON"),
    ("json_array", b"[]", "Input should be an object"),
    ("not_utf8", b"\xff\xfe\x00garbage", "(document)"),
    (
        "missing_cell",
        json.dumps(edited(good_result(), setitem("cell", DELETE))).encode(),
        "cell: Field required",
    ),
    (
        "unknown_field",
        json.dumps(edited(good_result(), setitem("colour", "red"))).encode(),
        "colour: Extra inputs",
    ),
    (
        "future_schema",
        json.dumps(edited(good_result(), setitem("schema_version", 2))).encode(),
        "schema_version",
    ),
    (
        "error_without_error",
        json.dumps(edited(good_result(), setitem("status", "error"))).encode(),
        "needs an 'error'",
    ),
    (
        "skip_without_reason",
        json.dumps(edited(good_result(), setitem("status", "skipped"))).encode(),
        "skip_reason",
    ),
    (
        "metric_not_number",
        json.dumps(edited(good_result(), setitem("metrics.acceptance_length", "high"))).encode(),
        "metrics.acceptance_length",
    ),
    (
        "accepted_over_drafted",
        json.dumps(
            edited(
                good_result(),
                setitem("counters", {"num_drafts": 10, "num_draft_tokens": 40, "num_accepted_tokens": 41}),
            )
        ).encode(),
        "exceeds num_draft_tokens",
    ),
    (
        "negative_counter",
        json.dumps(
            edited(
                good_result(),
                setitem("counters", {"num_drafts": -1, "num_draft_tokens": 40, "num_accepted_tokens": 4}),
            )
        ).encode(),
        "counters.num_drafts",
    ),
    ("missing_file", None, "cannot read result"),
]

BASELINES: list[tuple[str, Callable[[dict[str, Any]], None] | str, str]] = [
    ("baseline_not_json", "{", "not valid JSON"),
    ("baseline_values_disagree_with_n", setitem("baselines.acceptance_rate.n", 4), "n is 4 but 5 values"),
    ("baseline_empty_values", setitem("baselines.acceptance_rate.values", []), "at least one recorded run"),
    (
        "baseline_value_not_number",
        setitem("baselines.acceptance_rate.values", [0.26, "x", 0.26, 0.26, 0.26]),
        "baselines.acceptance_rate.values.1",
    ),
    ("baseline_nan_expected", "NAN_EXPECTED", "finite"),
    ("baseline_negative_std", setitem("baselines.acceptance_rate.std", -0.1),
     "baselines.acceptance_rate.std"),
    ("baseline_zero_trials", setitem("baselines.match_rate.trials", 0), "baselines.match_rate.trials"),
    ("baseline_unknown_metric_field", setitem("baselines.acceptance_rate.tolerence_pct", 5), "unknown field"),
    ("baseline_wrong_hardware", setitem("hardware", "h200"), "says hardware 'h200'"),
    ("baseline_no_metrics", setitem("baselines", {}), "at least 1 item"),
    ("baseline_not_object", "[1, 2]", "must be a JSON object"),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "baselines", tmp_path / "baselines")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_fleet(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def assert_one_line_exit_2(code: int, out: str, err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert out == ""
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(("case", "content", "needle"), RESULTS, ids=[c[0] for c in RESULTS])
def test_a_malformed_result_is_one_line_exit_2_nothing_written(
    workdir: Path, capsys: pytest.CaptureFixture[str], case: str, content: bytes | None, needle: str
) -> None:
    path = workdir / f"{case}.json"
    if content is not None:
        path.write_bytes(content)
    before = snapshot(workdir)
    code, out, err = run_fleet(capsys, "judge", str(path))
    assert_one_line_exit_2(code, out, err, needle)
    assert str(path) in err
    assert snapshot(workdir) == before


@pytest.mark.parametrize(("case", "change", "needle"), BASELINES, ids=[c[0] for c in BASELINES])
def test_a_malformed_baseline_is_one_line_exit_2_nothing_written(
    workdir: Path, capsys: pytest.CaptureFixture[str], case: str, change: Any, needle: str
) -> None:
    result = workdir / "result.json"
    result.write_text(json.dumps(good_result()))
    target = workdir / BASELINE
    if change == "NAN_EXPECTED":
        target.write_text(re.sub(r'"expected": [0-9.]+', '"expected": NaN', target.read_text(), count=1))
    elif isinstance(change, str):
        target.write_text(change)
    else:
        target.write_text(json.dumps(edited(good_baseline(), change)))
    before = snapshot(workdir)
    code, out, err = run_fleet(capsys, "judge", str(result))
    assert_one_line_exit_2(code, out, err, needle)
    assert str(BASELINE) in err
    assert snapshot(workdir) == before
    written = [p for p in workdir.rglob("*") if p.is_file() and p.suffix in (".txt", ".xml", ".md")]
    assert not written
