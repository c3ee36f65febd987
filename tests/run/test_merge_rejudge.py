"""Judging real H200 results: merge judges the shards' union as one run; a slower host is no regression."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.baselines.record import record_baseline
from fleet.history.store import RunRecord
from fleet.judge.verdicts import CellCase, judge_cells
from fleet.model import RunReport, RunResult
from fleet.plan.cost import JobSpan
from fleet.run.controller import CellOutcome, judge_run
from fleet.run.plan import BaselineSet
from tests.cli.test_history_cli import write_run_dir
from tests.conftest import Fleet

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "baselines"
RUNS = sorted((ROOT / "evidence" / "h200" / "runs").glob("r[1-5]/*.json"))


def results() -> list[RunResult]:
    """Real H200 RunResults: replicate r2 of both tiny cells, judged against baselines/h200."""
    return [RunResult.model_validate_json(p.read_bytes()) for p in RUNS if p.parent.name == "r2"]


def outcome(result: RunResult, path: str) -> CellOutcome:
    return CellOutcome(result.cell, result, None, Path(path), 1, 0.0, 0.0, (result,))


def judged(items: list[RunResult], run_id: str, **extra: object) -> RunReport:
    report, _ = judge_run([outcome(r, f"cells/{r.cell.id}/result.attempt-1.json") for r in items],
                          baselines=BaselineSet(BASELINES), run_id=run_id, tier="h200", backend="local",
                          started_at="2026-11-28T03:00:00+00:00", finished_at="2026-11-28T03:10:00+00:00",
                          **extra)  # type: ignore[arg-type]
    return report


def shard_dir(root: Path, report: RunReport, items: list[RunResult], seconds: float) -> Path:
    jobs = [JobSpan(r.cell.id, r.cell.hardware.name, r.cell.hardware.gpu_count, 0.0, seconds) for r in items]
    record = RunRecord(report, {r.cell.id: r.cell for r in items}, {r.cell.id: [r] for r in items}, jobs)
    return write_run_dir(root, record)


def primary_adjusted(report: RunReport) -> dict[tuple[str, str], float | None]:
    return {(c.cell_id, m.metric): m.adjusted_p for c in report.cells for m in c.metrics
            if not m.metric.startswith("acceptance_rate_pos_")}


def band_widths(report: RunReport) -> dict[tuple[str, str], float]:
    """How wide each counted metric's band is: wider where the run's family of tests is larger (a test
    must reach alpha / family). Adjusted p say the same only where they are below 1, and one run's
    noisy p of a FAIL never is (fleet.judge.best_run); a noisy metric's band also moves with the spread
    of the pool the run's other cells make."""
    return {(c.cell_id, m.metric): m.hi - m.lo for c in report.cells for m in c.metrics
            if m.metric in ("acceptance_length", "acceptance_rate", "match_rate")
            and m.hi is not None and m.lo is not None}


def test_merge_of_four_shards_judges_the_union_as_one_run_when_each_shard_was_judged_alone(
        tmp_path: Path, fleet: Fleet) -> None:
    # Four real cells (two on the H200, two on the CPU), one per shard, as `--num-shards 4` would split.
    cpu = [RunResult.model_validate_json(p.read_bytes())
           for p in sorted((ROOT / "evidence" / "cpu" / "r2").glob("*.json"))]
    cells = [*results(), *cpu]
    whole = judged(cells, "whole")
    shards = [judged([cell], f"s{index}") for index, cell in enumerate(cells)]
    dirs = [shard_dir(tmp_path, shard, [cell], 1800.0) for shard, cell in zip(shards, cells, strict=True)]
    code, out, _ = fleet("merge", *map(str, dirs), "--baselines", str(BASELINES), "--json",
                         "--jobs", str(ROOT / "jobs"), "--price", "h200=4.0")
    merged = RunReport.model_validate_json(out)
    assert len(merged.cells) == 4
    assert merged.cells == sorted(whole.cells, key=lambda c: c.cell_id)  # a merge lists cells by id
    assert (merged.status, code) == (whole.status, whole.exit_code)
    # Each shard alone controlled only its own cell's tests; the merge controls all four cells' together.
    alone = {key: width for shard in shards for key, width in band_widths(shard).items()}
    together = band_widths(merged)
    assert alone.keys() == together.keys()
    assert all(width >= alone[key] * (1 - 1e-9) for key, width in together.items())
    assert any(width > alone[key] * 1.01 for key, width in together.items())
    assert merged.cost is not None and merged.cost["total"]["gpu_hours"] == 1.0  # the two 1-GPU H200 Jobs
    assert merged.cost["total"]["cost_usd"] == 4.0


def test_a_shard_judged_with_its_whole_run_as_family_is_never_less_strict(tmp_path: Path) -> None:
    draft, ngram = results()
    alone = judged([draft], "s0")
    within = judged([draft], "s0", family=[draft.cell, ngram.cell])
    adjusted = primary_adjusted(alone), primary_adjusted(within)
    assert all((adjusted[1][key] or 0.0) >= (adjusted[0][key] or 0.0) for key in adjusted[0])
    widths = band_widths(alone), band_widths(within)
    assert all(widths[1][key] >= widths[0][key] * (1 - 1e-9) for key in widths[0])
    assert any(widths[1][key] > widths[0][key] * 1.01 for key in widths[0])


def test_verdicts_only_merge_keeps_each_shards_own_verdicts(tmp_path: Path, fleet: Fleet) -> None:
    draft, ngram = results()
    shards = [judged([draft], "s0"), judged([ngram], "s1")]
    dirs = [shard_dir(tmp_path, shards[0], [draft], 60.0), shard_dir(tmp_path, shards[1], [ngram], 60.0)]
    _, out, _ = fleet("merge", *map(str, dirs), "--verdicts-only", "--json", "--jobs", str(ROOT / "jobs"))
    merged = json.loads(out)
    assert [c["metrics"] for c in merged["cells"]] == [c.model_dump(mode="json")["metrics"]
                                                       for c in [*shards[0].cells, *shards[1].cells]]


def test_shards_judged_with_different_rules_refuse_to_merge(tmp_path: Path, fleet: Fleet) -> None:
    draft, ngram = results()
    dirs = [shard_dir(tmp_path, judged([draft], "s0"), [draft], 60.0),
            shard_dir(tmp_path, judged([ngram], "s1", rule="rfc"), [ngram], 60.0)]
    code, _, err = fleet("merge", *map(str, dirs), "--baselines", str(BASELINES),
                         "--jobs", str(ROOT / "jobs"))
    assert code == 2
    assert "judged with different rules" in err


def test_shards_run_under_different_rerun_budgets_refuse_to_merge(tmp_path: Path, fleet: Fleet) -> None:
    # The noisy tests split their false-alarm budget over the looks --max-runs allows: one merge, one split.
    draft, ngram = results()
    dirs = [shard_dir(tmp_path, judged([draft], "s0", max_runs=5), [draft], 60.0),
            shard_dir(tmp_path, judged([ngram], "s1", max_runs=10), [ngram], 60.0)]
    code, _, err = fleet("merge", *map(str, dirs), "--baselines", str(BASELINES),
                         "--jobs", str(ROOT / "jobs"))
    assert code == 2
    assert "judged with different rerun budgets (--max-runs)" in err


def test_a_slower_host_makes_latency_inconclusive_not_a_regression() -> None:
    # Lease 2 of the H200 ran the same vLLM 38 % slower in the non-speculative reference too: judged
    # against baselines recorded on lease 1 only, its latency must not read as a regression.
    runs = ROOT / "evidence" / "h200"
    for variant in ("draft_model-k4", "ngram-k4"):
        first = [RunResult.model_validate_json(p.read_bytes())
                 for p in sorted(runs.glob(f"runs/r*/{variant}__*.json"))]
        second = tuple(RunResult.model_validate_json(p.read_bytes())
                       for p in sorted(runs.glob(f"series/s*/{variant}__*.json")))
        baseline = record_baseline(first, command="test")
        [verdict] = judge_cells([CellCase(second[-1], baseline, None, None, 10, None, candidates=second)])
        metrics = {m.metric: m for m in verdict.metrics}
        assert verdict.status != "FAIL", [m.metric for m in verdict.metrics if m.status == "FAIL"]
        unsure = [m for m in verdict.metrics if m.status == "INCONCLUSIVE"]
        assert unsure and all("slower host" in m.detail for m in unsure)  # and it says why
        assert metrics["acceptance_length"].status == "PASS"
        assert metrics["reference_tpot_p50_ms"].status == "PASS"  # the yardstick never fails


def test_merge_without_the_baselines_refuses_instead_of_calling_every_cell_unbaselined(tmp_path: Path,
                                                                                   fleet: Fleet) -> None:
    draft, ngram = results()
    dirs = [shard_dir(tmp_path, judged([draft], "s0"), [draft], 60.0),
            shard_dir(tmp_path, judged([ngram], "s1"), [ngram], 60.0)]
    code, out, err = fleet("merge", *map(str, dirs), "--baselines", str(tmp_path / "nowhere"),
                           "--jobs", str(ROOT / "jobs"))
    assert code == 2 and out == ""
    assert "--verdicts-only" in err and "does not exist" in err
