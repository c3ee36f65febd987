"""Differential verdicts appear in every report format, naming the axis value and the figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fleet.judge.verdicts import summarize
from fleet.model import RunReport
from fleet.report import render
from fleet.report.html import render_run_page
from tests.builders import differential_report

NAMED = "acceptance length 1.02 with prefix_caching=on vs 2.2 with prefix_caching=off"


def test_the_report_fails_on_a_divergence_and_keeps_the_same_pair() -> None:
    report = differential_report()
    assert [d.status for d in report.differentials] == ["DIVERGES", "SAME"]
    assert (report.status, report.exit_code) == ("FAIL", 1)


def test_text_names_the_diverging_axis_value_and_counts_the_pairs() -> None:
    text = render(differential_report(), "text")
    assert NAMED in text
    assert "2 differential pairs: 1 same, 1 diverging" in text
    assert "Pair: ngram-k4 on bundled:tiny-stdlib/target (cpu), cudagraph: full vs none" in text


def test_markdown_has_a_row_per_pair_and_details_for_the_divergence() -> None:
    markdown = render(differential_report(), "markdown")
    assert "### Differential pairs" in markdown
    assert f"| ❌ DIVERGES | `ngram-k4` | cpu | `prefix_caching` | off vs on | {NAMED}" in markdown
    assert "<details><summary>❌" in markdown


def test_the_json_report_carries_the_pairs_and_reads_back() -> None:
    report = differential_report()
    again = RunReport.model_validate_json(render(report, "json"))
    assert again.differentials == report.differentials


def test_junit_has_a_failing_testcase_per_diverging_pair() -> None:
    root = ET.fromstring(render(differential_report(), "junit").split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase[@classname='fleet.local.cpu.differential']")
    failed = [case for case in cases if case.find("failure") is not None]
    assert len(cases) == 2 and len(failed) == 1
    failure = failed[0].find("failure")
    assert failure is not None and failure.get("type") == "divergence"
    assert NAMED in (failure.get("message") or "")


def test_the_html_run_page_has_a_section_of_pairs() -> None:
    page = render_run_page(differential_report(), {}, {})
    assert "<h2>Differential pairs</h2>" in page
    assert NAMED in page
    assert '<span class="s FAIL">DIVERGES</span>' in page


def test_a_run_without_pairs_renders_no_differential_section() -> None:
    report = summarize([], run_id="r", tier="local", backend="local", started_at="", finished_at="")
    assert "differential" not in render(report, "text").lower()
    assert "Differential" not in render(report, "markdown")
    assert "differential" not in render(report, "junit")
