"""Execution axes: the vocabulary, their combinations, their spelling in cell ids, and what they own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet.model import TierEntry
from fleet.model.execution import axes_problems, combinations, execution_id, option_conflicts
from tests.builders import make_cell


def test_combinations_are_the_product_of_the_axes_in_vocabulary_order() -> None:
    found = combinations({"prefix_caching": ["off", "on"], "cudagraph": ["full", "none"]})

    assert [(c["cudagraph"], c["prefix_caching"]) for c in found] == [
        ("full", "off"), ("full", "on"), ("none", "off"), ("none", "on")]


def test_no_axes_make_one_combination_without_settings() -> None:
    assert combinations({}) == [{}]


def test_the_id_spells_axes_in_vocabulary_order_whatever_the_dict_order() -> None:
    assert execution_id({"prefix_caching": "on", "cudagraph": "full"}) == "cudagraph=full,prefix_caching=on"


def test_a_cell_without_axes_keeps_the_id_it_always_had() -> None:
    assert make_cell().id == "ngram-k4__tiny-stdlib-target__cpu"


def test_a_cell_with_axes_carries_them_in_its_id_and_shares_its_baseline_key() -> None:
    plain = make_cell()
    cell = plain.model_copy(update={"execution": {"prefix_caching": "on"}})

    assert cell.id == "ngram-k4__tiny-stdlib-target__cpu__prefix_caching=on"
    assert cell.baseline_key == plain.baseline_key


def test_a_cell_document_with_an_unknown_axis_value_is_refused() -> None:
    document = make_cell().model_dump()
    document["execution"] = {"prefix_caching": "sometimes"}

    with pytest.raises(ValidationError, match="prefix_caching='sometimes'"):
        type(make_cell()).model_validate(document)


def test_a_cell_round_trips_through_json_with_its_axes() -> None:
    cell = make_cell().model_copy(update={"execution": {"prefix_caching": "on"}})

    assert type(cell).model_validate_json(cell.model_dump_json()) == cell


def test_unquoted_yaml_on_and_off_are_read_as_the_words() -> None:
    entry = TierEntry.model_validate({"variant": "v", "model": "m", "hardware": ["h"],
                                      "execution": {"prefix_caching": [False, True]}})

    assert entry.execution == {"prefix_caching": ["off", "on"]}


@pytest.mark.parametrize(("axes", "engine", "expected"), [
    ({"cuda_graphs": ["full"]}, "vllm", "unknown execution axis 'cuda_graphs'"),
    ({"cudagraph": ["FULL"]}, "vllm", "unknown value 'FULL' of execution axis 'cudagraph'"),
    ({"cudagraph": []}, "vllm", "has no values"),
    ({"prefix_caching": ["on", "on"]}, "vllm", "repeats a value"),
    ({"cudagraph": ["none"]}, "reference", "the reference engine has no CUDA graphs"),
    ({"async_scheduling": ["on"]}, "reference", "the reference engine has no CUDA graphs and no scheduler"),
])
def test_axes_problems_name_what_is_wrong(axes: dict[str, list[str]], engine: str, expected: str) -> None:
    problems = axes_problems(axes, engine)

    assert any(expected in what for what, _ in problems), problems


def test_known_axes_on_their_engines_have_no_problems() -> None:
    assert axes_problems({"cudagraph": ["full", "piecewise", "none"], "prefix_caching": ["off", "on"],
                          "async_scheduling": ["off", "on"]}, "vllm") == []
    assert axes_problems({"prefix_caching": ["off", "on"]}, "reference") == []


@pytest.mark.parametrize(("axis", "options"), [
    ("cudagraph", {"enforce_eager": True}),
    ("cudagraph", {"compilation_config": {"cudagraph_mode": "FULL"}}),
    ("prefix_caching", {"enable_prefix_caching": False}),
    ("async_scheduling", {"async_scheduling": True}),
])
def test_an_engine_option_the_axis_sets_itself_conflicts(axis: str, options: dict[str, object]) -> None:
    (problem,) = option_conflicts([axis], options, "vllm")

    assert axis in problem[0]


def test_other_compilation_options_do_not_conflict_with_the_cudagraph_axis() -> None:
    assert option_conflicts(["cudagraph"], {"compilation_config": {"mode": 3}, "max_model_len": 2048},
                            "vllm") == []
