"""The noisy test's spread moderated over the cells of a pool (empirical Bayes), and its trimmed mean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fleet.baselines.record import record_baseline
from fleet.baselines.store import find_baseline, save_baseline
from fleet.cli import main
from fleet.judge import judge_cells
from fleet.judge.noisy import (
    MIN_RUNS_TO_FAIL,
    OUTLIER_ALPHA,
    TRIMMED_VARIANCE_FACTOR,
    SpreadPrior,
    look_share,
    moderated_log_sd,
    spread_prior,
    trimmed_mean,
)
from fleet.judge.verdicts import CellCase
from fleet.model import Baseline, MetricBaseline, RunResult
from fleet.run.controller import make_rerun_check
from fleet.run.plan import BaselineSet
from tests.judge.test_judge_stats import BASE_COUNTS, run

#: Ten standardised log values (mean 0, sd 1): a cell's recorded runs are a spread times these, so that its
#: sample spread is exactly the one asked for.
PATTERN = np.array([0.3, -1.2, 0.8, 1.9, -0.4, -0.9, 0.1, 1.1, -1.6, -0.1])
PATTERN = (PATTERN - PATTERN.mean()) / PATTERN.std(ddof=1)


def entries(spreads: list[float]) -> list[MetricBaseline]:
    out = []
    for sd in spreads:
        values = [float(v) for v in 5.0 * np.exp(sd * PATTERN)]
        out.append(MetricBaseline(expected=float(np.mean(values)), values=values, tolerance_pct=15))
    return out


def test_the_trimmed_means_variance_factors_match_a_fresh_simulation() -> None:
    rng = np.random.default_rng(2)
    for n, factor in TRIMMED_VARIANCE_FACTOR.items():
        draws = np.sort(rng.normal(size=(100_000, n)), axis=1)
        assert float(draws[:, 1:-1].mean(axis=1).var() * n) == pytest.approx(factor, rel=0.02)


def test_the_trimmed_mean_ignores_one_slow_engine_start() -> None:
    assert trimmed_mean([5.0, 5.1, 9.0, 4.9, 5.05]) == pytest.approx(5.05)


def test_cells_sharing_one_spread_give_a_prior_of_it_as_strong_as_their_runs() -> None:
    prior = spread_prior(entries([0.03] * 30))
    assert prior is not None and prior.cells == 30
    # Within 10 %: the fit corrects log s^2 for its bias under chi-square sampling (E log s^2 < log sd^2),
    # which identical spreads, not sampled ones, do not have.
    assert prior.log_sd == pytest.approx(0.03, rel=0.1)
    assert prior.freedom == 30 * 9  # never more than the runs it was fitted to


def test_cells_of_very_different_spreads_give_a_weak_prior() -> None:
    prior = spread_prior(entries([0.005, 0.01, 0.02, 0.05, 0.1, 0.2] * 4))
    assert prior is not None and prior.freedom < 5


def test_fewer_than_three_cells_give_no_prior() -> None:
    assert spread_prior(entries([0.03, 0.03])) is None


def pool_of_cells(spreads: list[float]) -> list[Baseline]:
    return [record_baseline([run(BASE_COUNTS, tpot=float(5.0 * np.exp(sd * z)), name=f"c{i}")
                             for z in PATTERN], command="t")
            for i, sd in enumerate(spreads)]


def tpot_status(candidates: list[RunResult], baseline: Baseline, pool: list[Baseline]) -> str:
    case = CellCase(candidates[-1], baseline, None, None, len(candidates), None, candidates=tuple(candidates))
    verdict = judge_cells([case], family_size=252, pool=pool)[0]
    return {m.metric: m.status for m in verdict.metrics}["tpot_p50_ms"]


def slower(baseline: Baseline, change: float, name: str) -> list[RunResult]:
    centre = baseline.baselines["tpot_p50_ms"].expected * (1 + change)
    return [run(BASE_COUNTS, tpot=centre * f, name=name) for f in (0.99, 1.0, 1.01, 0.995, 1.005)]


def test_a_tpot_rise_a_cell_alone_cannot_prove_is_caught_among_cells_of_like_spread() -> None:
    # 3 % per engine start, as the 8B-shaped cell's on the H200 (evidence/h200/mseries): with ten recorded
    # runs of its own a cell is judged by Student's t with 9 dof; twenty like cells know the spread better.
    pool = pool_of_cells([0.03] * 20)
    candidates = slower(pool[0], 0.09, "c0")
    assert tpot_status(candidates, pool[0], pool[:1]) != "FAIL"
    assert tpot_status(candidates, pool[0], pool) == "FAIL"


def test_a_cell_far_noisier_than_its_pool_is_judged_by_its_own_spread() -> None:
    # Nineteen cells at 2 % fit a strong prior (d0 = 180): shrunk towards it, this cell's own 6 % would
    # read as 2.3 % and its +14 %, well within its own noise over five runs, would FAIL.
    pool = pool_of_cells([0.02] * 19 + [0.06])
    noisy = pool[-1]
    candidates = slower(noisy, 0.14, "c19")
    assert tpot_status(candidates, noisy, pool) != "FAIL"


# --- the looks of the controller's rerun loop ----------------------------------------------------------


@pytest.mark.parametrize("max_runs", range(1, 21))
def test_the_looks_of_a_rerun_loop_spend_the_whole_false_alarm_budget_and_no_more(max_runs: int) -> None:
    looks = range(MIN_RUNS_TO_FAIL, max_runs + 1)
    spent = sum(look_share(runs, max_runs) for runs in looks) if max_runs >= MIN_RUNS_TO_FAIL else 1.0
    assert spent == pytest.approx(1.0)


def test_a_larger_rerun_budget_makes_the_fifth_run_an_early_look_and_stricter() -> None:
    pool = pool_of_cells([0.03] * 20)
    candidates = slower(pool[0], 0.08, "c0")
    case = CellCase(candidates[-1], pool[0], None, None, 5, None, candidates=tuple(candidates))

    def status(max_runs: int) -> str:
        verdict = judge_cells([case], family_size=252, pool=pool, max_runs=max_runs)[0]
        return {m.metric: m.status for m in verdict.metrics}["tpot_p50_ms"]

    assert (status(5), status(10)) == ("FAIL", "INCONCLUSIVE")


def slower_files(tmp_path: Path) -> tuple[Baseline, list[Path]]:
    """A cell's baseline under tmp_path/baselines, and three result files +8 % slower than it: proven at
    one look, not at the first of the three looks a budget of 5 allows."""
    baseline = pool_of_cells([0.03])[0]
    save_baseline(find_baseline(tmp_path / "baselines", run(BASE_COUNTS, name="c0").cell)[1], baseline)
    files = []
    for index, result in enumerate(slower(baseline, 0.08, "c0")[:3]):
        files.append(tmp_path / f"result-{index}.json")
        files[-1].write_text(result.model_dump_json())
    return baseline, files


def test_fleet_judge_treats_files_made_at_once_as_one_look(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, files = slower_files(tmp_path)

    def tpot(*options: str) -> str:
        with pytest.raises(SystemExit):
            main(["judge", *map(str, files), "--baselines", str(tmp_path / "baselines"), "--json", *options])
        report = json.loads(capsys.readouterr().out)
        [verdict] = report["cells"]
        return str({m["metric"]: m["status"] for m in verdict["metrics"]}["tpot_p50_ms"])

    assert (tpot("--max-runs", "1"), tpot()) == ("FAIL", "INCONCLUSIVE")


def test_fleet_judge_takes_the_rerun_budget_from_the_results_tier(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    baseline, files = slower_files(tmp_path)
    cell = run(BASE_COUNTS, name="c0").cell
    jobs = tmp_path / "jobs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "jobs", jobs)
    tier_file = jobs / f"{cell.tier}.yaml"
    tier_file.write_text(tier_file.read_text() + "max_runs: 3\n")  # these three runs were its last look

    def judged(*options: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as stop:
            main(["judge", *map(str, files), "--baselines", str(tmp_path / "baselines"), "--json", *options])
        captured = capsys.readouterr()
        if stop.value.code == 2:
            return 2, captured.err
        [verdict] = json.loads(captured.out)["cells"]
        status = {m["metric"]: m["status"] for m in verdict["metrics"]}["tpot_p50_ms"]
        return int(stop.value.code or 0), str(status)

    assert judged("--jobs", str(jobs)) == (1, "FAIL")
    assert judged("--jobs", str(jobs), "--max-runs", "5")[1] == "INCONCLUSIVE"
    # Files of two tiers whose budgets differ: which looks they were made under is not known.
    other = slower(baseline, 0.08, "c0")[3]
    files.append(tmp_path / "other-tier.json")
    files[-1].write_text(other.model_copy(update={"cell": other.cell.model_copy(update={"tier": "smoke"})})
                         .model_dump_json())
    code, error = judged("--jobs", str(jobs))
    assert code == 2 and "different rerun budgets" in error and "--max-runs" in error


def test_the_controllers_rerun_check_judges_by_the_loops_own_budget(tmp_path: Path) -> None:
    baseline = pool_of_cells([0.03])[0]
    cell = run(BASE_COUNTS, name="c0").cell
    save_baseline(find_baseline(tmp_path / "baselines", cell)[1], baseline)
    candidates = slower(baseline, 0.08, "c0")  # five runs, +8 %
    again = [make_rerun_check([cell], BaselineSet(tmp_path / "baselines"), max_runs=budget)(cell, candidates)
             for budget in (5, 10)]
    # The fifth run is the last look of a budget of 5 (FAIL: no rerun) and an early look of one of 10.
    assert again == [False, True]


def test_the_screen_sends_a_cell_alone_exactly_above_the_priors_predictive_f_quantile() -> None:
    prior = SpreadPrior(log_sd=0.03, freedom=20.0, cells=5)
    limit = 0.03**2 * float(stats.f.isf(OUTLIER_ALPHA, 9, 20.0))  # s^2 / s0^2 ~ F(d, d0)
    below = PATTERN * (0.999 * limit) ** 0.5
    above = PATTERN * (1.001 * limit) ** 0.5
    assert moderated_log_sd(list(below), prior) is not None
    assert moderated_log_sd(list(above), prior) is None


def test_the_prior_recovers_the_spread_its_cells_were_sampled_with() -> None:
    # log s^2 underestimates log sd^2 under chi-square sampling (by 0.11 at 9 dof): the fit corrects it.
    rng = np.random.default_rng(4)
    cells = []
    for _ in range(400):
        values = [float(v) for v in 5.0 * np.exp(rng.normal(0.0, 0.03, 10))]
        cells.append(MetricBaseline(expected=float(np.mean(values)), values=values, tolerance_pct=15))
    prior = spread_prior(cells)
    assert prior is not None and prior.log_sd == pytest.approx(0.03, rel=0.03)


def test_the_judge_shows_the_best_run_and_centres_three_or_more_on_their_trimmed_mean() -> None:
    pool = pool_of_cells([0.03] * 5)
    runs = [run(BASE_COUNTS, tpot=t, name="c0") for t in (5.0, 5.2, 9.0, 4.9, 5.3)]
    case = CellCase(runs[-1], pool[0], None, None, 5, None, candidates=tuple(runs))
    [tpot] = [m for m in judge_cells([case], pool=pool)[0].metrics if m.metric == "tpot_p50_ms"]
    assert tpot.observed == pytest.approx(4.9)  # the statistic a FAIL is decided on (fleet.judge.best_run)
    centre = float(np.exp(np.mean(np.log([5.0, 5.2, 5.3])))) / pool[0].baselines["tpot_p50_ms"].expected
    assert f"centre {100 * (centre - 1):+.1f}%" in tpot.detail


def test_a_larger_rerun_budget_never_ends_a_suspicious_cells_reruns_sooner() -> None:
    pool = pool_of_cells([0.03] * 20)
    candidates = slower(pool[0], 0.05, "c0")[:3]  # raw p 0.018: suspicious, far from proven
    case = CellCase(candidates[-1], pool[0], None, None, 3, None, candidates=tuple(candidates))
    for budget in (5, 10, 20):
        verdict = judge_cells([case], family_size=252, pool=pool, max_runs=budget, final=False)[0]
        assert {m.metric: m.status for m in verdict.metrics}["tpot_p50_ms"] == "INCONCLUSIVE"


def test_a_cell_is_moderated_only_by_at_least_three_other_cells() -> None:
    candidates = slower(pool_of_cells([0.03])[0], 0.08, "c0")
    few, enough = pool_of_cells([0.03] * 3), pool_of_cells([0.03] * 4)
    assert tpot_status(candidates, few[0], few) != "FAIL"
    assert tpot_status(candidates, enough[0], enough) == "FAIL"


def test_a_near_constant_cell_does_not_switch_moderation_off_for_its_pool() -> None:
    # log s^2 of a cell whose runs agree to 1e-12 is about -55: unfloored, it reads as a spread wildly
    # unlike the others' and the fit's d0 collapses (0.7); at the judge's floor it is one quiet cell.
    quiet = MetricBaseline(expected=5.0, values=[5.0, 5.0 + 5e-12] * 5, tolerance_pct=15)
    prior = spread_prior([*entries([0.03] * 6), quiet])
    assert prior is not None and prior.freedom > 10


def test_a_replaying_engine_is_rerun_once_not_to_the_budget_and_told_what_can_decide(tmp_path: Path) -> None:
    # The CPU reference engine is bit-deterministic: its recorded runs agree exactly, and so do its reruns.
    counts = [120, 80, 50, 30]
    baseline = record_baseline([run(counts, drafts=200, name="c0") for _ in range(5)], command="t")
    cell = run(counts, name="c0").cell
    save_baseline(find_baseline(tmp_path / "baselines", cell)[1], baseline)
    dropped = run([int(0.85 * c) for c in counts], drafts=200, name="c0")  # inconclusive on 200 drafts
    again = make_rerun_check([cell], BaselineSet(tmp_path / "baselines"), max_runs=5)
    assert again(cell, [dropped]) is True  # one run cannot say whether the engine replays
    assert again(cell, [dropped, dropped]) is False
    case = CellCase(dropped, baseline, None, None, 2, None, candidates=(dropped, dropped))
    verdict = judge_cells([case], family_size=252)[0]
    assert verdict.status == "INCONCLUSIVE" and "more runs cannot decide" in verdict.message
    varied = run([int(0.84 * c) for c in counts], drafts=200, name="c0")
    assert again(cell, [dropped, varied]) is True  # runs that differ may still settle it


def test_a_replaying_cell_is_still_rerun_where_its_pools_spread_makes_more_runs_count(tmp_path: Path) -> None:
    # The count test floors a cell's between-run spread by its pool's, and that term shrinks with runs: a
    # review found a cell stopped at two identical runs that a third would have failed.
    counts = [1200, 800, 500, 300]
    rng = np.random.default_rng(1)
    cells = []
    for name in ["c0", "c1", "c2", "c3", "c4", "c5"]:
        runs = [run([int(c * (1.0 if name == "c0" else 1 + rng.normal(0, 0.02))) for c in counts],
                    drafts=2000, name=name) for _ in range(5)]
        baseline = record_baseline(runs, command="t")
        save_baseline(find_baseline(tmp_path / "baselines", runs[0].cell)[1], baseline)
        cells.append(runs[0].cell)
    dropped = run([int(0.919 * c) for c in counts], drafts=2000, name="c0")  # INCONCLUSIVE at 2, FAIL at 5
    pool = [find_baseline(tmp_path / "baselines", cell)[0] for cell in cells]
    case = CellCase(dropped, pool[0], None, None, 5, None, candidates=(dropped,) * 5)
    assert judge_cells([case], pool=[b for b in pool if b is not None], max_runs=5)[0].status == "FAIL"
    again = make_rerun_check(cells, BaselineSet(tmp_path / "baselines"), max_runs=5)
    assert again(cells[0], [dropped, dropped]) is True
