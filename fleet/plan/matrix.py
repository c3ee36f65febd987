"""Expand a tier into cells, and pick the cells a change or a filter selects. Pure: values in, values out.

A tier entry names a variant, a model and some hardware pools by name; a Cell carries all of them by
value, so that a cell is the whole input of one run. Everything that can be wrong between a tier and
the catalogs (a name that does not exist, a cell written twice, a draft-model method without a draft)
is caught here, before anything is submitted, and reported as one ConfigError naming the tier file
and the entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from fleet.errors import ConfigError
from fleet.model import METHODS_NEEDING_DRAFT, Cell, Tier, TierEntry, Variant, Workload
from fleet.model.execution import axes_problems, combinations, option_conflicts

if TYPE_CHECKING:
    from fleet.plan.catalog import Catalog

__all__ = ["METHODS_WITHOUT_DRAFT", "cells_touched_by", "dependency_matches", "expand", "filter_cells"]

#: Methods that speculate from the text itself; a draft model given to them would be silently ignored.
METHODS_WITHOUT_DRAFT: frozenset[str] = frozenset({"ngram", "ngram_gpu", "suffix"})


@dataclass(frozen=True)
class _Problem:
    field: str
    what: str
    fix: str | None = None


def expand(tier: Tier, catalog: Catalog, *, tier_path: str) -> list[Cell]:
    """One cell per (entry, hardware pool, combination of the entry's execution axes), in the tier's order.

    The engine, timeout and workload come from the tier; an entry's `workload` overrides the fields it
    sets, and its `engine_options` are merged over the tier's. The draft is the entry's, else the
    variant's default. Raises ConfigError naming `tier_path` and the first bad entry (and how many
    more problems there are) if any entry is invalid.
    """
    problems: list[_Problem] = []
    cells: list[Cell] = []
    made_by: dict[str, str] = {}
    for index, entry in enumerate(tier.cells):
        at = f"cells[{index}]"
        entry_problems = _entry_problems(entry, at, catalog) + _execution_problems(tier, entry, at)
        problems.extend(entry_problems)
        if entry_problems:
            continue
        variant = catalog.variants[entry.variant]
        for hardware_name in entry.hardware:
            for execution in combinations(entry.execution):
                try:
                    cell = _make_cell(tier, entry, variant, catalog, hardware_name, execution)
                except ValidationError as err:
                    problems.append(_cell_validation_problem(err, at))
                    continue
                if cell.id in made_by:
                    problems.append(_Problem(
                        at,
                        f"duplicate cell {cell.id!r}: {made_by[cell.id]} already runs variant "
                        f"{variant.name!r} on {entry.model!r} on {hardware_name!r}",
                        "remove one of the two entries, or give them different hardware or execution",
                    ))
                    continue
                made_by[cell.id] = at
                cells.append(cell)
    if problems:
        raise _config_error(problems, tier_path)
    return cells


def filter_cells(
    cells: Sequence[Cell], hardware: str | None = None, variant: str | None = None
) -> list[Cell]:
    """The cells on hardware pool `hardware` and of variant `variant` (None: any)."""
    return [
        cell for cell in cells
        if (hardware is None or cell.hardware.name == hardware)
        and (variant is None or cell.variant.name == variant)
    ]


def cells_touched_by(cells: Sequence[Cell], changed_files: Iterable[str]) -> list[Cell]:
    """The cells whose variant depends on at least one changed file (vLLM repository paths)."""
    changed = [path.removeprefix("./") for path in changed_files]
    return [
        cell for cell in cells
        if any(dependency_matches(pattern, path)
               for pattern in cell.variant.source_file_dependencies for path in changed)
    ]


def dependency_matches(pattern: str, path: str) -> bool:
    """Does repository path `path` fall under `pattern`?

    A pattern ending in `/` is a folder: everything below it matches. Otherwise it is a glob in which
    `*` and `?` stay within one path segment and `**` crosses segments, so that
    `vllm/model_executor/models/*eagle*.py` matches `llama_eagle3.py` but nothing in a subfolder.
    """
    if pattern.endswith("/"):
        return path.startswith(pattern)
    return _glob_regex(pattern).fullmatch(path) is not None


# --- internals ----------------------------------------------------------------------------------


def _entry_problems(entry: TierEntry, at: str, catalog: Catalog) -> list[_Problem]:
    problems: list[_Problem] = []
    variant = catalog.variants.get(entry.variant)
    if variant is None:
        problems.append(_Problem(
            f"{at}.variant",
            f"unknown variant {entry.variant!r} (known: {_known(catalog.variants)})",
            f"use a variant defined in {catalog.variants_path}, or add it there",
        ))
    for name in entry.hardware:
        if name not in catalog.hardware:
            problems.append(_Problem(
                f"{at}.hardware",
                f"unknown hardware {name!r} (known: {_known(catalog.hardware)})",
                f"use a pool defined in {catalog.hardware_path}, or add it there",
            ))
    if variant is not None:
        problems.extend(_draft_problems(entry, variant, at, catalog))
    return problems


def _draft_problems(entry: TierEntry, variant: Variant, at: str, catalog: Catalog) -> list[_Problem]:
    if variant.method in METHODS_NEEDING_DRAFT and not (entry.draft_model or variant.draft_model):
        return [_Problem(
            f"{at}.draft_model",
            f"variant {variant.name!r} (method {variant.method}) needs a draft model, and neither this "
            f"entry nor {catalog.variants_path} gives one",
            "add `draft_model: <HF id or path>` to the entry (the draft is trained for its target)",
        )]
    if variant.method in METHODS_WITHOUT_DRAFT and entry.draft_model:
        return [_Problem(
            f"{at}.draft_model",
            f"variant {variant.name!r} (method {variant.method}) takes no draft model, "
            f"but {entry.draft_model!r} is given",
            "remove draft_model from the entry",
        )]
    return []


def _execution_problems(tier: Tier, entry: TierEntry, at: str) -> list[_Problem]:
    """Unknown axes or values, axes the tier's engine lacks, and axes the engine options also set."""
    if not entry.execution:
        return []
    field = f"{at} (variant {entry.variant}).execution"
    options = {**tier.engine_options, **entry.engine_options}
    found = axes_problems(entry.execution, tier.engine) + option_conflicts(list(entry.execution), options,
                                                                           tier.engine)
    return [_Problem(field, what, fix) for what, fix in found]


def _make_cell(tier: Tier, entry: TierEntry, variant: Variant, catalog: Catalog, hardware_name: str,
               execution: dict[str, str]) -> Cell:
    return Cell(
        tier=tier.name,
        variant=variant,
        model=entry.model,
        draft_model=entry.draft_model or variant.draft_model,
        hardware=catalog.hardware[hardware_name],
        workload=_workload(tier.workload, entry.workload),
        engine=tier.engine,
        engine_options={**tier.engine_options, **entry.engine_options},
        timeout_s=tier.timeout_s,
        execution=execution,
    )


def _workload(tier_workload: Workload, entry_workload: Workload | None) -> Workload:
    """The tier's workload with the fields the entry wrote (and only those) replaced."""
    if entry_workload is None:
        return tier_workload
    overrides = {name: getattr(entry_workload, name) for name in entry_workload.model_fields_set}
    return tier_workload.model_copy(update=overrides)


def _cell_validation_problem(err: ValidationError, at: str) -> _Problem:
    first = err.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    return _Problem(f"{at}.{field}" if field else at, str(first["msg"]))


def _config_error(problems: list[_Problem], tier_path: str) -> ConfigError:
    first = problems[0]
    what = first.what
    if len(problems) > 1:
        more = len(problems) - 1
        what += f" (and {more} more problem{'s' if more > 1 else ''} in this file)"
    return ConfigError(what, where=f"{tier_path}: {first.field}", fix=first.fix)


def _known(names: Mapping[str, object]) -> str:
    return ", ".join(sorted(names)) or "none"


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
            continue
        parts.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        index += 1
    return re.compile("".join(parts))
