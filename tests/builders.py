"""Small builders of valid documents for tests."""

from __future__ import annotations

from typing import Any

from fleet.model import Cell, Hardware, Provenance, RunResult, Variant, Workload


def make_cell(name: str = "ngram-k4") -> Cell:
    return Cell(
        tier="local",
        variant=Variant(name=name, method="ngram", num_speculative_tokens=4),
        model="bundled:tiny-stdlib/target",
        hardware=Hardware(name="cpu", vendor="cpu", gpu_count=0),
        workload=Workload(),
        engine="reference",
    )


def ok_result(cell: Cell) -> RunResult:
    return RunResult(cell=cell, status="ok", provenance=Provenance(fleet_version="test", engine="fake"),
                     metrics={"acceptance_length": 2.0})


#: The value that deletes a key in `edit`.
DELETE = object()


def edit(document: dict[str, Any], path: str, value: Any, *, sep: str = ".") -> None:
    """Set (or, with DELETE, remove) the key at a dotted path of a JSON-like document, in place."""
    *parents, leaf = path.split(sep)
    node = document
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
