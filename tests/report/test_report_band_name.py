"""A baseline's tolerance_pct keeps the RFC's meaning; the statistical band is shown under its own name.

The default judge tests a metric with a recorded spread against a band it draws from that spread; the
baseline's tolerance_pct (expected ± tolerance_pct) is what the RFC rule reads. Each report format must
say which of the two a verdict's [lo, hi] is, so that no number appears under a name it does not have.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from fleet.baselines.record import record_baseline
from fleet.judge import judge_cell
from fleet.model import Baseline, CellVerdict, Hardware, RunReport, RunResult, SpecCounters
from fleet.report import render_json, render_junit, render_markdown, render_text
from fleet.report.limits import band_text, limit_text
from tests.builders import make_cell, ok_result

GPU = Hardware(name="h200", vendor="nvidia", gpu_count=1)
COUNTS = [6000, 4000, 2500, 1500]


def run(tpot: float) -> RunResult:
    cell = make_cell().model_copy(update={"hardware": GPU})
    drafts = 10_000
    counters = SpecCounters(num_drafts=drafts, num_draft_tokens=4 * drafts, num_accepted_tokens=sum(COUNTS),
                            accepted_per_position=COUNTS)
    metrics = {"acceptance_length": 1 + sum(COUNTS) / drafts, "tpot_p50_ms": tpot}
    return ok_result(cell).model_copy(update={"metrics": metrics, "counters": counters})


def recorded() -> Baseline:
    return record_baseline([run(t) for t in (5.0, 5.2, 4.9, 5.1, 4.95, 5.05, 4.85, 5.15, 5.0, 4.9)],
                           command="test")


def judged(baseline: Baseline, result: RunResult, rule: str = "auto") -> CellVerdict:
    return judge_cell(result, baseline, baseline_path="baselines/h200/ngram-k4__tiny-stdlib-target.json",
                      result_path=None, attempts=1, error=None, rule=rule)  # type: ignore[arg-type]


def report_of(verdict: CellVerdict) -> RunReport:
    return RunReport(run_id="r1", tier="nightly", backend="kube", started_at="2026-12-07T10:00:00Z",
                     finished_at="2026-12-07T10:05:00Z", status=verdict.status, exit_code=0, cells=[verdict])


def with_tolerance(baseline: Baseline, metric: str, tolerance_pct: float) -> Baseline:
    entries = dict(baseline.baselines)
    entries[metric] = entries[metric].model_copy(update={"tolerance_pct": tolerance_pct})
    return baseline.model_copy(update={"baselines": entries})


def test_a_statistical_verdict_carries_the_band_and_never_the_baselines_tolerance() -> None:
    baseline = recorded()
    tpot = {m.metric: m for m in judged(baseline, run(5.0)).metrics}["tpot_p50_ms"]
    assert tpot.tolerance_pct is None
    assert tpot.band_pct is not None and tpot.band_pct != baseline.baselines["tpot_p50_ms"].tolerance_pct
    assert tpot.band_runs == 10


def test_editing_tolerance_pct_moves_the_rfc_verdict_and_is_shown_as_the_tolerance() -> None:
    baseline = recorded()
    for tolerance in (5.0, 40.0):
        edited = with_tolerance(baseline, "tpot_p50_ms", tolerance)
        tpot = {m.metric: m for m in judged(edited, run(5.0), rule="rfc").metrics}["tpot_p50_ms"]
        assert tpot.tolerance_pct == tolerance and tpot.band_pct is None
        assert tpot.hi == edited.baselines["tpot_p50_ms"].hi


def test_text_report_names_the_band_and_keeps_the_rfc_form_for_the_tolerance() -> None:
    baseline = recorded()
    auto = render_text(report_of(judged(baseline, run(5.0))), {}, {})
    line = next(line for line in auto.splitlines() if "tpot_p50_ms:" in line)
    assert "band +" in line and "from 10 runs' spread" in line and "±" not in line
    rfc = render_text(report_of(judged(baseline, run(5.0), rule="rfc")), {}, {})
    line = next(line for line in rfc.splitlines() if "tpot_p50_ms:" in line)
    assert f"±{baseline.baselines['tpot_p50_ms'].tolerance_pct:g}%)" in line and "band" not in line


def test_the_bands_sign_is_the_harmful_direction_of_the_metric() -> None:
    verdicts = {m.metric: m for m in judged(recorded(), run(5.0)).metrics}
    assert band_text(verdicts["tpot_p50_ms"]).startswith("band +")  # slower is worse
    assert band_text(verdicts["acceptance_length"]).startswith("band −")  # lower is worse


def test_markdown_junit_and_json_name_the_band_too() -> None:
    report = report_of(judged(recorded(), run(5.0)))
    tpot = next(m for m in report.cells[0].metrics if m.metric == "tpot_p50_ms")
    assert "from 10 runs' spread" in render_markdown(report.model_copy(update={
        "cells": [report.cells[0].model_copy(update={"status": "FAIL"})]}))
    system_out = ET.fromstring(render_junit(report).split("\n", 1)[1]).find(".//system-out")
    assert system_out is not None and limit_text(tpot) in (system_out.text or "")
    document = json.loads(render_json(report))
    metric = next(m for m in document["cells"][0]["metrics"] if m["metric"] == "tpot_p50_ms")
    assert metric["band_pct"] == tpot.band_pct and metric["tolerance_pct"] is None


def test_a_version_1_report_reads_its_band_as_band_pct_and_keeps_rfc_tolerances() -> None:
    band = {"metric": "tpot_p50_ms", "status": "PASS", "tolerance_pct": 16.5,
            "rule": "noisy; holm over the run"}
    rfc = {"metric": "speedup", "status": "PASS", "tolerance_pct": 15,
           "rule": "rfc28135: expected ± tolerance_pct"}
    cell = {"cell_id": "c", "variant": "v", "model": "m", "hardware": "h200", "status": "PASS",
            "metrics": [band, rfc]}
    old = {"schema_version": 1, "run_id": "r", "tier": "t", "backend": "b", "started_at": "s",
           "finished_at": "f", "status": "PASS", "exit_code": 0, "cells": [cell]}
    report = RunReport.model_validate(old)
    read_band, read_rfc = report.cells[0].metrics
    assert report.schema_version == 2
    assert (read_band.band_pct, read_band.tolerance_pct) == (16.5, None)
    assert (read_rfc.band_pct, read_rfc.tolerance_pct) == (None, 15)

