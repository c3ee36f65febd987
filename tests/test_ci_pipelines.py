"""Generated CI pipelines have the fields Buildkite and GitHub Actions document, and their commands work."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.cli import main
from fleet.errors import ConfigError
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.pipelines import CiOptions, buildkite_pipeline, github_workflow, shard_timeout_minutes

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "jobs"
#: Top-level keys of a Buildkite pipeline (buildkite.com/docs/pipelines/configure/defining-steps).
BUILDKITE_TOP_LEVEL = {"steps", "env", "agents", "notify", "priority", "secrets"}
GITHUB_TOP_LEVEL = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
#: The reports, and what `fleet merge` judges again across shards and costs.
REPORT_FILES = {"report.json", "junit.xml", "report.md", "jobs.json", "cell.json", "result.attempt-*.json"}


def nightly() -> tuple[Any, Any]:
    tier = load_tier(JOBS, "nightly")
    return tier, expand(tier, load_catalog(JOBS), tier_path="jobs/nightly.yaml")


def run_fleet(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code: object = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().out


def buildkite_document(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(REPO)
    code, out = run_fleet(["ci", "buildkite", "--tier", "nightly", "--num-shards", "3"], capsys)
    assert code == 0
    return yaml.safe_load(out)


def test_buildkite_pipeline_has_documented_fields_when_nightly_runs_in_shards(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = buildkite_document(capsys, monkeypatch)
    assert set(pipeline) <= BUILDKITE_TOP_LEVEL
    steps = pipeline["steps"]
    command_steps = [step for step in steps if "wait" not in step]
    assert all(isinstance(step["label"], str) and isinstance(step["command"], str) for step in command_steps)
    run, wait, merge = steps
    assert "wait" in wait and wait["continue_on_failure"] is True
    assert isinstance(run["parallelism"], int) and run["parallelism"] == 3
    assert isinstance(run["timeout_in_minutes"], int) and run["timeout_in_minutes"] > 0
    assert {path.rsplit("/", 1)[1] for path in run["artifact_paths"]} == REPORT_FILES
    assert "--shard-id $$BUILDKITE_PARALLEL_JOB " in run["command"]
    assert "--num-shards $$BUILDKITE_PARALLEL_JOB_COUNT" in run["command"]
    assert "fleet merge" in merge["command"]
    assert pipeline["notify"][0]["slack"].startswith("#")


def test_buildkite_step_depends_on_the_variants_sources_when_generated_like_vllms_pipeline() -> None:
    tier, cells = nightly()
    step = buildkite_pipeline(tier, cells, CiOptions(num_shards=2))["steps"][0]
    expected = {pattern for cell in cells for pattern in cell.variant.source_file_dependencies}
    assert set(step["source_file_dependencies"]) == expected
    assert "vllm/v1/spec_decode/" in expected


def test_step_timeout_covers_the_fullest_shard_when_every_cell_hits_its_timeout() -> None:
    tier, cells = nightly()
    per_cell_minutes = tier.timeout_s / 60
    fullest_cells = -(-len(cells) // 4)  # equal timeouts: the fullest shard holds ceil(n / 4) cells
    assert shard_timeout_minutes(cells, 4) >= fullest_cells * per_cell_minutes
    assert shard_timeout_minutes(cells, 1) > shard_timeout_minutes(cells, 4)


def test_buildkite_shard_command_runs_when_parallel_job_variables_are_filled_in(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    command = buildkite_document(capsys, monkeypatch)["steps"][0]["command"]
    argv = shlex.split(command.replace("$$BUILDKITE_PARALLEL_JOB_COUNT", "3")
                       .replace("$$BUILDKITE_PARALLEL_JOB", "2"))
    assert argv[0] == "fleet"
    code, out = run_fleet([*argv[1:], "--dry-run", "--history-db", ""], capsys)
    assert code == 0 and "kind: Job" in out


def test_github_workflow_has_documented_fields_when_nightly_runs_in_shards(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code, out = run_fleet(["ci", "github", "--tier", "nightly", "--num-shards", "4"], capsys)
    assert code == 0
    workflow = yaml.safe_load(out)
    # YAML 1.1 reads a bare `on` as True; the generator must quote it.
    assert set(workflow) <= GITHUB_TOP_LEVEL and "on" in workflow
    assert workflow["on"]["schedule"] == [{"cron": load_tier(JOBS, "nightly").schedule}]
    assert "workflow_dispatch" in workflow["on"]
    jobs = workflow["jobs"]
    shards, merge = jobs["shards"], jobs["merge"]
    assert shards["strategy"]["matrix"]["shard"] == [0, 1, 2, 3]
    assert merge["needs"] == "shards"
    for job in jobs.values():
        assert isinstance(job["runs-on"], str) and isinstance(job["timeout-minutes"], int)
        assert job["steps"] and all(("run" in step) != ("uses" in step) for step in job["steps"])
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
    uploads = [s for s in shards["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["if"] == "always()"
    assert {line.rsplit("/", 1)[1] for line in uploads[0]["with"]["path"].splitlines()} == REPORT_FILES
    merge_runs = " ".join(step.get("run", "") for step in merge["steps"])
    assert "fleet merge" in merge_runs and "$GITHUB_STEP_SUMMARY" in merge_runs
    assert "--github-issue-repo" in merge_runs and workflow["permissions"]["issues"] == "write"
    assert all("secrets." not in step.get("run", "") for step in merge["steps"])  # secrets via env only


def test_github_workflow_is_dispatch_only_when_the_tier_has_no_schedule() -> None:
    tier, cells = nightly()
    workflow = github_workflow(tier.model_copy(update={"schedule": None}), cells, CiOptions())
    assert workflow["on"] == {"workflow_dispatch": {}}


def test_a_github_shard_installs_what_its_backend_needs() -> None:
    tier, cells = nightly()
    local_tier = load_tier(JOBS, "local")
    local_cells = expand(local_tier, load_catalog(JOBS), tier_path="jobs/local.yaml")

    def installs(workflow: dict[str, Any]) -> list[str]:
        return [step["run"] for job in workflow["jobs"].values() for step in job["steps"]
                if str(step.get("run", "")).startswith("pip install")]

    assert set(installs(github_workflow(tier, cells, CiOptions()))) == {"pip install -e '.[kube]'"}
    # The local backend runs the reference engine on the runner: torch pinned to its CPU wheel.
    assert set(installs(github_workflow(local_tier, local_cells, CiOptions()))) == {
        "pip install torch==2.13.0 -e '.[local]'"}


def test_a_shard_longer_than_a_hosted_runner_allows_is_refused_with_the_shards_that_fit() -> None:
    tier = load_tier(JOBS, "weekly")
    cells = expand(tier, load_catalog(JOBS), tier_path="jobs/weekly.yaml")
    with pytest.raises(ConfigError, match="stop a job at 360") as refused:
        github_workflow(tier, cells, CiOptions(num_shards=1))
    enough = int(str(refused.value.fix).split("--num-shards ")[1].split(",")[0])
    assert shard_timeout_minutes(cells, enough) <= 360 < shard_timeout_minutes(cells, enough - 1)
    assert github_workflow(tier, cells, CiOptions(num_shards=enough))["jobs"]
    assert github_workflow(tier, cells, CiOptions(num_shards=1, runs_on="gpu-controller"))["jobs"]
