"""Read one of fleet's JSON documents from a file, failing in one line that names the file and field.

Results, reports and run states are all pydantic models read the same way; a file that is missing or
not the document it should be is the user's input error (exit 2), said with where and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from fleet.errors import ConfigError

Document = TypeVar("Document", bound=BaseModel)


def read_document(model: type[Document], path: Path, *, what: str, schema: str | None = None,
                  fix: str | None = None) -> Document:
    """`model` from the JSON file at `path`; `what` names it in errors, `schema` the `fleet schema` word."""
    try:
        return model.model_validate_json(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot read {what}: {err.strerror}", where=str(path), fix=fix) from err
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        cause = f"not a fleet {model.__name__} document (see `fleet schema {schema}`)" if schema else None
        raise ConfigError(f"{field}: {first['msg']}", where=str(path), cause=cause) from err
