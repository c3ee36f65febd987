"""What a run is made of, loaded once: its cells (tier x catalogs, filtered), its rerun budget, and its
baselines, each file read and validated once however many steps of the run ask for it.

Preflight, the rerun check and the judge all need a cell's baseline; reading the file in each of them
read every baseline three times per run and let a file edited mid-run judge a cell by two versions.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from fleet.baselines.store import find_baseline
from fleet.errors import ConfigError, FleetError
from fleet.history.store import HistoryStore
from fleet.judge.noisy import DEFAULT_MAX_RUNS
from fleet.judge.verdicts import baseline_record_command, same_prompts
from fleet.model import Baseline, Cell, RunResult
from fleet.model.documents import read_document
from fleet.model.metrics import METRICS, metric_info
from fleet.plan.catalog import list_tiers, load_catalog, load_tier
from fleet.plan.matrix import expand, filter_cells
from fleet.plan.sharding import recorded_seconds
from fleet.run.common import existing_dir
from fleet.run.preflight import check_models


class BaselineSet:
    """The baselines of one run under `root`, by cell id: each read (and validated) at its first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._found: dict[str, tuple[Baseline | None, Path]] = {}

    def lookup(self, cell: Cell) -> tuple[Baseline | None, Path]:
        """The cell's baseline (None when none was recorded) and its path; ConfigError for a bad file."""
        if cell.id not in self._found:
            baseline, path = find_baseline(self.root, cell)
            if baseline is not None:
                check_metric_names(baseline, path)
            self._found[cell.id] = baseline, path
        return self._found[cell.id]

    def of(self, cell: Cell) -> Baseline | None:
        return self.lookup(cell)[0]

    def read_all(self, cells: Sequence[Cell]) -> None:
        """Read every baseline the run will need; an invalid file, or no baselines folder at all (a typo
        in --baselines, which would leave every cell NO_BASELINE), stops the run before it starts."""
        if cells and not self.root.is_dir():
            raise ConfigError("no baselines folder there", where=self.root.as_posix(),
                              fix="pass --baselines DIR (the repository's baselines/); for a first pool's "
                                  "runs, judged NO_BASELINE and kept for `fleet baseline from-results`, "
                                  "create it (mkdir -p DIR)")
        for cell in cells:
            self.lookup(cell)

    def require_all(self, cells: Sequence[Cell], tier: str) -> None:
        """Every cell must have a baseline: one without would spend its GPU time and end NO_BASELINE
        (none of the 94 smoke/nightly/weekly cells had one, and nothing said so before they ran)."""
        missing = [(cell, path) for cell in cells
                   for baseline, path in [self.lookup(cell)]
                   if baseline is None
                   or not same_prompts(baseline, cell.workload.dataset or cell.workload.prompts)]
        if not missing:
            return
        records = "; ".join(f"`{command}`" for command in self._record_commands(cells, missing, tier))
        names = ", ".join(path.as_posix() for _, path in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ConfigError(f"{len(missing)} of {len(cells)} cells have no baseline ({names})",
                          where="--baselines", cause="their baselines were never recorded on these pools",
                          fix=f"record them ({records}), or pass --allow-missing-baselines to run them "
                              "anyway (they end NO_BASELINE, exit 2, kept for `fleet baseline from-results`)")

    def _record_commands(self, cells: Sequence[Cell], missing: Sequence[tuple[Cell, Path]],
                         tier: str) -> list[str]:
        """A pool with no baseline at all records in one command; where some exist, `fleet baseline
        record` refuses to overwrite them, so each missing variant gets its own."""
        root = self.root.as_posix()
        commands = []
        for pool in sorted({cell.hardware.name for cell, _ in missing}):
            lacking = [cell for cell, _ in missing if cell.hardware.name == pool]
            if len(lacking) == sum(1 for cell in cells if cell.hardware.name == pool):
                commands.append(baseline_record_command(tier, pool, root))
            else:
                commands += [baseline_record_command(tier, pool, root, variant=variant)
                             for variant in sorted({cell.variant.name for cell in lacking})]
        return commands

    def recorded(self, cells: Sequence[Cell]) -> list[Baseline]:
        """The baselines recorded for these cells; cells without one are left out."""
        return [baseline for cell in cells if (baseline := self.of(cell)) is not None]


def check_metric_names(baseline: Baseline, path: Path) -> None:
    """Every metric a baseline names must be one the registry knows (fleet.model.metrics): a typo'd
    `acceptance_lenght` would otherwise become a FAIL (a metric missing from every result) after the run,
    exit 1, instead of exit 2 before it."""
    for name in baseline.baselines:
        if metric_info(name) is None:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown metric {name!r}", where=f"{path}: baselines.{name}",
                              fix=f"{hint}the metrics are {', '.join(sorted(METRICS))} and "
                                  "acceptance_rate_pos_<i>")


def plan_cells(jobs_dir: Path, tier: str, hardware: str | None, variant: str | None) -> list[Cell]:
    """The tier's cells, filtered; an empty selection is the user's mistake, said with the fix."""
    existing_dir(jobs_dir, option="--jobs", what="jobs")
    catalog = load_catalog(jobs_dir)
    tier_model = load_tier(jobs_dir, tier)
    cells = expand(tier_model, catalog, tier_path=str(jobs_dir / f"{tier}.yaml"))
    selected = filter_cells(cells, hardware=hardware, variant=variant)
    if not selected:
        asked = " ".join(f"--{name} {value}" for name, value in (("hardware", hardware), ("variant", variant))
                         if value is not None)
        raise ConfigError(f"no cell of tier {tier!r} matches {asked}",
                          fix=f"run `fleet plan --tier {tier}` to see its cells")
    check_models(selected, jobs_dir, paths=False)  # a misspelt bundled: name, on every backend
    return selected


def find_cell(jobs_dir: Path, cell_id: str, tier: str | None) -> Cell:
    """The cell named `cell_id` in `tier`, or in the first tier of jobs/ that has it."""
    existing_dir(jobs_dir, option="--jobs", what="jobs")
    catalog = load_catalog(jobs_dir)
    tiers = [tier] if tier else list_tiers(jobs_dir)
    unreadable: list[str] = []
    known: list[str] = []
    for name in tiers:
        try:
            cells = expand(load_tier(jobs_dir, name), catalog, tier_path=str(jobs_dir / f"{name}.yaml"))
        except FleetError:
            if tier:
                raise
            unreadable.append(name)
            continue
        for cell in cells:
            if cell.id == cell_id:
                return cell
        known += [cell.id for cell in cells]
    shown = ", ".join(sorted(set(known))[:8]) or "none"
    cause = f"tiers that could not be read: {', '.join(unreadable)}" if unreadable else None
    raise ConfigError(f"no cell {cell_id!r} in {'tier ' + tier if tier else 'any tier'} (cells: {shown})",
                      where="--cell", cause=cause, fix="pick a cell id that `fleet plan --tier TIER` lists")


def tier_rerun_budget(jobs_dir: Path, tier: str) -> int:
    """The runs a cell of this tier may take: the tier file's max_runs, else DEFAULT_MAX_RUNS."""
    return load_tier(jobs_dir, tier).max_runs or DEFAULT_MAX_RUNS


def files_rerun_budget(jobs_dir: Path, tiers: Sequence[str]) -> int:
    """The rerun budget result files of these tiers were made under, as far as the tier files say: the
    tiers' own (DEFAULT_MAX_RUNS for a tier with no file here, made elsewhere). Tiers with different
    budgets cannot be judged as one run without being told which."""
    known = set(list_tiers(jobs_dir)) if jobs_dir.is_dir() else set()
    budgets = {tier: tier_rerun_budget(jobs_dir, tier) if tier in known else DEFAULT_MAX_RUNS
               for tier in tiers}
    if len(set(budgets.values())) > 1:
        listed = ", ".join(f"{tier} {budget}" for tier, budget in sorted(budgets.items()))
        raise ConfigError(f"the results come from tiers with different rerun budgets ({listed})",
                          where="--max-runs", fix="pass --max-runs N, or judge each tier's results apart")
    return next(iter(budgets.values()), DEFAULT_MAX_RUNS)


def history_seconds(history_db: str, tier: str, last_runs: int = 20) -> dict[str, float]:
    """Each cell's recorded seconds over the tier's last runs; empty when there is no history yet."""
    if not history_db or ("://" not in history_db and not Path(history_db).is_file()):
        return {}
    with HistoryStore.open(history_db) as store:
        runs = store.runs(tier=tier)[-last_runs:]
        return recorded_seconds(span for run in runs for span in store.jobs(run.run_id))


def read_result(path: Path) -> RunResult:
    return read_document(RunResult, path, what="result", schema="result")
