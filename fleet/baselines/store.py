"""Baseline files on disk: where they live, how they are read, validated and written.

Baselines are reviewed files (`baselines/<hardware>/<variant>__<model_slug>.json`), so every way a
file can be wrong must end in one line that names the file and the field to fix, never in a pydantic
traceback. Writing is atomic so that an interrupted `fleet baseline record` never leaves half a file
for a reviewer to merge. This is the I/O shell around the pure `fleet.model.baseline` types.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.errors import ConfigError
from fleet.model import Baseline, Cell, RunResult, model_slug

_SCHEMA_FIX = "see `fleet schema baseline` for the format"


def baseline_path(root: Path, hardware: str, variant: str, model_slug: str) -> Path:
    """The one place a baseline for (hardware, variant, target model) may live."""
    return root / hardware / f"{variant}__{model_slug}.json"


def load_baseline(path: Path) -> Baseline:
    """Read and validate one baseline file; any defect is a ConfigError naming file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            "baseline file does not exist", where=str(path), fix="record one with `fleet baseline record`"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read baseline file: {exc}", where=str(path)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            where=str(path),
            fix="fix the JSON syntax (a trailing comma or a missing quote is the usual cause)",
        ) from exc
    try:
        return Baseline.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(path, exc) from exc


def find_baseline(root: Path, cell: Cell) -> tuple[Baseline | None, Path]:
    """The baseline for a cell, or None when none was recorded; the path is returned either way."""
    hardware, variant, slug = cell.baseline_key
    path = baseline_path(root, hardware, variant, slug)
    if not path.is_file():
        return None, path
    baseline = load_baseline(path)
    check_baseline_matches_path(baseline, path, hardware=hardware, variant=variant, slug=slug)
    return baseline, path


def check_baseline_matches_path(
    baseline: Baseline, path: Path, *, hardware: str, variant: str, slug: str
) -> None:
    """A file copied to another pool's folder would judge that pool against foreign numbers: refuse it."""
    found = {"hardware": baseline.hardware, "variant": baseline.variant, "model": model_slug(baseline.model)}
    wanted = {"hardware": hardware, "variant": variant, "model": slug}
    for field, value in found.items():
        if value != wanted[field]:
            shown = baseline.model if field == "model" else value
            raise ConfigError(
                f"says {field} {shown!r} but its path is for {field} {wanted[field]!r}",
                where=f"{path}: {'hardware (gpu_type)' if field == 'hardware' else field}",
                cause="the file was copied or renamed without editing it",
                fix=f"move it to {baseline_path(path.parent.parent, *found.values())} or fix the field",
            )


def save_baseline(path: Path, baseline: Baseline) -> None:
    """Write a baseline as a stable, reviewable JSON file (sorted metrics, indent 2), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(baseline_to_json(baseline))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def baseline_to_json(baseline: Baseline) -> str:
    """The file's text: fields in model order, metrics sorted by name, unset fields left out."""
    data = baseline.model_dump(mode="json", exclude_none=True)
    data["baselines"] = {name: data["baselines"][name] for name in sorted(data["baselines"])}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


#: Fields the RFC's own examples spell another way: fleet's name -> the RFC's (vLLM #28135).
RFC_SPELLINGS = {"hardware": "gpu_type", "baselines": "metrics"}


def baseline_json_schema() -> dict[str, Any]:
    """JSON Schema of a baseline file, as accepted on input (the RFC's spellings included)."""
    schema = Baseline.model_json_schema(mode="validation")
    properties = schema["properties"]
    # pydantic documents only the first alias: each field takes either of its names, never both.
    one_of_each = []
    for name, rfc_name in RFC_SPELLINGS.items():
        properties[rfc_name] = {**properties[name], "title": f"{rfc_name} (RFC #28135 name of {name})"}
        one_of_each.append({"oneOf": [{"required": [name]}, {"required": [rfc_name]}]})
    schema["required"] = [name for name in schema["required"] if name not in RFC_SPELLINGS]
    schema["allOf"] = one_of_each
    return schema


def result_json_schema() -> dict[str, Any]:
    """JSON Schema of a result document as the suite writes it (including the cell's derived `id`)."""
    return RunResult.model_json_schema(mode="serialization")


def _schema_error(path: Path, exc: ValidationError) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = str(first["msg"])
    if first["type"] == "extra_forbidden":
        message = "unknown field (a typo?); fleet rejects fields it does not know"
    elif first["type"] in ("model_type", "dict_type") and not first["loc"]:
        message = f"a baseline must be a JSON object, not {type(first['input']).__name__}"
    elif first["type"] == "missing" and field in RFC_SPELLINGS:
        field = f"{field} ({RFC_SPELLINGS[field]})"
    others = [".".join(str(part) for part in e["loc"]) or "(top level)" for e in errors[1:]]
    more = f" (and {len(others)} more: {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
    more = more if others else ""
    return ConfigError(f"{message}{more}", where=f"{path}: {field}", fix=_SCHEMA_FIX)
