"""docs/baselines.md is generated from baselines/ and stays in step with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleet.baselines.store import load_baseline
from fleet.cli import main
from fleet.cli.docs_cmd import baselines_page

REPO = Path(__file__).resolve().parents[2]


def test_committed_baselines_page_matches_the_baselines_when_regenerated() -> None:
    page = baselines_page(REPO / "baselines")
    committed = (REPO / "docs" / "baselines.md").read_text(encoding="utf-8")
    assert page == committed, "docs/baselines.md is stale: run `fleet docs baselines`"


def test_page_shows_every_metric_expected_value_and_rfc_range_when_generated() -> None:
    page = baselines_page(REPO / "baselines")
    for path in sorted((REPO / "baselines").glob("*/*.json")):
        baseline = load_baseline(path)
        where = f"`baselines/{baseline.hardware}/{path.name}`"
        assert where in page
        # The rows of this file's section only: two files may hold one metric at one expected value.
        section = page[page.index(where):].split("\n### ")[0].splitlines()
        for name, metric in baseline.baselines.items():
            half = abs(metric.expected) * metric.tolerance_pct / 100
            prefix = f"| `{name}` | {metric.expected:.6g} |"
            row = next(line for line in section if line.startswith(prefix))
            assert f"{metric.expected - half:.6g} – {metric.expected + half:.6g}" in row


def test_check_exits_2_when_a_baseline_changed_after_the_page_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(REPO / "baselines", tmp_path / "baselines")
    monkeypatch.chdir(tmp_path)
    main(["docs", "baselines"])
    main(["docs", "baselines", "--check"])
    changed = tmp_path / "baselines" / "cpu" / "ngram-k4__tiny-stdlib-target.json"
    changed.write_text(changed.read_text().replace('"tolerance_pct": 5.0', '"tolerance_pct": 7.0', 1))
    with pytest.raises(SystemExit) as exit_info:
        main(["docs", "baselines", "--check"])
    assert exit_info.value.code == 2
    assert "out of date" in capsys.readouterr().err


def test_check_against_stdout_is_refused_rather_than_passed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["docs", "baselines", "--check", "--out", "-"])
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == "" and "--check" in captured.err
