"""Bad input at the command line: one clear line naming the file and field, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import Fleet

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of jobs/ and baselines/ to break, as the current directory."""
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    shutil.copytree(REPO / "baselines", tmp_path / "baselines")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit_yaml(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def assert_one_config_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_nothing_written(workdir: Path) -> None:
    assert not (workdir / "runs").exists()


def test_malformed_tier_yaml(workdir: Path, fleet: Fleet) -> None:
    (workdir / "jobs" / "local.yaml").write_text("name: local\ncells: [\n  - {variant: x\n")
    code, _, err = fleet("submit", "--tier", "local")
    assert_one_config_line(code, err, "local.yaml")
    assert_nothing_written(workdir)


def test_unknown_hardware_in_a_tier(workdir: Path, fleet: Fleet) -> None:
    edit_yaml(workdir / "jobs" / "local.yaml", lambda d: d["cells"][0].update(hardware=["h800"]))  # type: ignore[index]
    code, _, err = fleet("submit", "--tier", "local")
    assert_one_config_line(code, err, "local.yaml", "h800")
    assert_nothing_written(workdir)


def test_unknown_variant_in_a_tier(workdir: Path, fleet: Fleet) -> None:
    edit_yaml(workdir / "jobs" / "local.yaml", lambda d: d["cells"][0].update(variant="eagle9"))  # type: ignore[index]
    code, _, err = fleet("submit", "--tier", "local")
    assert_one_config_line(code, err, "local.yaml", "eagle9")
    assert_nothing_written(workdir)


def test_unknown_field_in_hardware_catalog(workdir: Path, fleet: Fleet) -> None:
    edit_yaml(workdir / "jobs" / "hardware.yaml", lambda d: d["cpu"].update(gpus_count=3))  # type: ignore[attr-defined]
    code, _, err = fleet("plan", "--tier", "local")
    assert_one_config_line(code, err, "hardware.yaml", "gpus_count")


def test_baseline_violating_the_schema_stops_the_run_before_it_starts(workdir: Path, fleet: Fleet) -> None:
    [path, *_] = sorted((workdir / "baselines" / "cpu").glob("*.json"))
    document = json.loads(path.read_text())
    next(iter(document["baselines"].values()))["tolerance_pct"] = -5
    path.write_text(json.dumps(document))
    code, _, err = fleet("submit", "--tier", "local")
    assert_one_config_line(code, err, path.name, "tolerance_pct")
    assert_nothing_written(workdir)


@pytest.mark.parametrize("command", [("plan",), ("submit", "--backend", "kube", "--dry-run")])
def test_a_misspelt_bundled_model_is_refused_whatever_the_backend(workdir: Path, fleet: Fleet,
                                                                 command: tuple[str, ...]) -> None:
    def misspell(data: dict[str, object]) -> None:
        data["cells"][0]["model"] = "bundled:tiny-stdlb/target"  # type: ignore[index]

    edit_yaml(workdir / "jobs" / "local.yaml", misspell)
    code, _, err = fleet(*command, "--tier", "local")
    assert_one_config_line(code, err, "local.yaml", "bundled:tiny-stdlb/target", "bundled:tiny-stdlib/target")
    assert_nothing_written(workdir)


def test_missing_model_path(workdir: Path, fleet: Fleet) -> None:
    def point_draft_nowhere(data: dict[str, object]) -> None:
        for entry in data["cells"]:  # type: ignore[attr-defined]
            if entry.get("draft_model"):
                entry["draft_model"] = str(workdir / "no-such-draft")

    edit_yaml(workdir / "jobs" / "local.yaml", point_draft_nowhere)
    code, _, err = fleet("submit", "--tier", "local")
    assert_one_config_line(code, err, "local.yaml", "draft_model", "no-such-draft")
    assert_nothing_written(workdir)


def test_unwritable_output_directory(workdir: Path, fleet: Fleet) -> None:
    (workdir / "a-file").write_text("not a directory")
    code, _, err = fleet("submit", "--tier", "local", "--variant", "ngram-k4",
                         "--runs-dir", str(workdir / "a-file" / "runs"))
    assert_one_config_line(code, err, "--runs-dir")


def test_an_unusable_report_folder_stops_the_run_before_any_cell_runs(workdir: Path, fleet: Fleet) -> None:
    (workdir / "a-file").write_text("not a directory")
    code, _, err = fleet("submit", "--tier", "local", "--report-dir", str(workdir / "a-file"))
    assert_one_config_line(code, err, "--report-dir")
    assert_nothing_written(workdir)


def test_a_baselines_folder_that_does_not_exist_stops_the_run_before_any_cell_runs(
        workdir: Path, fleet: Fleet) -> None:
    code, _, err = fleet("submit", "--tier", "local", "--baselines", str(workdir / "baselines-typo"))
    assert_one_config_line(code, err, "baselines-typo", "no baselines folder")
    assert_nothing_written(workdir)


def test_a_missing_model_is_blamed_on_the_tier_file_in_the_jobs_folder_given(workdir: Path,
                                                                             fleet: Fleet) -> None:
    shutil.move(workdir / "jobs", workdir / "my-jobs")

    def point_draft_nowhere(data: dict[str, object]) -> None:
        for entry in data["cells"]:  # type: ignore[attr-defined]
            if entry.get("draft_model"):
                entry["draft_model"] = str(workdir / "no-such-draft")

    edit_yaml(workdir / "my-jobs" / "local.yaml", point_draft_nowhere)
    code, _, err = fleet("submit", "--tier", "local", "--jobs", "my-jobs")
    assert_one_config_line(code, err, "my-jobs/local.yaml", "draft_model")


def test_unknown_tier_lists_the_known_ones(workdir: Path, fleet: Fleet) -> None:
    code, _, err = fleet("plan", "--tier", "fortnightly")
    assert_one_config_line(code, err, "fortnightly", "local")


def test_missing_jobs_directory(workdir: Path, fleet: Fleet) -> None:
    code, _, err = fleet("submit", "--tier", "local", "--jobs", "nowhere")
    assert_one_config_line(code, err, "nowhere", "--jobs")
    assert_nothing_written(workdir)


def test_invalid_parallelism_is_a_usage_error(workdir: Path, fleet: Fleet) -> None:
    code, _, err = fleet("submit", "--tier", "local", "--parallel", "0")
    assert_one_config_line(code, err, "--parallel", "fleet submit --help")
    assert_nothing_written(workdir)
    code, _, err = fleet("submit")
    assert_one_config_line(code, err, "Missing option '--tier'")


def test_judging_a_file_that_is_not_a_result(workdir: Path, fleet: Fleet) -> None:
    (workdir / "result.json").write_text(json.dumps({"schema_version": 1, "status": "ok"}))
    code, _, err = fleet("judge", "result.json")
    assert_one_config_line(code, err, "result.json", "cell")


def test_judging_a_result_from_a_future_schema(workdir: Path, fleet: Fleet) -> None:
    (workdir / "result.json").write_text(json.dumps({"schema_version": 9}))
    code, _, err = fleet("judge", "result.json")
    assert_one_config_line(code, err, "result.json", "schema_version")


def test_suite_rejects_a_malformed_cell_and_writes_no_result(workdir: Path, fleet: Fleet) -> None:
    (workdir / "cell.json").write_text('{"tier": "local", "variant": {}}')
    code, _, err = fleet("suite", "run", "--cell", "cell.json", "--out", "result.json")
    assert_one_config_line(code, err, "cell.json")
    assert not (workdir / "result.json").exists()


def test_recording_refuses_to_overwrite_without_update(workdir: Path, fleet: Fleet) -> None:
    code, _, err = fleet("baseline", "record", "--tier", "local", "--runs", "2")
    assert_one_config_line(code, err, "--update")
    assert_nothing_written(workdir)


def test_sigterm_as_a_ci_cancels_a_job_aborts_like_ctrl_c(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    import fleet.cli.run_cmds as run_cmds
    from fleet.cli import main

    def cancelled(*_: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run_cmds, "plan_cells", cancelled)
    with pytest.raises(SystemExit) as stop:
        main(["plan", "--tier", "local"])
    assert stop.value.code == 3 and "aborted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handed back as it was


def test_two_formats_asked_for_on_stdout_is_a_usage_error_before_any_cell_runs(workdir: Path,
                                                                               fleet: Fleet) -> None:
    code, _, err = fleet("submit", "--tier", "local", "--json", "--format", "markdown")
    assert_one_config_line(code, err, "--json", "--format markdown")
    assert_nothing_written(workdir)


# --- issue 31: inputs refused before any work -----------------------------------------------------------

def test_a_cell_without_a_baseline_is_refused_before_any_run_directory(workdir: Path, fleet: Fleet) -> None:
    (workdir / "baselines" / "cpu" / "ngram-k4__tiny-stdlib-target.json").unlink()
    code, _, err = fleet("submit", "--tier", "local")
    assert_one_config_line(code, err, "no baseline", "ngram-k4__tiny-stdlib-target.json",
                           "--allow-missing-baselines",
                           "fleet baseline record --tier local --hardware cpu --variant ngram-k4")
    assert_nothing_written(workdir)


def test_allow_missing_baselines_lets_the_run_go_past_the_baseline_check(workdir: Path, fleet: Fleet) -> None:
    (workdir / "baselines" / "cpu" / "ngram-k4__tiny-stdlib-target.json").unlink()
    (workdir / "a-file").write_text("not a directory")
    # The next check refuses instead, so no engine runs: the baseline check was passed.
    code, _, err = fleet("submit", "--tier", "local", "--allow-missing-baselines",
                         "--runs-dir", str(workdir / "a-file" / "runs"))
    assert_one_config_line(code, err, "--runs-dir")


def _misspell(path: Path) -> None:
    document = json.loads(path.read_text())
    document["baselines"]["acceptance_lenght"] = document["baselines"].pop("acceptance_length")
    path.write_text(json.dumps(document))


def test_a_misspelt_metric_in_a_baseline_is_refused_before_the_run(workdir: Path, fleet: Fleet) -> None:
    _misspell(workdir / "baselines" / "cpu" / "ngram-k4__tiny-stdlib-target.json")
    code, _, err = fleet("submit", "--tier", "local", "--allow-missing-baselines")
    assert_one_config_line(code, err, "baselines.acceptance_lenght", "did you mean 'acceptance_length'")
    assert_nothing_written(workdir)


def test_a_misspelt_metric_in_a_baseline_is_refused_by_fleet_judge(workdir: Path, fleet: Fleet) -> None:
    _misspell(workdir / "baselines" / "cpu" / "ngram-k4__tiny-stdlib-target.json")
    result = REPO / "evidence" / "cpu" / "r1" / "ngram-k4__tiny-stdlib-target__cpu.json"
    code, _, err = fleet("judge", str(result))
    assert_one_config_line(code, err, "baselines.acceptance_lenght")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("metrics.acceptance_length", -3.0, "acceptance_length = -3.0"),
    ("metrics.acceptance_length", 0.5, "acceptance_length = 0.5"),
    ("metrics.match_rate", float("nan"), "match_rate = nan"),
    ("metrics.ttft_p50_ms", float("inf"), "ttft_p50_ms = inf"),
    ("metrics.tpot_p50_ms", 1e300, "tpot_p50_ms = 1e+300"),
    ("metrics.acceptance_rate", 1.5, "acceptance_rate = 1.5"),
    ("counters.num_drafts", -1, "counters.num_drafts"),
    ("match.exact_token_matches", 21, "exact_token_matches exceeds num_prompts"),
])
def test_an_impossible_value_in_a_result_is_one_line_naming_file_and_field(
        workdir: Path, fleet: Fleet, field: str, value: float, needle: str) -> None:
    recorded = REPO / "evidence" / "cpu" / "r1" / "ngram-k4__tiny-stdlib-target__cpu.json"
    document = json.loads(recorded.read_text())
    part, key = field.split(".")
    document[part][key] = value
    path = workdir / "bad-result.json"
    path.write_text(json.dumps(document))  # NaN and Infinity as Python's json writes them
    code, out, err = fleet("judge", str(path), "--format", "markdown")
    assert_one_config_line(code, err, "bad-result.json", needle)
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("text", ["apiVersion: v1\nclusters: [\n  - {name: x\n",
                                  "apiVersion: v1\nkind: Config\nclusters: 5\ncontexts: hello\n"])
def test_a_malformed_kubeconfig_is_one_line_and_leaves_no_run_directory(
        workdir: Path, fleet: Fleet, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a cluster: the kubeconfig is read
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(text)
    code, _, err = fleet("submit", "--tier", "nightly", "--backend", "kube", "--kubeconfig", str(kubeconfig),
                         "--allow-missing-baselines", "--history-db", "")
    assert_one_config_line(code, err, "kubeconfig", "malformed kubeconfig")
    assert "Traceback" not in err
    assert_nothing_written(workdir)


def test_a_run_refused_before_any_cell_started_leaves_nothing_to_resume(tmp_path: Path) -> None:
    from fleet.run.submit import discard_unstarted

    unstarted, started = tmp_path / "nightly-a", tmp_path / "nightly-b"
    for run_dir in (unstarted, started):
        run_dir.mkdir()
        (run_dir / "run.json").write_text("{}")
    (started / "cells").mkdir()
    discard_unstarted(unstarted)
    discard_unstarted(started)
    assert not unstarted.exists() and (started / "run.json").exists()
