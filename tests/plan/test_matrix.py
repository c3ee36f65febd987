"""The shipped jobs/ expand to the cells the RFC asks for; expansion merges tier and entry as documented."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.model import METHODS_NEEDING_DRAFT, Cell, Hardware, Tier, TierEntry, Variant, Workload
from fleet.plan.catalog import Catalog, list_tiers, load_catalog, load_tier
from fleet.plan.matrix import cells_touched_by, dependency_matches, expand, filter_cells

JOBS = Path(__file__).resolve().parents[2] / "jobs"
GPU_POOLS = {"l4", "a100", "h100", "h200", "mi300"}
RFC_DEPENDENCIES = [
    "vllm/v1/spec_decode/",
    "vllm/model_executor/models/*eagle*.py",
    "vllm/model_executor/models/*medusa*.py",
    "vllm/config/speculative.py",
]


def shipped_cells(tier: str) -> list[Cell]:
    return expand(load_tier(JOBS, tier), load_catalog(JOBS), tier_path=f"jobs/{tier}.yaml")


# --- the shipped tiers ----------------------------------------------------------------------------


def test_shipped_tiers_are_the_three_rfc_tiers_plus_local_and_h200() -> None:
    assert list_tiers(JOBS) == ["h200", "local", "nightly", "smoke", "weekly"]


@pytest.mark.parametrize("tier", list_tiers(JOBS))
def test_every_shipped_tier_expands_to_unique_cells(tier: str) -> None:
    cells = shipped_cells(tier)

    assert cells
    ids = [cell.id for cell in cells]
    assert len(ids) == len(set(ids))
    assert all(cell.tier == tier for cell in cells)


@pytest.mark.parametrize("tier", list_tiers(JOBS))
def test_every_shipped_cell_that_needs_a_draft_has_one(tier: str) -> None:
    for cell in shipped_cells(tier):
        if cell.variant.method in METHODS_NEEDING_DRAFT:
            assert cell.draft_model, cell.id


def test_smoke_is_exactly_eagle3_on_llama_3_1_8b_on_l4_with_100_sharegpt_prompts() -> None:
    (cell,) = shipped_cells("smoke")

    assert (cell.variant.name, cell.variant.method) == ("eagle3", "eagle3")
    assert cell.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert cell.draft_model == "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
    assert cell.hardware.name == "l4"
    assert cell.engine == "vllm"
    assert (cell.workload.dataset, cell.workload.num_prompts) == ("sharegpt", 100)


def test_local_tier_is_the_three_cpu_cells_on_the_bundled_target() -> None:
    cells = {cell.variant.name: cell for cell in shipped_cells("local")}

    assert sorted(cells) == ["draft_model-k4", "eagle3-k4", "ngram-k4"]
    for cell in cells.values():
        assert cell.engine == "reference"
        assert cell.hardware.name == "cpu" and cell.hardware.gpu_count == 0
        assert cell.model == "bundled:tiny-stdlib/target"
        assert cell.variant.num_speculative_tokens == 4
        assert cell.timeout_s == 600
        workload = cell.workload
        assert (workload.prompts, workload.num_prompts, workload.max_tokens, workload.warmup_prompts) == (
            "bundled:tiny-stdlib", 20, 64, 2)
    assert cells["draft_model-k4"].draft_model == "bundled:tiny-stdlib/draft"
    assert cells["eagle3-k4"].draft_model == "bundled:tiny-stdlib/eagle3"
    assert cells["ngram-k4"].draft_model is None
    assert cells["ngram-k4"].variant.options == {"prompt_lookup_min": 2, "prompt_lookup_max": 4}


def test_h200_tier_runs_the_bundled_pair_and_a_synthetic_8b_shaped_cell_on_vllm() -> None:
    # The tier's baseline cells; its differential ones (execution axes) are tested below.
    cells = {cell.variant.name: cell for cell in shipped_cells("h200") if not cell.execution}

    assert sorted(cells) == ["draft_model-k4", "draft_model-synthetic-k4", "eagle3-k4", "ngram-k4"]
    assert {cell.hardware.name for cell in cells.values()} == {"h200"}
    assert {cell.engine for cell in cells.values()} == {"vllm"}
    assert {(c.workload.num_prompts, c.workload.max_tokens) for c in cells.values()} == {(50, 128)}
    synthetic = cells["draft_model-synthetic-k4"]
    assert synthetic.variant.options["rejection_sample_method"] == "synthetic"
    assert synthetic.engine_options["load_format"] == "dummy"
    assert "load_format" not in cells["ngram-k4"].engine_options


def test_nightly_runs_4_variants_on_3_models_on_l4_and_a100() -> None:
    cells = shipped_cells("nightly")

    assert len({cell.variant.name for cell in cells}) == 4
    assert len({cell.model for cell in cells}) == 3
    pairs_per_pool = Counter(cell.hardware.name for cell in cells)
    assert set(pairs_per_pool) == {"l4", "a100"}
    assert pairs_per_pool["l4"] == pairs_per_pool["a100"]


def test_weekly_covers_every_gpu_variant_on_5_models_across_all_gpu_pools_with_1000_prompts() -> None:
    cells = shipped_cells("weekly")
    # The "-k4" variants are the local/H200 ones on the bundled models.
    gpu_variants = {name for name in load_catalog(JOBS).variants if "-k4" not in name}

    assert {cell.variant.name for cell in cells} == gpu_variants
    assert len({cell.model for cell in cells}) == 5
    assert {cell.hardware.name for cell in cells} == GPU_POOLS
    assert min(cell.workload.num_prompts for cell in cells) >= 1000


def test_every_variant_depends_on_the_rfc_smart_triggering_paths() -> None:
    for variant in load_catalog(JOBS).variants.values():
        assert set(RFC_DEPENDENCIES) <= set(variant.source_file_dependencies), variant.name


def test_gpu_pools_select_nodes_by_product_label_and_run_fleets_image_for_their_vendor() -> None:
    hardware = load_catalog(JOBS).hardware

    for name in GPU_POOLS:
        pool = hardware[name]
        assert pool.gpu_resource in {"nvidia.com/gpu", "amd.com/gpu"}
        assert pool.node_labels and pool.tolerations
        # vLLM's own images lack the suite: a pool names an image only when it needs another of fleet's.
        assert pool.image is None
    assert hardware["mi300"].vendor == "amd"
    assert (hardware["cpu"].gpu_count, hardware["cpu"].gpu_resource) == (0, None)


# --- expansion rules, on hand-made values -----------------------------------------------------------


def _catalog() -> Catalog:
    return Catalog(
        hardware={name: Hardware(name=name, vendor="nvidia", gpu_resource="nvidia.com/gpu")
                  for name in ("l4", "a100")},
        variants={
            "ngram": Variant(name="ngram", method="ngram", num_speculative_tokens=3,
                             source_file_dependencies=["vllm/v1/spec_decode/ngram_proposer.py"]),
            "pair": Variant(name="pair", method="draft_model", num_speculative_tokens=4,
                            draft_model="org/default-draft",
                            source_file_dependencies=["vllm/model_executor/models/*eagle*.py"]),
        },
    )


def _tier(*entries: TierEntry, **fields: object) -> Tier:
    return Tier.model_validate({"name": "t", "cells": list(entries), **fields})


def test_expansion_makes_one_cell_per_entry_and_pool_in_file_order() -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["a100", "l4"]),
                 TierEntry(variant="pair", model="org/a", hardware=["l4"]))

    cells = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert [(c.variant.name, c.hardware.name) for c in cells] == [("ngram", "a100"), ("ngram", "l4"),
                                                                  ("pair", "l4")]


def test_entry_workload_overrides_only_the_fields_it_sets() -> None:
    tier = _tier(
        TierEntry(variant="ngram", model="org/a", hardware=["l4"],
                  workload=Workload.model_validate({"num_prompts": 7})),
        workload={"prompts": "datasets/x.jsonl", "dataset": "x", "num_prompts": 100, "max_tokens": 99},
    )

    (cell,) = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert (cell.workload.prompts, cell.workload.dataset) == ("datasets/x.jsonl", "x")
    assert (cell.workload.num_prompts, cell.workload.max_tokens) == (7, 99)


def test_entry_engine_options_are_merged_over_the_tiers() -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["l4"],
                           engine_options={"max_model_len": 4096, "trust_remote_code": True}),
                 engine_options={"max_model_len": 2048, "gpu_memory_utilization": 0.9})

    (cell,) = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert cell.engine_options == {"max_model_len": 4096, "gpu_memory_utilization": 0.9,
                                   "trust_remote_code": True}


def test_engine_and_timeout_come_from_the_tier() -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["l4"]), engine="reference", timeout_s=42)

    (cell,) = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert (cell.engine, cell.timeout_s) == ("reference", 42)


def test_draft_falls_back_to_the_variant_default_and_the_entry_wins() -> None:
    tier = _tier(TierEntry(variant="pair", model="org/a", hardware=["l4"]),
                 TierEntry(variant="pair", model="org/b", draft_model="org/own-draft", hardware=["l4"]))

    first, second = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert (first.draft_model, second.draft_model) == ("org/default-draft", "org/own-draft")


def test_filter_keeps_cells_matching_both_hardware_and_variant() -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["a100", "l4"]),
                 TierEntry(variant="pair", model="org/a", hardware=["a100", "l4"]))
    cells = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert [c.id for c in filter_cells(cells, hardware="l4", variant="pair")] == ["pair__a__l4"]
    assert len(filter_cells(cells, hardware="a100")) == 2
    assert filter_cells(cells) == cells
    assert filter_cells(cells, variant="eagle3") == []


# --- changed files -> cells ---------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("vllm/v1/spec_decode/", "vllm/v1/spec_decode/eagle.py", True),
    ("vllm/v1/spec_decode/", "vllm/v1/spec_decode_utils.py", False),
    ("vllm/model_executor/models/*eagle*.py", "vllm/model_executor/models/llama_eagle3.py", True),
    ("vllm/model_executor/models/*eagle*.py", "vllm/model_executor/models/sub/llama_eagle3.py", False),
    ("vllm/model_executor/models/*eagle*.py", "vllm/model_executor/models/llama.py", False),
    ("vllm/**/ngram_proposer.py", "vllm/v1/spec_decode/ngram_proposer.py", True),
    ("vllm/config/speculative.py", "vllm/config/speculative.py", True),
])
def test_dependency_patterns_match_folders_and_single_segment_globs(pattern: str, path: str,
                                                                    matches: bool) -> None:
    assert dependency_matches(pattern, path) is matches


def test_a_change_selects_only_the_cells_whose_variant_depends_on_it() -> None:
    cells = shipped_cells("nightly")

    touched_by_mtp_model = cells_touched_by(cells, ["vllm/model_executor/models/mimo_mtp.py"])
    touched_by_spec_decode = cells_touched_by(cells, ["./vllm/v1/spec_decode/utils.py"])

    assert {c.variant.name for c in touched_by_mtp_model} == {"mtp"}
    assert touched_by_spec_decode == cells
    assert cells_touched_by(cells, ["vllm/model_executor/models/llama.py", "docs/index.md"]) == []


# --- execution axes (issue 30) ------------------------------------------------------------------------


def test_an_entry_with_execution_axes_makes_one_cell_per_combination_and_pool() -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["l4", "a100"],
                           execution={"cudagraph": ["full", "piecewise", "none"],
                                      "prefix_caching": ["off", "on"]}))

    cells = expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert len(cells) == 12
    assert cells[0].id == "ngram__a__l4__cudagraph=full,prefix_caching=off"
    assert cells[0].execution == {"cudagraph": "full", "prefix_caching": "off"}
    assert len({cell.id for cell in cells}) == 12
    assert {cell.baseline_key for cell in cells} == {("l4", "ngram", "a"), ("a100", "ngram", "a")}


def test_the_same_entry_with_and_without_axes_are_different_cells() -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["l4"]),
                 TierEntry(variant="ngram", model="org/a", hardware=["l4"],
                           execution={"prefix_caching": ["on"]}))

    assert [cell.id for cell in expand(tier, _catalog(), tier_path="jobs/t.yaml")] == [
        "ngram__a__l4", "ngram__a__l4__prefix_caching=on"]


@pytest.mark.parametrize(("entry", "tier_fields", "expected"), [
    ({"execution": {"cudagraphs": ["full"]}}, {}, "unknown execution axis 'cudagraphs'"),
    ({"execution": {"prefix_caching": ["maybe"]}}, {}, "unknown value 'maybe'"),
    ({"execution": {"cudagraph": ["full"]}, "engine_options": {"enforce_eager": True}}, {},
     "sets enforce_eager itself"),
    ({"execution": {"prefix_caching": ["on"]}}, {"engine_options": {"enable_prefix_caching": True}},
     "sets enable_prefix_caching itself"),
    ({"execution": {"cudagraph": ["none"]}}, {"engine": "reference"},
     "the reference engine has no CUDA graphs"),
])
def test_a_bad_execution_axis_is_a_config_error_naming_file_entry_and_variant(
        entry: dict[str, object], tier_fields: dict[str, object], expected: str) -> None:
    tier = _tier(TierEntry(variant="ngram", model="org/a", hardware=["l4"]),
                 TierEntry.model_validate({"variant": "ngram", "model": "org/b", "hardware": ["l4"],
                                           **entry}),
                 **tier_fields)

    with pytest.raises(ConfigError) as raised:
        expand(tier, _catalog(), tier_path="jobs/t.yaml")

    assert raised.value.where == "jobs/t.yaml: cells[1] (variant ngram).execution"
    assert expected in raised.value.what


def test_the_h200_tier_runs_every_tiny_method_over_cudagraph_and_prefix_caching_on_shared_prefixes() -> None:
    cells = [cell for cell in shipped_cells("h200") if cell.execution]

    assert Counter(cell.variant.name for cell in cells) == {"ngram-k4": 6, "draft_model-k4": 6,
                                                            "eagle3-k4": 6}
    assert {cell.workload.prompts for cell in cells} == {"bundled:tiny-stdlib/shared-prefix"}
    assert {tuple(cell.execution.items()) for cell in cells if cell.variant.name == "ngram-k4"} == {
        (("cudagraph", graph), ("prefix_caching", cache))
        for graph in ("full", "piecewise", "none") for cache in ("off", "on")}


def test_the_cpu_differential_fixture_tier_pairs_prefix_caching_off_and_on_with_the_fault() -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "tiers"
    cells = expand(load_tier(fixtures, "differential-fault"), load_catalog(fixtures),
                   tier_path="tests/fixtures/tiers/differential-fault.yaml")

    assert [cell.execution for cell in cells] == [{"prefix_caching": "off"}, {"prefix_caching": "on"}]
    assert {cell.engine for cell in cells} == {"reference"}
    assert all(cell.engine_options["fault_injection"] == "drafter_loses_context_on_cache_hit"
               for cell in cells)
