"""The commands a report's "Action Required" prints are commands that work, run as printed."""

from __future__ import annotations

import json
import math
import shlex
import shutil
from pathlib import Path

import pytest

from fleet.cli import cli
from tests.conftest import Fleet

REPO = Path(__file__).resolve().parents[2]


def _planted_failure(source: Path, path: Path) -> Path:
    """A recorded run with acceptance length 13 % down (counters scaled as a real drop would)."""
    document = json.loads(source.read_text())
    counters = document["counters"]
    drafts, accepted = counters["num_drafts"], counters["accepted_per_position"]
    length = 1.0 + sum(accepted) / drafts
    factor = (length * 0.87 - 1.0) * drafts / sum(accepted)
    scaled = [math.floor(count * factor) for count in accepted]
    counters["accepted_per_position"], counters["num_accepted_tokens"] = scaled, sum(scaled)
    metrics = document["metrics"]
    metrics["acceptance_length"] = 1.0 + sum(scaled) / drafts
    metrics["acceptance_rate"] = sum(scaled) / counters["num_draft_tokens"]
    for index, count in enumerate(scaled):
        metrics[f"acceptance_rate_pos_{index}"] = count / drafts
    path.write_text(json.dumps(document))
    return path


def _suggested(report: str, verb: str) -> list[str]:
    lines = [line.strip() for line in report.splitlines() if line.strip().startswith(f"fleet {verb}")]
    assert lines, report
    return shlex.split(lines[0])[1:]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    shutil.copytree(REPO / "baselines", tmp_path / "baselines")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_fail_of_the_reference_engine_suggests_no_bisect_of_a_non_commit(workdir: Path,
                                                                           fleet: Fleet) -> None:
    result = _planted_failure(REPO / "evidence/cpu/r1/draft_model-k4__tiny-stdlib-target__cpu.json",
                              workdir / "result.json")
    code, out, _ = fleet("judge", str(result))
    assert code == 1, out
    assert "fleet bisect" not in out and "reference 0.1.0 --cell" not in out
    assert "not a vLLM build" in out


def test_the_bisect_command_of_a_vllm_fail_parses_once_its_placeholders_are_filled(workdir: Path,
                                                                                   fleet: Fleet) -> None:
    result = _planted_failure(REPO / "evidence/h200/series/s1/draft_model-k4__tiny-stdlib-target__h200.json",
                              workdir / "result.json")
    code, out, _ = fleet("judge", str(result))
    assert code == 1, out
    argv = _suggested(out, "bisect")
    assert argv[:1] == ["bisect"] and "--repo" in argv
    assert argv[argv.index("--metric") + 1] == "acceptance_length"
    filled = [{"GOOD_SHA": "a" * 40, "VLLM_CLONE": str(workdir)}.get(arg, arg) for arg in argv[1:]]
    with cli.commands["bisect"].make_context("bisect", filled) as context:  # a usage error raises here
        assert context.params["bad"] != "GOOD_SHA"

