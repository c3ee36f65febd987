"""From a cell's result and baseline to its verdict, and from all verdicts to the run's status and exit code.

Every cell gets exactly one status, and the run gets the worst of them by this precedence:

    any FAIL          -> FAIL          exit 1  a regression was measured; nothing outranks it
    any ERROR         -> ERROR         exit 3  some cells could not be measured, so a pass would be a lie
                                       (exit 2 when every such cell failed on a config error)
    any NO_BASELINE   -> NO_BASELINE   exit 2  something ran that nobody has agreed numbers for yet
    any INCONCLUSIVE  -> INCONCLUSIVE  exit 4  suspicious, not proven, after every rerun it was allowed
    otherwise         -> PASS          exit 0  (SKIPPED when every cell is SKIPPED or the run is empty)

FAIL outranks ERROR because a regression already found is the more useful news even when other
cells broke. ERROR outranks NO_BASELINE because rerunning is needed before a baseline could be
recorded anyway. NO_BASELINE exits 2 (the configuration exit code): the missing input is a file the
user must add with `fleet baseline record`.

INCONCLUSIVE is what the judge says when it cannot tell noise from change: after the controller's
reruns (a cell is rerun while INCONCLUSIVE, up to its rerun budget), or at once where more runs cannot
help (an engine that replays its runs exactly, or result files judged by `fleet judge`). It used to exit
0, so a 13 % acceptance-length drop that 165 drafts could not make significant passed the gate; it now
has its own exit code, 4, so that a CI step fails on it while saying it is not a proven regression
(a larger workload, more prompts or tokens, decides). It ranks below NO_BASELINE and ERROR, which need
a fix before any verdict, and above PASS: one unsettled cell keeps the run from passing.

SKIPPED never fails a run: the method cannot run on that hardware or at that vLLM commit (methods
come and go across the commits bisection visits); failing on it would block every run on an
unsupported combination. When every cell is SKIPPED the run is SKIPPED (exit 0): nothing was judged,
and saying PASS would claim otherwise. An empty run counts as all-SKIPPED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from fleet.errors import ExitCode
from fleet.judge.decide import (
    ALPHA,
    Rule,
    decide,
    gather,
    pooled_spreads,
    primary_p_values,
    settled_by_replay,
)
from fleet.judge.differential import assess_pairs, decide_pairs
from fleet.judge.differential import primary_p_values as pair_p_values
from fleet.judge.multiple import Method
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.model import (
    Baseline,
    Cell,
    CellVerdict,
    DifferentialVerdict,
    MetricVerdict,
    ResultError,
    RunReport,
    RunResult,
    Status,
)
from fleet.model.metrics import metric_info

_PRECEDENCE: tuple[tuple[Status, ExitCode], ...] = (
    ("FAIL", ExitCode.REGRESSION),
    ("ERROR", ExitCode.INFRASTRUCTURE),
    ("NO_BASELINE", ExitCode.CONFIG),
    ("INCONCLUSIVE", ExitCode.INCONCLUSIVE),
)


#: What a differential pair's verdict weighs in the run's status: DIVERGES is a regression (exit 1).
DIFFERENTIAL_STATUS: dict[str, Status] = {"SAME": "PASS", "DIVERGES": "FAIL", "INCONCLUSIVE": "INCONCLUSIVE"}


#: How a NO_BASELINE verdict's message begins when the baseline file is missing (not when one is there but
#: cannot judge the cell): the text report words the two apart.
MISSING_BASELINE = "no baseline at"


def baseline_record_command(tier: str, hardware: str, baselines_root: str | None = None, *,
                            variant: str | None = None, update: bool = False) -> str:
    """The command that records the missing or outdated baselines of a tier on one hardware pool (into
    `baselines_root` where it is not the default baselines/); `variant`: that variant's only, `update`:
    replacing a file that exists (`fleet baseline record` refuses to overwrite one without --update)."""
    into = f" --baselines {baselines_root}" if baselines_root and baselines_root != "baselines" else ""
    only = f" --variant {variant}" if variant else ""
    again = " --update" if update else ""
    return f"fleet baseline record --tier {tier} --hardware {hardware}{only}{into}{again}"


#: Placeholders a printed command names where a value is unknown: plain words a shell passes through
#: (a `<commit>` would be read as a redirection), for the reader to replace.
GOOD_PLACEHOLDER = "GOOD_SHA"
BAD_PLACEHOLDER = "BAD_SHA"
REPO_PLACEHOLDER = "VLLM_CLONE"


def bisect_command(good: str | None, bad: str | None, cell_id: str, metric: str | None = None) -> str:
    """The command that bisects a regression of one cell between two vLLM commits, in a vLLM clone (the
    local backend's default needs one: `--repo`), on the metric that failed."""
    # A baseline recorded at the commit under test cannot be the good end: that commit is now bad.
    good_ref = good if good and good != bad else GOOD_PLACEHOLDER
    bad_ref = bad or BAD_PLACEHOLDER
    on = f" --metric {metric}" if metric else ""
    return f"fleet bisect --good {good_ref} --bad {bad_ref} --cell {cell_id} --repo {REPO_PLACEHOLDER}{on}"


@dataclass(frozen=True)
class CellCase:
    """Everything known about one cell when it is judged. `candidates` are all its successful results
    (several after INCONCLUSIVE-driven reruns); when empty, `result` alone is the candidate."""

    result: RunResult | None
    baseline: Baseline | None
    baseline_path: str | None
    result_path: str | None
    attempts: int
    error: ResultError | None
    cell: Cell | None = None
    candidates: tuple[RunResult, ...] = ()


def judge_cell(
    result: RunResult | None,
    baseline: Baseline | None,
    *,
    baseline_path: str | None,
    result_path: str | None,
    attempts: int,
    error: ResultError | None,
    cell: Cell | None = None,
    candidates: Sequence[RunResult] = (),
    rule: Rule = "auto",
    alpha: float = ALPHA,
    method: Method = "holm",
    family_size: int | None = None,
) -> CellVerdict:
    """One cell's verdict, with error control over its own metrics only (or over `family_size` tests).

    `cell` is needed only when there is no result to take it from.
    """
    case = CellCase(result, baseline, baseline_path, result_path, attempts, error, cell, tuple(candidates))
    return judge_cells([case], rule=rule, alpha=alpha, method=method, family_size=family_size)[0]


def judge_cells(
    cases: Sequence[CellCase],
    *,
    rule: Rule = "auto",
    alpha: float = ALPHA,
    method: Method = "holm",
    family_size: int | None = None,
    pool: Sequence[Baseline] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
    final: bool = True,
) -> list[CellVerdict]:
    """Every cell's verdict, with error control across all cells x metrics (fleet.judge.decide) and the
    cases' differential pairs (judge_run_verdicts, which also returns the pairs' verdicts).

    `pool`: the baselines whose spreads are pooled (default: the cases'); a shard passes its whole run's.
    `max_runs`: the controller's rerun budget the candidates were made under (fleet.judge.noisy).
    `final`: the run's verdicts, no rerun to come (False: as the rerun loop judges a cell in between).
    """
    return judge_run_verdicts(cases, rule=rule, alpha=alpha, method=method, family_size=family_size,
                              pool=pool, max_runs=max_runs, final=final)[0]


def judge_run_verdicts(
    cases: Sequence[CellCase],
    *,
    rule: Rule = "auto",
    alpha: float = ALPHA,
    method: Method = "holm",
    family_size: int | None = None,
    pool: Sequence[Baseline] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
    final: bool = True,
) -> tuple[list[CellVerdict], list[DifferentialVerdict]]:
    """Every cell's verdict and every differential pair's (fleet.judge.differential: cells of the cases
    that differ in one execution axis, judged against each other with no baseline), their primary tests
    in one family: Holm (or BH) over both, padded to `family_size` (which counts both)."""
    pooled = pooled_spreads(pool if pool is not None else
                            [case.baseline for case in cases if case.baseline is not None])
    early: dict[int, CellVerdict] = {}
    judged: list[tuple[int, CellCase, list[RunResult]]] = []
    evidence = []
    measured: list[RunResult] = []
    for index, case in enumerate(cases):
        candidates = _candidates(case)
        measured += candidates
        verdict = _unjudgeable(case)
        if verdict is not None:
            early[index] = verdict
            continue
        assert case.baseline is not None
        judged.append((index, case, candidates))
        evidence.append(gather(candidates, case.baseline, rule, pooled, max_runs))
    pairs = assess_pairs(measured)
    decided = decide(evidence, alpha=alpha, method=method, family_size=family_size, final=final,
                     others=pair_p_values(pairs))
    differentials = decide_pairs(pairs, alpha=alpha, method=method, others=primary_p_values(evidence),
                                 family_size=family_size, final=final)
    for (index, case, candidates), metrics in zip(judged, decided, strict=True):
        assert case.baseline is not None
        early[index] = _cell_verdict(case, metrics, len(candidates),
                                     replays=settled_by_replay(metrics, case.baseline, candidates, pooled))
    return [early[index] for index in range(len(cases))], differentials


def _candidates(case: CellCase) -> list[RunResult]:
    if case.candidates:
        return [r for r in case.candidates if r.status == "ok"]
    return [case.result] if case.result is not None and case.result.status == "ok" else []


def _subject(case: CellCase) -> Cell:
    subject = case.result.cell if case.result is not None else case.cell
    if subject is None:
        raise ValueError("judge_cell needs a result or a cell to say which cell it judges")
    return subject


def _make(case: CellCase, status: Status, message: str, runs: int = 1, **extra: object) -> CellVerdict:
    subject = _subject(case)
    return CellVerdict.model_validate(
        {
            "cell_id": subject.id,
            "variant": subject.variant.name,
            "model": subject.model,
            "draft_model": subject.draft_model,
            "hardware": subject.hardware.name,
            "status": status,
            "message": message,
            "baseline_path": case.baseline_path,
            "result_path": case.result_path,
            "attempts": case.attempts,
            "runs": runs,
            **extra,
        }
    )


def _unjudgeable(case: CellCase) -> CellVerdict | None:
    """The verdict of a cell that has nothing to judge (error, skip, no baseline), else None."""
    subject = _subject(case)
    result = case.result
    if result is None or result.status == "error":
        carried = result.error if result is not None else None
        cause = case.error or carried or _no_result_error(case.result_path)
        return _make(case, "ERROR", f"{cause.category} error ({cause.reason}): {cause.message}", error=cause)
    if result.status == "skipped":
        return _make(case, "SKIPPED", result.skip_reason or "skipped")
    # baseline_path is ROOT/<hardware>/<variant>__<model>.json: the record goes where it was looked for.
    root = PurePath(case.baseline_path).parent.parent.as_posix() if case.baseline_path else None
    command = baseline_record_command(subject.tier, subject.hardware.name, root)
    if case.baseline is None:
        where = case.baseline_path or "the baselines folder"
        return _make(case, "NO_BASELINE", f"{MISSING_BASELINE} {where}; record it with `{command}`")
    recorded, measured = case.baseline.engine_starts or 1, subject.workload.engine_starts
    if recorded != measured and any(_is_latency(name) for name in case.baseline.baselines):
        return _make(case, "NO_BASELINE",
                     f"the baseline's runs are each {_starts(recorded)}, this cell's {_starts(measured)} "
                     "(workload.engine_starts): their latency spreads differ, so it cannot judge them; "
                     f"record it again with `{command} --update`")
    prompts = subject.workload.dataset or subject.workload.prompts
    if not same_prompts(case.baseline, prompts):
        # Acceptance is a property of the text as much as of the drafter: a baseline measured on one
        # prompt set cannot judge a cell on another (the H200 tier's differential cells run the
        # shared-prefix prompts beside cells on the plain ones, one baseline file per variant and model).
        return _make(case, "NO_BASELINE",
                     f"the baseline was recorded on the prompts {case.baseline.dataset!r}, this cell runs "
                     f"{prompts!r}: it cannot judge them; its differential pairs still are (no baseline "
                     "needed), or record one on these prompts in another baselines folder")
    return None


def same_prompts(baseline: Baseline, prompts: str) -> bool:
    """Whether a baseline may judge a cell on `prompts` (its workload's dataset, else its prompts): one
    fleet recorded (it has provenance) names exactly the prompts it was measured on in `dataset`; a
    hand-written file's `dataset` only describes them (the RFC's say "sharegpt") and is taken at its word."""
    return baseline.provenance is None or baseline.dataset is None or baseline.dataset == prompts


def _is_latency(name: str) -> bool:
    info = metric_info(name)
    return info is not None and info.kind == "latency"


def _starts(count: int) -> str:
    return "one engine start" if count == 1 else f"the median of {count} engine starts"


def _cell_verdict(case: CellCase, metrics: list[MetricVerdict], runs: int,
                  replays: bool = False) -> CellVerdict:
    failed = [m.metric for m in metrics if m.status == "FAIL"]
    unsure = [m.metric for m in metrics if m.status == "INCONCLUSIVE"]
    if failed:
        # A metric the result lacks fails as well, but is not a value outside its band: said apart.
        missing = [m.metric for m in metrics if m.status == "FAIL" and m.observed is None]
        outside = [name for name in failed if name not in missing]
        parts = ([f"{len(outside)} of {len(metrics)} metrics outside tolerance: {', '.join(outside)}"]
                 if outside else [])
        if missing:
            parts.append(f"{len(missing)} of {len(metrics)} metrics missing from the result (the suite did "
                         f"not measure them; its log says why): {', '.join(missing)}")
        return _make(case, "FAIL", "; ".join(parts), runs, metrics=metrics)
    if unsure:
        advice = ("the engine replays its runs exactly, so more runs cannot decide; a workload with more "
                  "prompts or tokens can" if replays else "rerun the cell to decide")
        message = (f"{len(unsure)} of {len(metrics)} metrics inconclusive after {runs} run(s): "
                   f"{', '.join(unsure)}; {advice}")
        return _make(case, "INCONCLUSIVE", message, runs, metrics=metrics)
    return _make(case, "PASS", f"all {len(metrics)} metrics within tolerance", runs, metrics=metrics)


def summarize(
    cells: Sequence[CellVerdict],
    *,
    run_id: str,
    tier: str,
    backend: str,
    started_at: str,
    finished_at: str,
    rule: str | None = None,
    error_control: str | None = None,
    alpha: float | None = None,
    max_runs: int | None = None,
    differentials: Sequence[DifferentialVerdict] = (),
) -> RunReport:
    """The run's report: every cell's verdict, every differential pair's, the overall status and the
    process exit code (a pair that DIVERGES counts as a FAIL, an INCONCLUSIVE one as INCONCLUSIVE)."""
    status, exit_code = overall_status([cell.status for cell in cells]
                                       + [DIFFERENTIAL_STATUS[d.status] for d in differentials])
    errored = [cell for cell in cells if cell.status == "ERROR"]
    if status == "ERROR" and all(cell.error and cell.error.category == "config" for cell in errored):
        # A cell the suite rejected as misconfigured is the user's to fix, not the cluster's.
        exit_code = ExitCode.CONFIG
    return RunReport(
        run_id=run_id,
        tier=tier,
        backend=backend,
        started_at=started_at,
        finished_at=finished_at,
        status=status,
        exit_code=int(exit_code),
        cells=list(cells),
        differentials=list(differentials),
        rule=rule,
        error_control=error_control,
        alpha=alpha,
        max_runs=max_runs,
    )


def with_differentials(report: RunReport, differentials: Sequence[DifferentialVerdict]) -> RunReport:
    """`report` with these differential verdicts, its status and exit code computed again (a merge of
    shards, whose pairs are judged over the union)."""
    if not differentials and not report.differentials:
        return report
    again = summarize(report.cells, run_id=report.run_id, tier=report.tier, backend=report.backend,
                      started_at=report.started_at, finished_at=report.finished_at, rule=report.rule,
                      error_control=report.error_control, alpha=report.alpha, max_runs=report.max_runs,
                      differentials=differentials)
    return again.model_copy(update={"cost": report.cost})


def overall_status(statuses: Sequence[Status]) -> tuple[Status, ExitCode]:
    """The run's status and exit code from its cells' statuses (precedence in the module docstring)."""
    for status, code in _PRECEDENCE:
        if status in statuses:
            return status, code
    if "PASS" in statuses:
        return "PASS", ExitCode.PASS
    return "SKIPPED", ExitCode.PASS


def _no_result_error(result_path: str | None) -> ResultError:
    where = f" at {result_path}" if result_path else ""
    return ResultError(
        category="infrastructure",
        reason="no-result",
        message=f"the cell produced no result document{where}",
    )
