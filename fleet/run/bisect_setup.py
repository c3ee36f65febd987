"""A bisection from its inputs to its report: every input checked before anything runs (the SHAs, the range,
the cell, the backend), then each commit wired to a cell and a backend (a git worktree for local runs,
fleet's image of the commit on the cluster, a scenario entry for rehearsals), the search driven round by
round (fleet.run.bisection), and the answer written to runs/<bisect-id>/ and recorded in the history.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fleet.backends.base import Backend
from fleet.backends.docker_build import docker_sdk, pinned_tag, run_build
from fleet.backends.git import (
    CHECKOUT_PLACEHOLDER,
    SHA_PLACEHOLDER,
    commits_between,
    commits_from_file,
    commits_from_git,
    remove_worktrees,
    with_checkout,
    with_image,
    worktree,
)
from fleet.backends.local import LocalBackend, suite_command
from fleet.baselines.store import find_baseline
from fleet.bisect.posterior import metric_policy
from fleet.errors import ConfigError, FleetError
from fleet.history.store import BisectionRecord, HistoryStore
from fleet.judge.compare import Spread
from fleet.model import Cell
from fleet.model.metrics import metric_info
from fleet.plan.images import (
    COMMIT_IMAGE_TEMPLATE,
    CUDA_RELEASE_BASE,
    WHEEL_INDEX_TEMPLATE,
    build_plan,
    image_tag,
)
from fleet.run.bisection import (
    BisectOutcome,
    UntestableCommit,
    describe_round,
    recorded_noise,
    render_text,
    report_document,
    run_bisection,
)
from fleet.run.common import ensure_writable_dir, history_db_in, stderr
from fleet.run.controller import new_run_id
from fleet.run.plan import find_cell

DEFAULT_IMAGE_TEMPLATES = {"kube": COMMIT_IMAGE_TEMPLATE, "sim": "sim:{sha}", "local": ""}


@dataclass(frozen=True)
class BisectDone:
    """The bisection's report document, its text, and whether a culprit was found and verified."""

    document: dict[str, Any]
    text: str
    found: bool


def bisect(*, good: str, bad: str, cell_id: str, slots: int, backend: str, metric: str, repo: Path | None,
           commits_file: Path | None, scenario: Path | None, image_template: str | None, tier: str | None,
           jobs_dir: Path, runs_dir: Path, max_samples: int, max_rounds: int, local_parallel: int,
           seed: int, baselines_dir: Path, history_db: str | None, build_images: str | None,
           wheel_index: str, search: Literal["posterior", "pinpoint"], min_change: float | None
           ) -> BisectDone:
    """Find the commit between `good` and `bad` that changed `metric` of the cell `cell_id`."""
    info = metric_info(metric)
    if info is None:
        raise ConfigError(f"unknown metric {metric!r}", where="--metric",
                          fix="use e.g. acceptance_length, acceptance_rate or tpot_p50_ms")
    cell = find_cell(jobs_dir, cell_id, tier)
    scenario_model = None
    if backend == "sim":
        if scenario is None:
            raise ConfigError("the sim backend needs a scenario", where="--scenario",
                              fix="pass --scenario FILE (see tests/fixtures/bisect/)")
        from fleet.backends.sim.scenario import load_scenario

        scenario_model = load_scenario(scenario)
    commits = commit_list(good, bad, repo, commits_file,
                       scenario_model.shas() if scenario_model is not None else None)
    template = image_template if image_template is not None else DEFAULT_IMAGE_TEMPLATES[backend]
    bisect_id = new_run_id(f"bisect-{cell.variant.name}")
    run_dir = runs_dir / bisect_id
    if build_images is not None and backend != "kube":
        raise ConfigError("--build-images builds images for the cluster", where="--build-images",
                          fix="use it with --backend kube, or leave it out")
    materialise, backend_for = wiring(backend, cell, template, repo, run_dir, scenario_model, scenario, seed,
                                       build_images, wheel_index)
    noise = announced_noise(baselines_dir, cell, metric)  # a malformed baseline stops it before any run
    ensure_writable_dir(run_dir, option="--runs-dir")
    stderr.print(f"bisect {bisect_id}: {len(commits) - 1} commits after good, cell {cell.id}, "
                 f"metric {metric}, {slots} slots on the {backend} backend -> {run_dir}", soft_wrap=True)
    hunted = {} if min_change is None else {"min_change": min_change / 100}
    policy = metric_policy(metric, slots, max_samples=max_samples, max_rounds=max_rounds, search=search,
                           **hunted)
    started = time.time()
    try:
        outcome = run_bisection(
            commits, metric=metric, policy=policy, materialise=materialise, backend_for=backend_for,
            run_id=bisect_id, waves=local_parallel if backend == "local" else None,
            on_round=lambda log, search: stderr.print(describe_round(log, commits, search), soft_wrap=True),
            noise=noise,
        )
    finally:
        if backend == "local" and repo is not None:  # the checkouts, not the results, are thrown away
            remove_worktrees(repo, sorted((run_dir / "checkouts").glob("*")))
    price = cell.hardware.price_per_hour_usd
    document = report_document(outcome, cell=cell, backend=backend, started=started, price_per_gpu_hour=price)
    text = render_text(document)
    (run_dir / "bisect.json").write_text(json.dumps(document, indent=2) + "\n")
    (run_dir / "bisect.txt").write_text(text)
    history_db = history_db_in(runs_dir, history_db)
    if history_db and backend != "sim":
        record_in_history(history_db, bisect_id, outcome, cell, document, price)
    found = outcome.finding.status in ("culprit", "range") and outcome.finding.verified
    return BisectDone(document, text, found)


def commit_list(good: str, bad: str, repo: Path | None, commits_file: Path | None,
             scenario_shas: list[str] | None) -> list[str]:
    if repo is not None and commits_file is not None:
        raise ConfigError("--repo and --commits both given", where="--repo/--commits", fix="pass one of them")
    if commits_file is not None:
        return commits_from_file(commits_file, good, bad)
    if repo is not None:
        return commits_from_git(repo, good, bad)
    if scenario_shas is not None:
        return commits_between(scenario_shas, good, bad, where="the scenario")
    raise ConfigError("no commit list", where="--repo/--commits",
                      fix="pass --repo PATH (a local vLLM clone) or --commits FILE (SHAs, oldest first)")


def announced_noise(baselines_dir: Path, cell: Cell, metric: str) -> Spread | None:
    baseline, path = find_baseline(baselines_dir, cell) if baselines_dir.is_dir() else (None, baselines_dir)
    noise = recorded_noise(baseline, metric)
    if noise is None:
        stderr.print(f"noise: no baseline runs of {metric} at {path}: the comparison's floors until the "
                     "bisection has measured its own spread", soft_wrap=True)
    else:
        stderr.print(f"noise: {metric} spread {noise.relative_sd:.2%} over {noise.freedom + 1} runs recorded "
                     f"in {path}", soft_wrap=True)
    return noise


def record_in_history(db: str, bisect_id: str, outcome: BisectOutcome, cell: Cell,
                      document: dict[str, Any], price: float | None) -> None:
    """The bisection, its answer and its Jobs' GPU time, so `fleet history --bisections` and the HTML pages
    can say what hunting culprits cost; a history that cannot be written only warns."""
    culprit = document["culprit"] if isinstance(document["culprit"], dict) else {}
    record = BisectionRecord(
        bisection_id=bisect_id, cell_id=cell.id, metric=outcome.metric, good_commit=outcome.commits[0],
        bad_commit=outcome.commits[-1], status=outcome.finding.status, first_commit=culprit.get("first"),
        last_commit=culprit.get("last"), verified=outcome.finding.verified, reason=outcome.finding.reason,
        conclusion=outcome.finding.conclusion,
        jobs=outcome.spans, prices={cell.hardware.name: price} if price is not None else {})
    try:
        with HistoryStore.open(db) as store:
            store.record_bisection(record)
    except FleetError as err:
        stderr.print(f"bisection not recorded in the history: {err.line()}")


def wiring(backend: str, cell: Cell, template: str, repo: Path | None, run_dir: Path,
            scenario_model: object, scenario_path: Path | None, seed: int,
            build_images: str | None = None, wheel_index: str = WHEEL_INDEX_TEMPLATE
            ) -> tuple[Callable[[str], Cell], Callable[[str], Backend]]:
    """How a commit becomes a cell, and which backend runs it (one per commit where cell ids collide)."""
    if backend == "local":
        templated = CHECKOUT_PLACEHOLDER in cell.model or CHECKOUT_PLACEHOLDER in (cell.draft_model or "")
        if not templated:
            raise ConfigError(f"cell {cell.id} names no {CHECKOUT_PLACEHOLDER} path, so every commit would "
                              "run the same models", where="--cell",
                              fix=f"write model or draft_model as {CHECKOUT_PLACEHOLDER}/path/in/the/repo")
        if repo is None:
            raise ConfigError("the local backend checks each commit out and needs the repository",
                              where="--repo", fix="pass --repo PATH")
        source = repo
        locals_: dict[str, LocalBackend] = {}

        def local_cell(sha: str) -> Cell:
            return with_checkout(cell, worktree(source, sha, run_dir / "checkouts"))

        # One reference cache for all commits: its key holds the model path (a {checkout} path differs
        # per commit) and the engine's version, so a reference is reused only where it cannot differ.
        shared_cache = (run_dir / "reference-cache").resolve()

        def command(cell_path: Path, result_path: Path, _own_cache: Path) -> list[str]:
            return suite_command(cell_path, result_path, shared_cache)

        def local_backend(sha: str) -> Backend:
            # Cell ids are the same for every commit, so each commit gets its own run directory.
            if sha not in locals_:
                locals_[sha] = LocalBackend(run_dir / "commits" / sha[:12], command=command)
            return locals_[sha]

        return local_cell, local_backend
    if backend == "sim":
        from fleet.backends.sim.backend import FAILURE_REASONS as SIM_FAILURE_REASONS
        from fleet.backends.sim.backend import SimBackend
        from fleet.backends.sim.scenario import Scenario

        assert isinstance(scenario_model, Scenario)
        sim = SimBackend(scenario_model, image_template=template, seed=seed,
                         scenario_name=scenario_path.name if scenario_path else "scenario")
        with_image(cell, template, "0")  # checks the template once, before anything runs
        index = {sha: i for i, sha in enumerate(scenario_model.shas())}

        def sim_backend(sha: str) -> Backend:
            # No image, or one that does not build: the registry (or --build-images) says so before a Job.
            why = scenario_model.broken_reason(index[sha]) if sha in index else None
            if why in ("no-image", "build-failure"):
                reason, message = SIM_FAILURE_REASONS[why]
                raise UntestableCommit(reason, message)
            return sim

        return (lambda sha: with_image(cell, template, sha)), sim_backend
    prepare = None
    if build_images is not None:
        prepare = image_builder(template, Path.cwd(), wheel_index if build_images == "wheel" else None)
    return kube_wiring(cell, template, run_dir, prepare)


def image_builder(template: str, root: Path, wheel_index: str | None = None) -> Callable[[str], None]:
    """Builds and pushes fleet's CUDA image of a commit under `template`'s tag (REPOSITORY/fleet-cuda:{sha}),
    from the commit's CI image or, given `wheel_index`, its wheel; a failed build makes it untestable."""
    repository = template.removesuffix(image_tag("cuda", SHA_PLACEHOLDER, ""))
    if image_tag("cuda", SHA_PLACEHOLDER, repository) != template or not repository.strip("/"):
        raise ConfigError(f"--build-images tags images as REPOSITORY/fleet-cuda:{{sha}}, not {template!r}",
                          where="--image-template", fix=f"pass e.g. --image-template {COMMIT_IMAGE_TEMPLATE}")
    plan_of = functools.partial(build_plan, root, vendor="cuda", repository=repository,
                                from_wheel=wheel_index is not None,
                                wheel_index=wheel_index or WHEEL_INDEX_TEMPLATE)
    plan_of(commit="0" * 40)  # the Dockerfile is here, the wheel index has its {sha}: checked once
    docker_sdk()  # refused before the search starts, not at the first commit's build
    if wheel_index is not None:  # one base for every commit, whatever release lands meanwhile
        plan_of = functools.partial(plan_of, wheel_base_tag=pinned_tag(CUDA_RELEASE_BASE, "latest"))
    failed: dict[str, UntestableCommit] = {}

    def build(sha: str) -> None:
        if sha in failed:  # a commit can be planned twice in one round: one failed build is enough
            raise failed[sha]
        plan = plan_of(commit=sha)
        source = plan.buildargs.get("VLLM_WHEEL_INDEX") or f"{plan.buildargs['VLLM_IMAGE']}:{sha[:12]}..."
        stderr.print(f"building {plan.tag} (from {source})", soft_wrap=True)
        try:
            run_build(plan, push=True)
        except FleetError as err:
            failed[sha] = UntestableCommit("BuildFailure", err.line())
            raise failed[sha] from err

    return build


def kube_wiring(cell: Cell, template: str, run_dir: Path, prepare: Callable[[str], None] | None
                 ) -> tuple[Callable[[str], Cell], Callable[[str], Backend]]:
    try:
        from fleet.backends.kube.client import make_backend
    except ImportError as err:
        raise ConfigError(f"the kube backend is not available: {err}", where="--backend",
                          fix="pip install 'fleet[kube]', or use --backend local or sim") from err
    return kube_commit_wiring(cell, template, run_dir, make_backend, prepare)


def kube_commit_wiring(cell: Cell, template: str, run_dir: Path, make_backend: Callable[..., Backend],
                       prepare: Callable[[str], None] | None = None) -> tuple[Callable[[str], Cell],
                                                                              Callable[[str], Backend]]:
    """Each commit's cell and backend on the cluster: its Jobs run on `template`'s image of that commit,
    under a run id of their own (Job names derive from run id, cell id and attempt); `prepare(sha)` runs
    once per commit before its first Job (it builds the image, or raises UntestableCommit)."""
    from fleet.plan.render import RenderContext

    with_image(cell, template, "0")
    kubes: dict[str, Backend] = {}
    # Per commit, where its pods ran: a commit rerun in a later round prefers another node, as a cell's
    # rerun does (fleet.plan.render._away_from), though each round has a backend of its own.
    nodes: dict[str, dict[str, set[str]]] = {}

    def kube_backend(sha: str) -> Backend:
        if sha not in kubes or kubes[sha].closed:  # closed after its last round: a new one, same run id
            if prepare is not None and sha not in kubes:
                prepare(sha)
            image = template.format(sha=sha)
            context = RenderContext(run_id=f"{run_dir.name[:40]}-{sha[:12]}", vllm_version=sha,
                                    image_overrides={"nvidia": image, "amd": image, "cpu": image})
            kubes[sha] = make_backend(context, run_dir=run_dir / "commits" / sha[:12],
                                      nodes=nodes.setdefault(sha, {}))
        return kubes[sha]

    return (lambda sha: with_image(cell, template, sha)), kube_backend
