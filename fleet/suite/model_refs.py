"""Model references in cells: `bundled:<set>/<name>` names a model shipped inside fleet, anything else
is passed through (a local path checked by the engine, or a Hugging Face id that only vLLM resolves).

Bundled models make the local default and CI real without network access or ../shared.
"""

from __future__ import annotations

from pathlib import Path

from fleet.errors import ConfigError

BUNDLED_PREFIX = "bundled:"

#: fleet/assets, where the bundled model sets live as package data.
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def bundled_names() -> list[str]:
    """Every `<set>/<model>` that ships with fleet (a folder holding a config.json)."""
    if not ASSETS_DIR.is_dir():
        return []
    return sorted(
        f"{config.parent.parent.name}/{config.parent.name}" for config in ASSETS_DIR.glob("*/*/config.json")
    )


def bundled_path(name: str) -> Path:
    """The folder of a bundled asset (`tiny-stdlib/target`, or a whole set such as `tiny-stdlib`)."""
    if not name or name.startswith(("/", ".")) or ".." in Path(name).parts:
        raise ConfigError(f"bundled name {name!r} is not a plain <set>/<model> name", where="model")
    return ASSETS_DIR / name


def resolve_model(ref: str) -> str:
    """`bundled:tiny-stdlib/target` -> the absolute folder inside fleet; other references unchanged."""
    if not ref.startswith(BUNDLED_PREFIX):
        return ref
    name = ref[len(BUNDLED_PREFIX) :].strip("/")
    folder = bundled_path(name)
    if not (folder / "config.json").is_file():
        known = ", ".join(BUNDLED_PREFIX + n for n in bundled_names()) or "none"
        raise ConfigError(
            f"no bundled model {ref!r}",
            where="model",
            cause=f"bundled models are: {known}",
            fix="use one of those, or a local path / Hugging Face id",
        )
    return str(folder)
