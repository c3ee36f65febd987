"""`fleet bisect --backend kube`: each commit's Jobs run on fleet's image of that commit, through the kube
backend (the official client against the emulated API server), and the search names the commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.backends.kube.backend import KubeBackend
from fleet.backends.kube.client import make_backend
from fleet.bisect.terms import SearchPolicy
from fleet.model import Cell, RunResult
from fleet.plan.render import LABEL_ATTEMPT, RenderContext
from fleet.run.bisect_setup import DEFAULT_IMAGE_TEMPLATES, kube_commit_wiring
from fleet.run.bisection import BisectOutcome, UntestableCommit, run_bisection
from tests.backends.kube.test_kube_backend import avoided_nodes
from tests.builders import make_cell, ok_result
from tests.kube.harness import FAST, FAST_API, Rig, rig

SHAS = [f"{index:02d}" + "c" * 38 for index in range(30)]
CULPRIT = 19
TEMPLATE = DEFAULT_IMAGE_TEMPLATES["kube"]


def measured_on_its_image(cell: Cell) -> RunResult:
    """What a pod reports: acceptance length 2.2, 5 % lower from the culprit's image on."""
    sha = cell.hardware.image.rsplit(":", 1)[1] if cell.hardware.image else ""
    drop = 0.95 if SHAS.index(sha) >= CULPRIT else 1.0
    return ok_result(cell).model_copy(update={"metrics": {"acceptance_length": 2.2 * drop}})


def image_of(job: dict[str, Any]) -> str:
    image: str = job["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def job_images(r: Rig) -> set[str]:
    jobs: list[dict[str, Any]] = r.emulator.list("jobs", "fleet")
    return {image_of(job) for job in jobs}


def bisect_on_the_cluster(r: Rig, run_dir: Path,
                          prepare: Callable[[str], None] | None = None) -> BisectOutcome:
    backends: list[KubeBackend] = []

    def factory(context: RenderContext, run_dir: Path, nodes: dict[str, set[str]]) -> KubeBackend:
        backends.append(make_backend(context, run_dir=run_dir, host=r.server.url, api_settings=FAST_API,
                                     settings=FAST, sleep=r.clock.sleep, clock=r.clock, nodes=nodes))
        return backends[-1]

    materialise, backend_for = kube_commit_wiring(make_cell("ngram-k4"), TEMPLATE, run_dir, factory, prepare)
    outcome = run_bisection(SHAS, metric="acceptance_length", policy=SearchPolicy(slots=4),
                            materialise=materialise, backend_for=backend_for, run_id=run_dir.name)
    unbuilt = {index for index, record in enumerate(outcome.bisection.records)
               if any("BuildFailure" in failure for failure in record.failures)}
    # One backend per commit and round (and one for each commit a refusal dropped from its round's plan),
    # each closed when its round is over: no watch outlives its round.
    running = sum(len({run.commit for run in log.runs} - unbuilt) for log in outcome.rounds)
    replanned = sum(bool(log.refused) for log in outcome.rounds)
    assert running <= len(backends) <= running + 4 * replanned
    assert all(backend.closed for backend in backends), "a commit's watch was left open"
    return outcome


def test_a_cluster_bisection_runs_each_commit_on_its_image_and_names_the_culprit(tmp_path: Path) -> None:
    with rig(result=measured_on_its_image) as r:
        outcome = bisect_on_the_cluster(r, tmp_path / "bisect-ngram")
        images = job_images(r)
    finding = outcome.finding
    assert (finding.status, finding.first, finding.last, finding.verified) == ("culprit", 19, 19, True)
    measured = {SHAS[index] for index, record in enumerate(outcome.bisection.records) if record.samples}
    assert images == {TEMPLATE.format(sha=sha) for sha in measured}
    assert len(outcome.spans) == outcome.bisection.runs


def test_a_commit_rerun_in_a_later_round_prefers_nodes_it_has_not_run_on(tmp_path: Path) -> None:
    # Each round has backends of its own; what they learnt of where a commit ran must outlive them.
    with rig(result=measured_on_its_image, nodes=("gpu-a", "gpu-b", "gpu-c", "gpu-d")) as r:
        outcome = bisect_on_the_cluster(r, tmp_path / "bisect-ngram")
        jobs = {job["metadata"]["name"]: job for job in r.emulator.list("jobs", "fleet")}
        pods = r.emulator.list("pods", "fleet")
    round_of: dict[tuple[str, int], int] = {}  # (sha, attempt) -> round, attempts numbered per commit
    attempts: Counter[str] = Counter()
    for number, log in enumerate(outcome.rounds, start=1):
        for run in log.runs:
            attempts[SHAS[run.commit]] += 1
            round_of[(SHAS[run.commit], attempts[SHAS[run.commit]])] = number

    def key(job: dict[str, Any]) -> tuple[str, int]:
        return image_of(job).rsplit(":", 1)[1], int(job["metadata"]["labels"][LABEL_ATTEMPT])

    ran_on = {key(jobs[pod["metadata"]["labels"]["job-name"]]): pod["spec"]["nodeName"] for pod in pods}
    later = 0
    for job in jobs.values():
        sha, attempt = key(job)
        earlier = {node for (other, n), node in ran_on.items()
                   if other == sha and round_of[(other, n)] < round_of[(sha, attempt)]}
        avoided = {node for values in avoided_nodes(job) for node in values}
        assert earlier <= avoided, (sha[:2], attempt, earlier, avoided)
        later += bool(earlier)
    assert later > 0  # some commits (the culprit, its parent) ran again in later rounds


def test_commits_whose_image_the_registry_lacks_are_skipped_and_the_answer_is_a_range(tmp_path: Path) -> None:
    missing = frozenset(TEMPLATE.format(sha=sha) for sha in SHAS[17:20])  # the culprit's among them
    with rig(result=measured_on_its_image, missing_images=missing) as r:
        r.clock.step = 20.0  # each look at the clock is 20 s later: the image pull grace passes
        outcome = bisect_on_the_cluster(r, tmp_path / "bisect-ngram")
    finding = outcome.finding
    assert (finding.status, finding.first, finding.last, finding.verified) == ("range", 17, 20, True)
    for index in (17, 18, 19):
        record = outcome.bisection.records[index]
        if record.failures:  # probed: the round's pull that backed off marks it untestable, never retried
            assert record.untestable is not None and "ImagePullBackOff" in record.untestable
            assert sum(any(run.commit == index for run in log.runs) for log in outcome.rounds) == 1


def test_images_built_on_demand_once_per_commit_and_a_failed_build_skips_the_commit(tmp_path: Path) -> None:
    built: list[str] = []

    def build(sha: str) -> None:
        if SHAS.index(sha) in (17, 18, 19):
            raise UntestableCommit("BuildFailure", "docker build failed: manifest unknown")
        built.append(sha)

    with rig(result=measured_on_its_image) as r:
        outcome = bisect_on_the_cluster(r, tmp_path / "bisect-ngram", prepare=build)
        images = job_images(r)
    finding = outcome.finding
    assert (finding.status, finding.first, finding.last, finding.verified) == ("range", 17, 20, True)
    assert sorted(built) == sorted(set(built))  # once per commit, however often it runs
    assert outcome.bisection.runs == len(outcome.spans)  # a commit that could not be built cost no run
    assert images == {TEMPLATE.format(sha=sha) for sha in built}
    for index in (17, 18, 19):
        record = outcome.bisection.records[index]
        assert not record.samples and (not record.failures or record.untestable is not None)
