"""fleet.report.html: static run, trends and index pages with inline SVG; nothing loaded from anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleet.baselines.store import baseline_path, save_baseline
from fleet.cli.history_cmds import report
from fleet.history.store import HistoryStore
from fleet.judge.trends import trends
from fleet.model import Baseline, MetricBaseline, model_slug
from fleet.plan.cost import account
from fleet.report.html import Band, render_run_page, render_trends_page, series_chart
from tests.history_builders import POSITIONS, gpu_cell, run_record, stepped_history

CELL = gpu_cell()


def baseline() -> Baseline:
    metrics = {name: MetricBaseline(expected=value, tolerance_pct=10) for name, value in POSITIONS.items()}
    metrics["acceptance_length"] = MetricBaseline(expected=2.1, tolerance_pct=5)
    return Baseline(variant=CELL.variant.name, model=CELL.model, hardware="h100", baselines=metrics,
                    last_updated="2026-11-01")


def write_site(tmp_path: Path) -> Path:
    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        for record in stepped_history():
            store.record_run(record)
    baselines = tmp_path / "baselines"
    save_baseline(baseline_path(baselines, "h100", CELL.variant.name, model_slug(CELL.model)), baseline())
    out = tmp_path / "site"
    result = CliRunner().invoke(report, ["--html", str(out), "--db", str(db), "--baselines", str(baselines),
                                         "--jobs", str(tmp_path / "no-jobs")])
    assert result.exit_code == 0, result.output
    return out


def test_report_writes_a_page_per_run_a_trends_page_and_an_index(tmp_path: Path) -> None:
    out = write_site(tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.html", "trends.html", *[f"run-nightly-{n:02d}.html" for n in range(16)]])
    index = (out / "index.html").read_text()
    assert index.count('href="run-nightly-') == 16


def test_trends_page_marks_the_planted_change_its_commits_and_the_baselines_rfc_range(tmp_path: Path) -> None:
    page = (write_site(tmp_path) / "trends.html").read_text()
    assert "regression" in page and "-8." in page
    assert "09ababababab → 10ababababab" in page  # the commits either side of the change
    assert "baseline RFC range 1.995 to 2.205" in page  # 2.1 +- 5 %


def test_run_page_has_verdicts_position_bars_with_baseline_and_cost(tmp_path: Path) -> None:
    page = (write_site(tmp_path) / "run-nightly-12.html").read_text()
    assert "Verdicts" in page and 'class="s FAIL"' in page
    assert "acceptance rate per draft position" in page
    assert page.count("<title>position ") == 3
    assert "baseline RFC range 0.558 to 0.682" in page  # pos 0: 0.62 +- 10 %
    assert "GPU time and cost" in page and "$3.00" in page  # 30 min on 2 GPUs at $3


def test_pages_load_nothing_from_anywhere_and_forbid_it(tmp_path: Path) -> None:
    records = stepped_history()
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        for record in records:
            store.record_run(record)
        points = store.series()
    for page in (render_trends_page(points, trends(points), {}),
                 render_run_page(records[0].report, records[0].results, {}, account(records[0].jobs, {}))):
        assert "Content-Security-Policy" in page and "default-src 'none'" in page
        assert "<script" not in page
        assert not re.search(r'(src|href)="(https?:)?//', page)


def test_text_from_documents_is_escaped() -> None:
    hostile = gpu_cell("x")
    record = run_record("<b>run</b>", [(hostile, {"speedup": 1.0})], at="<i>", commit="<script>")
    page = render_run_page(record.report, record.results, {})
    assert "<b>run</b>" not in page and "&lt;b&gt;run&lt;/b&gt;" in page


def test_chart_of_a_flat_series_still_has_a_vertical_range() -> None:
    svg = series_chart([1.0, 1.0, 1.0], ["a", "b", "c"], title="flat", band=Band(1.0, 0.9, 1.1))
    assert "nan" not in svg and svg.count("<circle") == 3


def test_a_run_not_in_the_history_is_a_config_error_before_any_page_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli import main

    db = tmp_path / "h.sqlite"
    with HistoryStore.open(db) as store:
        store.record_run(stepped_history(runs=2)[0])
    out = tmp_path / "site"
    with pytest.raises(SystemExit) as stop:
        main(["report", "--html", str(out), "--db", str(db), "--run", "nightly-99", "--jobs", str(tmp_path)])
    assert stop.value.code == 2 and "nightly-99" in capsys.readouterr().err
    assert not list(out.iterdir())


def test_an_error_cell_says_which_troubleshooting_entry_explains_it() -> None:
    from fleet.model import ResultError

    record = run_record("nightly-x", [(gpu_cell("x"), {"speedup": 1.0})], at="2026-11-29", commit="abc")
    error = ResultError(category="infrastructure", reason="GpuXid", message="Xid 79: fell off the bus")
    [cell] = record.report.cells
    failed = cell.model_copy(update={"status": "ERROR", "error": error, "metrics": []})
    page = render_run_page(record.report.model_copy(update={"cells": [failed]}), record.results, {})
    assert "docs/troubleshooting.md#GpuXid" in page
