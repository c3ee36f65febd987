"""Which cells a change touches: smart triggering from a list of changed vLLM files (RFC #28135).

A pull request that edits only the attention backend should not spend GPU hours on the spec-decode
tiers, and one that edits `vllm/config/speculative.py` should run all of them. Each variant in
jobs/variants.yaml lists the vLLM paths it depends on (`source_file_dependencies`, the RFC's list plus
the method's own files); a cell is selected when any changed path falls under any of them. The
matching itself is fleet.plan.matrix.dependency_matches; this module adds the reasons, so a reviewer sees
which file triggered which cell. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleet.model import Cell
from fleet.plan.matrix import dependency_matches


@dataclass(frozen=True)
class Selection:
    cell: Cell
    #: (changed path, dependency pattern that matched it), in the order the files were given.
    because: tuple[tuple[str, str], ...]


def parse_changed_files(text: str) -> list[str]:
    """One path per line, as `git diff --name-only` prints them; blank lines and `#` comments skipped.

    `git diff --name-status` lines (a status letter, a tab, the path; a rename gives both paths) are
    accepted too, so either form can be piped in.
    """
    paths: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        names = fields[1:] if len(fields) > 1 and fields[0][:1].isalpha() and len(fields[0]) <= 4 else fields
        paths.extend(name.strip().removeprefix("./") for name in names if name.strip())
    return list(dict.fromkeys(paths))


def select(cells: Sequence[Cell], changed: Iterable[str]) -> list[Selection]:
    """The cells whose variant depends on a changed path, each with the matches that selected it. Cells of
    fleet's own reference engine (the local tier) are never selected: no vLLM file changes what they run."""
    paths = list(changed)
    chosen = []
    for cell in cells:
        if cell.engine != "vllm":
            continue
        because = tuple((path, pattern) for path in paths
                        for pattern in cell.variant.source_file_dependencies
                        if dependency_matches(pattern, path))
        if because:
            chosen.append(Selection(cell, because))
    return chosen
