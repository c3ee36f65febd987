"""A mistake anywhere in jobs/ is reported as ONE line naming the file and the entry or field to fix.

Each case copies the shipped jobs/ into a temporary folder, breaks one thing, and plans a tier.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleet.errors import ConfigError, ExitCode
from fleet.model import Cell
from fleet.plan.catalog import display_path, load_catalog, load_tier, tier_file
from fleet.plan.matrix import expand

SHIPPED_JOBS = Path(__file__).resolve().parents[2] / "jobs"


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    copy = tmp_path / "jobs"
    shutil.copytree(SHIPPED_JOBS, copy)
    return copy


def plan(jobs: Path, tier: str = "nightly") -> list[Cell]:
    catalog = load_catalog(jobs)
    return expand(load_tier(jobs, tier), catalog, tier_path=display_path(tier_file(jobs, tier)))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) >= 1, f"{old!r} not in {path.name}: the shipped file changed, update the test"
    path.write_text(text.replace(old, new, 1))


def planning_error(jobs: Path, tier: str = "nightly") -> str:
    with pytest.raises(ConfigError) as caught:
        plan(jobs, tier)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.exit_code == ExitCode.CONFIG
    return message


# (file to break, text to replace, replacement, fragments the one-line message must contain)
BROKEN_FILES = [
    pytest.param(
        "variants.yaml", "method: eagle3\n  num_speculative_tokens: 3",
        "method: eagle3\n  num_speculative_tokens: 0",
        ["jobs/variants.yaml: variants.eagle3.num_speculative_tokens: "
         "Input should be greater than or equal to 1"],
        id="number-out-of-range"),
    pytest.param(
        "variants.yaml", "method: eagle3\n  num_speculative_tokens: 3",
        "method: eagle3\n  num_speculative_tokens: three",
        ["jobs/variants.yaml: variants.eagle3.num_speculative_tokens: Input should be a valid integer",
         "'three'"],
        id="wrong-field-type"),
    pytest.param(
        "variants.yaml", "method: eagle3\n", "method: eagle3\n  num_spec_tokens: 3\n",
        ["jobs/variants.yaml: variants.eagle3.num_spec_tokens: Extra inputs are not permitted"],
        id="unknown-field-in-variant"),
    pytest.param(
        "variants.yaml", "method: eagle3\n", "method: eagle-3\n",
        ["jobs/variants.yaml: variants.eagle3.method: Input should be", "'eagle-3'"],
        id="unknown-method"),
    pytest.param(
        "hardware.yaml", "vendor: amd", "vendor: intel",
        ["jobs/hardware.yaml: hardware.mi300.vendor: Input should be 'nvidia', 'amd' or 'cpu'"],
        id="unknown-vendor"),
    pytest.param(
        "hardware.yaml", "a100:\n", "l4:\n",
        ["jobs/hardware.yaml:", "duplicate key 'l4'"],
        id="duplicate-hardware-key"),
    pytest.param(
        "hardware.yaml", "cpu:\n  vendor: cpu", "cpu: [cpu]\nspare:\n  vendor: cpu",
        ["jobs/hardware.yaml: hardware.cpu: expected a mapping of fields, got a list"],
        id="entry-not-a-mapping"),
    pytest.param(
        "nightly.yaml", "hardware: [l4, a100]", "hardware: [l4, h800]",
        ["jobs/nightly.yaml: cells[0].hardware: unknown hardware 'h800' "
         "(known: a100, cpu, h100, h200, l4, mi300)"],
        id="unknown-hardware"),
    pytest.param(
        "nightly.yaml", "  - variant: eagle\n", "  - variant: eagle2\n",
        ["jobs/nightly.yaml: cells[2].variant: unknown variant 'eagle2' (known: ", "eagle3"],
        id="unknown-variant"),
    pytest.param(
        "nightly.yaml", "    draft_model: AngelSlim/Qwen3-8B_eagle3\n", "",
        ["jobs/nightly.yaml: cells[1].draft_model: variant 'eagle3' (method eagle3) needs a draft model"],
        id="missing-draft"),
    pytest.param(
        "nightly.yaml", "  - variant: ngram\n    model: Qwen/Qwen3-8B\n",
        "  - variant: ngram\n    model: Qwen/Qwen3-8B\n    draft_model: Qwen/Qwen3-0.6B\n",
        ["jobs/nightly.yaml: cells[4].draft_model: variant 'ngram' (method ngram) takes no draft model"],
        id="draft-given-to-ngram"),
    pytest.param(
        "nightly.yaml", "  - variant: ngram\n    model: Qwen/Qwen3-8B\n",
        "  - variant: ngram\n    model: meta-llama/Llama-3.1-8B-Instruct\n",
        ["jobs/nightly.yaml: cells[4]: duplicate cell 'ngram__llama-3.1-8b-instruct__l4'", "cells[3]",
         "(and 1 more problem in this file)"],
        id="duplicate-cell"),
    pytest.param(
        "nightly.yaml", "schedule:", "schedul:",
        ["jobs/nightly.yaml: schedul: Extra inputs are not permitted"],
        id="unknown-field-in-tier"),
    pytest.param(
        "nightly.yaml", "num_prompts: 200", "num_prompts: many",
        ["jobs/nightly.yaml: workload.num_prompts: Input should be a valid integer"],
        id="wrong-type-in-tier-workload"),
    pytest.param(
        "nightly.yaml", "    model: Qwen/Qwen3-8B\n    draft_model: AngelSlim/Qwen3-8B_eagle3\n",
        "    model: Qwen/Qwen3-8B\n    draft_model: AngelSlim/Qwen3-8B_eagle3\n    hardwares: [l4]\n",
        ["jobs/nightly.yaml: cells[1].hardwares: Extra inputs are not permitted"],
        id="unknown-field-in-entry"),
    pytest.param(
        "nightly.yaml", "timeout_s: 1200", "timeout_s: 1200\nmax_runs: 50",
        ["jobs/nightly.yaml: max_runs: Input should be less than or equal to 20"],
        id="rerun-budget-out-of-range"),
    pytest.param(
        "nightly.yaml", "description:", "name: nightly-2\ndescription:",
        ["jobs/nightly.yaml: name: name 'nightly-2' differs from 'nightly'"],
        id="tier-name-differs-from-file"),
]


@pytest.mark.parametrize(("file", "old", "new", "fragments"), BROKEN_FILES)
def test_one_line_names_the_file_and_field_when_a_jobs_file_is_wrong(
    jobs: Path, file: str, old: str, new: str, fragments: list[str]
) -> None:
    edit(jobs / file, old, new)

    message = planning_error(jobs)

    for fragment in fragments:
        assert fragment in message


def test_line_and_column_are_given_when_yaml_is_malformed(jobs: Path) -> None:
    path = jobs / "variants.yaml"
    lines = path.read_text().splitlines()
    broken_line = lines.index("eagle:") + 2  # 1-based number of the line after "eagle:"
    edit(path, "eagle:\n", "eagle:\n  method: eagle: 3\n")

    message = planning_error(jobs)

    # The column is the second colon's: the one YAML cannot parse.
    assert f"jobs/variants.yaml:{broken_line}:16: invalid YAML: mapping values are not allowed" in message


def test_empty_cells_are_refused_when_a_tier_lists_none(jobs: Path) -> None:
    (jobs / "smoke.yaml").write_text("description: nothing to run\ncells: []\n")

    message = planning_error(jobs, "smoke")

    assert "jobs/smoke.yaml: cells: List should have at least 1 item" in message


def test_an_empty_file_is_named_when_a_catalog_has_no_content(jobs: Path) -> None:
    (jobs / "hardware.yaml").write_text("# nothing yet\n")

    message = planning_error(jobs)

    assert "jobs/hardware.yaml: the file is empty" in message


def test_a_missing_catalog_file_is_named_when_the_jobs_folder_lacks_it(jobs: Path) -> None:
    (jobs / "variants.yaml").unlink()

    message = planning_error(jobs)

    assert "variants.yaml not found" in message
    assert "--jobs" in message


def test_the_jobs_flag_is_suggested_when_the_jobs_folder_does_not_exist(tmp_path: Path) -> None:
    message = planning_error(tmp_path / "no-such-jobs")

    assert "jobs directory" in message and "no-such-jobs" in message and "not found" in message
    assert "--jobs" in message


def test_available_tiers_are_listed_when_the_tier_name_is_unknown(jobs: Path) -> None:
    message = planning_error(jobs, "nightlyy")

    assert "unknown tier 'nightlyy' (available: h200, local, nightly, smoke, weekly)" in message


def test_catalog_files_are_not_tiers_when_named_as_one(jobs: Path) -> None:
    message = planning_error(jobs, "hardware")

    assert "unknown tier 'hardware'" in message


def test_every_problem_is_counted_when_several_entries_are_wrong(jobs: Path) -> None:
    edit(jobs / "nightly.yaml", "hardware: [l4, a100]", "hardware: [l4, h800]")
    edit(jobs / "nightly.yaml", "  - variant: eagle\n", "  - variant: eagle2\n")

    message = planning_error(jobs)

    assert "cells[0].hardware: unknown hardware 'h800'" in message
    assert "(and 1 more problem in this file)" in message


def test_paths_below_the_working_directory_are_shown_relative(monkeypatch: pytest.MonkeyPatch,
                                                               jobs: Path) -> None:
    monkeypatch.chdir(jobs.parent)
    edit(jobs / "variants.yaml", "method: eagle3\n  num_speculative_tokens: 3",
         "method: eagle3\n  num_speculative_tokens: 0")

    with pytest.raises(ConfigError) as caught:
        load_catalog(Path("jobs"))

    assert str(caught.value).startswith(
        "config error: jobs/variants.yaml: variants.eagle3.num_speculative_tokens: ")
