"""`fleet bisect`: which commit between a good and a bad one changed a cell's metric.

Every input is checked before anything runs (the SHAs, the range, the cell, the backend), so a mistake
costs nothing and says what to fix; then the search runs round by round on the chosen backend, prints
its progress, and writes runs/<bisect-id>/bisect.json and bisect.txt.

Exit codes: 0 a culprit (or a range hidden by untestable commits) was found and verified against its
parent; 1 no verified answer (no difference shown between the ends, or undecided within budget);
2 bad input; 3 the machines failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import click

from fleet.bisect.terms import smallest_change
from fleet.judge.compare import COUNTS_NOISE_FLOOR, LATENCY_KNOWN_FLOOR
from fleet.plan.images import COMMIT_IMAGE_TEMPLATE, WHEEL_INDEX_TEMPLATE
from fleet.run.bisect_setup import bisect as run_bisect


def _pct(share: float) -> str:
    """0.05 -> "5", 0.025 -> "2.5": a share as the help prints it, from the constant that decides it."""
    return f"{100 * share:g}"


@click.command()
@click.option("--good", required=True, help="Last commit known to pass (SHA or unique prefix).")
@click.option("--bad", required=True, help="First commit known to fail.")
@click.option("--cell", "cell_id", required=True, help="Cell id, as `fleet plan` prints it.")
@click.option("--parallel", "slots", type=click.IntRange(min=1), default=4, show_default=True,
              help="Runs per round: commits measured at once on the backend.")
@click.option("--backend", type=click.Choice(["local", "kube", "sim"]), default="local", show_default=True)
@click.option("--metric", default="acceptance_length", show_default=True, help="The metric to bisect.")
@click.option("--repo", type=click.Path(path_type=Path), default=None,
              help="Local vLLM clone: the range is `git rev-list --first-parent good..bad`.")
@click.option("--commits", "commits_file", type=click.Path(path_type=Path), default=None,
              help="File of SHAs, oldest first, one a line, instead of --repo.")
@click.option("--scenario", type=click.Path(path_type=Path), default=None,
              help="sim backend: the scenario file (metric distributions, broken commits, flaky rate).")
@click.option("--image-template", default=None,
              help=f"Image per commit, with {{sha}}: default {COMMIT_IMAGE_TEMPLATE} (kube: fleet's image "
                   "of that commit, from `fleet images build --vendor cuda --commit SHA --push`), sim:{sha}.")
@click.option("--build-images", type=click.Choice(["ci-image", "wheel"]), default=None,
              help="kube: build and push fleet's image of each commit just before its first Job (`fleet "
                   "images build --vendor cuda --commit SHA --push`, from the current directory), FROM the "
                   "commit's CI image (kept for days) or with its wheel (every main commit since v0.5.3); a "
                   "commit whose image cannot be built is skipped as untestable.")
@click.option("--wheel-index", default=WHEEL_INDEX_TEMPLATE, show_default=True,
              help="With --build-images wheel: the per-commit package index, with {sha}.")
@click.option("--tier", default=None, help="Look the cell up in this tier only.")
@click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"), show_default=True)
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--max-samples", type=click.IntRange(min=1), default=12, show_default=True,
              help="Runs per commit at most (pinpoint: then an UNKNOWN commit is placed by the nearer end).")
@click.option("--search", type=click.Choice(["posterior", "pinpoint"]), default="posterior",
              show_default=True,
              help="posterior: probe where the culprit's probability splits evenly, every run updating it; "
                   "pinpoint: place each commit good or bad by three-valued comparisons (Chromium's).")
@click.option("--max-rounds", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--min-change", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The smallest change worth finding, in percent: ends that surely differ by less end the "
                   f"search as no regression [default: {_pct(smallest_change('acceptance'))} for acceptance "
                   f"and match, {_pct(smallest_change('latency'))} for latency].")
@click.option("--local-parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="local backend: commits run at once (1 keeps latencies honest).")
@click.option("--seed", type=int, default=0, show_default=True, help="sim backend: random seed.")
@click.option("--baselines", "baselines_dir", type=click.Path(path_type=Path), default=Path("baselines"),
              show_default=True,
              help="The cell's baseline here (if any) gives the metric's recorded run-to-run spread: latency "
                   f"is judged by it from the first round (never below {_pct(LATENCY_KNOWN_FLOOR)} %), "
                   f"counters by it where it is above their {_pct(COUNTS_NOISE_FLOOR)} % floor.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--history-db", default=None, envvar="FLEET_HISTORY_DB",
              help="Record the bisection and its GPU-hours in this history ('' skips it; the sim backend's "
                   "rehearsals are never recorded) [default: <runs-dir>/history.sqlite].")
def bisect(good: str, bad: str, cell_id: str, slots: int, backend: str, metric: str, repo: Path | None,
           commits_file: Path | None, scenario: Path | None, image_template: str | None, tier: str | None,
           jobs_dir: Path, runs_dir: Path, max_samples: int, max_rounds: int, local_parallel: int,
           seed: int, baselines_dir: Path, as_json: bool, history_db: str | None, build_images: str | None,
           wheel_index: str, search: Literal["posterior", "pinpoint"], min_change: float | None) -> None:
    """Find the commit between --good and --bad that changed --metric of --cell.

    Exit codes: 0 a culprit (or a range hidden by untestable commits) found and verified against its parent;
    1 no verified answer (no difference shown between the ends, or undecided within budget); 2 bad input;
    3 the machines failed.
    """
    done = run_bisect(
        good=good, bad=bad, cell_id=cell_id, slots=slots, backend=backend, metric=metric, repo=repo,
        commits_file=commits_file, scenario=scenario, image_template=image_template, tier=tier,
        jobs_dir=jobs_dir, runs_dir=runs_dir, max_samples=max_samples, max_rounds=max_rounds,
        local_parallel=local_parallel, seed=seed, baselines_dir=baselines_dir, history_db=history_db,
        build_images=build_images, wheel_index=wheel_index, search=search, min_change=min_change)
    click.echo(json.dumps(done.document, indent=2) if as_json else done.text, nl=as_json)
    sys.exit(0 if done.found else 1)
