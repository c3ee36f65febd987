"""`fleet select`: the cells a change touches, from each variant's source_file_dependencies (jobs/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fleet.cli.history_cmds import select_cmd
from fleet.model import Cell
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.select import parse_changed_files, select

JOBS = Path(__file__).resolve().parents[2] / "jobs"
ALL = {"eagle3", "eagle", "ngram", "ngram_gpu", "draft_model", "mtp", "medusa", "suffix"}

#: RFC #28135's smart-triggering paths (the spec-decode package, per-method model files, the config)
#: and paths next to them that must not trigger, with the variants of the weekly tier each must select.
CASES = [
    (["vllm/v1/spec_decode/eagle.py"], ALL),
    (["vllm/v1/spec_decode/metrics.py"], ALL),
    (["vllm/model_executor/models/llama_eagle3.py"], ALL),
    (["vllm/model_executor/models/medusa.py"], ALL),
    (["vllm/config/speculative.py"], ALL),
    (["./vllm/config/speculative.py"], ALL),
    (["vllm/v1/sample/rejection_sampler.py"], ALL),
    (["vllm/v1/worker/gpu/spec_decode/eagle_cudagraph.py"], ALL),
    (["vllm/model_executor/models/deepseek_mtp.py"], {"mtp"}),
    (["vllm/model_executor/models/qwen3_next_mtp.py"], {"mtp"}),
    (["vllm/transformers_utils/configs/speculators/base.py"], {"eagle3"}),
    (["vllm/transformers_utils/configs/eagle.py"], {"eagle3", "eagle"}),
    (["vllm/transformers_utils/configs/medusa.py"], {"medusa"}),
    (["vllm/model_executor/models/deepseek_mtp.py", "vllm/transformers_utils/configs/medusa.py"],
     {"mtp", "medusa"}),
    (["vllm/v1/attention/backends/flash_attn.py"], set()),
    (["vllm/model_executor/models/llama.py"], set()),
    (["vllm/config/model.py"], set()),
    (["docs/features/spec_decode.md"], set()),
    (["vllm/v1/spec_decode_helpers.py"], set()),
]


def weekly_cells() -> list[Cell]:
    return expand(load_tier(JOBS, "weekly"), load_catalog(JOBS), tier_path="jobs/weekly.yaml")


@pytest.mark.parametrize(("changed", "variants"), CASES, ids=[" + ".join(c) for c, _ in CASES])
def test_selected_cells_are_exactly_those_of_the_dependent_variants(changed: list[str],
                                                                     variants: set[str]) -> None:
    cells = weekly_cells()
    assert {cell.variant.name for cell in cells} == ALL, "the weekly tier runs every method"
    chosen = select(cells, parse_changed_files("\n".join(changed)))
    assert sorted(s.cell.id for s in chosen) == sorted(c.id for c in cells if c.variant.name in variants)


def test_each_selection_names_the_file_and_pattern_that_triggered_it() -> None:
    [first, *_] = select(weekly_cells(), ["vllm/model_executor/models/deepseek_mtp.py"])
    changed = "vllm/model_executor/models/deepseek_mtp.py"
    assert first.because == ((changed, "vllm/model_executor/models/*mtp*.py"), (changed, changed))


def test_git_name_status_lines_blank_lines_and_comments_are_understood() -> None:
    text = ("M\tvllm/config/speculative.py\n\n# a comment\n"
            "R100\told/a.py\tvllm/v1/spec_decode/a.py\nREADME.md\n")
    assert parse_changed_files(text) == ["vllm/config/speculative.py", "old/a.py", "vllm/v1/spec_decode/a.py",
                                         "README.md"]


def test_cli_reads_changed_files_from_stdin_and_prints_one_cell_a_line() -> None:
    result = CliRunner().invoke(select_cmd, ["--changed-files", "-", "--tier", "weekly", "--jobs", str(JOBS)],
                                input="vllm/model_executor/models/deepseek_mtp.py\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    mtp_cells = [c.id for c in weekly_cells() if c.variant.name == "mtp"]
    assert [line.split("\t")[1] for line in lines] == mtp_cells
    assert "5 of " in result.stderr


def test_cells_of_the_reference_engine_are_never_selected_by_a_vllm_change() -> None:
    local = expand(load_tier(JOBS, "local"), load_catalog(JOBS), tier_path="jobs/local.yaml")
    assert local and all(cell.engine == "reference" for cell in local)
    changed = ["vllm/config/speculative.py"]
    assert select([*local, *weekly_cells()], changed) == select(weekly_cells(), changed) != []
