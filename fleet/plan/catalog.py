"""Read jobs/: the hardware and variant catalogs and the tier files, as validated value objects.

This is the I/O shell around the YAML. Every problem a person can make in those files becomes ONE
ConfigError that names the file and the entry or field (`jobs/variants.yaml: variants.eagle3.
num_speculative_tokens: ...`), because the person reading it has to find the line to fix; pydantic's
own multi-line reports are turned into that shape here. Expanding a tier into cells is fleet.plan.matrix's
job, which is pure.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fleet.errors import ConfigError
from fleet.model import Hardware, Tier, Variant

__all__ = [
    "CATALOG_FILES",
    "Catalog",
    "display_path",
    "list_tiers",
    "load_catalog",
    "load_tier",
    "tier_file",
    "validation_error",
]

HARDWARE_FILE = "hardware.yaml"
VARIANTS_FILE = "variants.yaml"
#: Files of jobs/ that are catalogs, not tiers.
CATALOG_FILES = frozenset({HARDWARE_FILE, VARIANTS_FILE})

_JOBS_FIX = "pass --jobs DIR, the folder holding hardware.yaml, variants.yaml and the tier files"

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Catalog:
    """The hardware pools and variants a tier may name, with the files they came from (for messages)."""

    hardware: dict[str, Hardware]
    variants: dict[str, Variant]
    hardware_path: str = f"jobs/{HARDWARE_FILE}"
    variants_path: str = f"jobs/{VARIANTS_FILE}"


def load_catalog(jobs_dir: Path) -> Catalog:
    """Read jobs/hardware.yaml and jobs/variants.yaml; raise one ConfigError on the first problem."""
    _require_jobs_dir(jobs_dir)
    hardware_file = jobs_dir / HARDWARE_FILE
    variants_file = jobs_dir / VARIANTS_FILE
    return Catalog(
        hardware=_load_named_entries(hardware_file, Hardware),
        variants=_load_named_entries(variants_file, Variant),
        hardware_path=display_path(hardware_file),
        variants_path=display_path(variants_file),
    )


def list_tiers(jobs_dir: Path) -> list[str]:
    """The tier names in jobs/: every `<name>.yaml` except the two catalogs, sorted."""
    _require_jobs_dir(jobs_dir)
    return sorted(path.stem for path in jobs_dir.glob("*.yaml") if path.name not in CATALOG_FILES)


def tier_file(jobs_dir: Path, name: str) -> Path:
    """Where tier `name` lives: jobs/<name>.yaml."""
    return jobs_dir / f"{name}.yaml"


def load_tier(jobs_dir: Path, name: str) -> Tier:
    """Read and validate jobs/<name>.yaml; the tier's name is the file's name."""
    available = list_tiers(jobs_dir)
    path = tier_file(jobs_dir, name)
    if name not in available or not path.is_file():
        known = ", ".join(available) or "none"
        raise ConfigError(
            f"unknown tier {name!r} (available: {known})",
            where=display_path(jobs_dir),
            fix=f"use one of {known}, or add {display_path(path)}",
        )
    shown = display_path(path)
    data = _read_mapping(path)
    data = _with_name(data, name, shown, field_path="name")
    return _validate(Tier, data, shown, prefix="")


def display_path(path: Path) -> str:
    """A path as the user should read it: relative to the working directory when it is below it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def validation_error(err: ValidationError, file: str, prefix: str = "") -> ConfigError:
    """One ConfigError from a pydantic ValidationError: the first problem, its dotted field path, and
    how many more there are (a person fixes one thing at a time; the rest resurface on the next run)."""
    problems = err.errors(include_url=False)
    first = problems[0]
    field = _dotted(prefix, first["loc"])
    what = str(first["msg"])
    value = first.get("input")
    if first["type"] not in {"missing", "extra_forbidden"} and not isinstance(value, dict | list):
        what += f" (got {_short_repr(value)})"
    if len(problems) > 1:
        more = len(problems) - 1
        what += f" (and {more} more problem{'s' if more > 1 else ''} there)"
    where = f"{file}: {field}" if field else file
    fix = "remove the field, or check its spelling" if first["type"] == "extra_forbidden" else None
    return ConfigError(what, where=where, fix=fix)


# --- internals ----------------------------------------------------------------------------------


def _require_jobs_dir(jobs_dir: Path) -> None:
    if not jobs_dir.is_dir():
        raise ConfigError(
            f"jobs directory {display_path(jobs_dir)!r} not found",
            cause="fleet reads its hardware pools, variants and tiers from there",
            fix=_JOBS_FIX,
        )


def _load_named_entries(path: Path, model: type[ModelT]) -> dict[str, ModelT]:
    """A catalog file: a mapping name -> fields, each validated as `model` with `name` from its key."""
    shown = display_path(path)
    root = path.stem
    data = _read_mapping(path)
    entries: dict[str, ModelT] = {}
    for key, fields in data.items():
        entry_path = f"{root}.{key}"
        if not isinstance(key, str):
            raise ConfigError(f"entry names must be strings, not {_short_repr(key)}",
                              where=f"{shown}: {root}")
        if not isinstance(fields, dict):
            raise ConfigError(
                f"expected a mapping of fields, got {_type_name(fields)}",
                where=f"{shown}: {entry_path}",
                fix=f"write the entry as `{key}:` followed by indented `field: value` lines",
            )
        named = _with_name(fields, key, shown, field_path=f"{entry_path}.name")
        entries[key] = _validate(model, named, shown, prefix=entry_path)
    return entries


def _with_name(fields: dict[str, Any], name: str, shown: str, *, field_path: str) -> dict[str, Any]:
    """The name comes from the key (or the file); a `name:` that disagrees is a mistake, not an alias."""
    written = fields.get("name", name)
    if written != name:
        raise ConfigError(
            f"name {written!r} differs from {name!r}, the name it is filed under",
            where=f"{shown}: {field_path}",
            fix="remove the name field: the key (or, for a tier, the file name) is the name",
        )
    return {**fields, "name": name}


def _validate(model: type[ModelT], data: dict[str, Any], shown: str, *, prefix: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, shown, prefix) from None


def _read_mapping(path: Path) -> dict[str, Any]:
    """The YAML file at `path` as a mapping, with line/column on syntax errors and duplicate keys."""
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path.name} not found in {display_path(path.parent)!r}",
            where=shown,
            fix=_JOBS_FIX,
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", where=shown) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as err:
        raise yaml_error(err, shown) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}", where=shown) from None
    if data is None:
        raise ConfigError("the file is empty", where=shown, fix="write a mapping of `name: fields`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top of the file, got {_type_name(data)}",
            where=shown,
            fix="write `key: value` lines at the top level",
        )
    return data


def yaml_error(err: yaml.MarkedYAMLError, shown: str) -> ConfigError:
    """One line for a YAML syntax error: file:line:column, the problem, what to check."""
    mark = err.problem_mark or err.context_mark
    where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark is not None else shown
    problem = err.problem or err.context or "malformed YAML"
    if err.context and err.problem:
        problem = f"{err.problem} ({err.context})"
    fix = "rename or remove one of the two" if "duplicate key" in problem else \
        "check the indentation and the `key: value` syntax at that line"
    return ConfigError(f"invalid YAML: {problem}", where=where, fix=fix)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping: YAML would silently keep the last."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Hashable, Any]:
    seen: dict[Hashable, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first written at line {first.line + 1})",
                key_node.start_mark,
            )
        if isinstance(key, Hashable):
            seen[key] = key_node.start_mark
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _dotted(prefix: str, loc: tuple[int | str, ...]) -> str:
    """('cells', 2, 'hardware') -> 'cells[2].hardware'; dict keys and fields join with dots."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: object) -> str:
    names: Mapping[type, str] = {list: "a list", str: "a string", int: "a number", float: "a number",
                                 bool: "a boolean"}
    return names.get(type(value), type(value).__name__)
