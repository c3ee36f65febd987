"""`--markdown OUT`: a benchmark's printed figures written into a doc as a section of their own.

docs/judging.md and docs/bisecting.md quote each figure with the command that printed it; a figure
copied by hand goes stale as soon as the code under it moves. With `--markdown OUT` a benchmark prints
exactly what it prints without it, and also writes that text into OUT between two markers that name the
command, so running the same command again replaces its section and nothing else (a new command's
section goes at the end of OUT; a missing OUT is created). Wall-clock lines are left out of the section:
they are the machine's, not the benchmark's, figures.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

#: Lines a benchmark prints about its own running time, e.g. "(19 s)".
WALL_TIME = re.compile(r"^\(\d+ s\)$")


class _Tee(io.StringIO):
    """Keeps what is printed, and passes it on to the real stdout as it comes."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        super().write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that printed the figures, without the --markdown flag."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--markdown":
            skip = True
        elif not arg.startswith("--markdown="):
            kept.append(arg)
    return " ".join(["python", f"benchmarks/{script}.py", *kept])


def section(command: str, printed: str) -> str:
    """The markdown a command's printed figures become, markers included."""
    lines = [line for line in printed.rstrip("\n").splitlines() if not WALL_TIME.match(line)]
    return "\n".join([f"<!-- BEGIN generated: {command} -->",
                      f"`{command}` (regenerate: add `--markdown FILE`; do not edit by hand):", "",
                      "```text", *lines, "```", f"<!-- END generated: {command} -->"]) + "\n"


def updated(document: str, command: str, printed: str) -> str:
    """`document` with the command's section replaced, or appended where it has none."""
    begin, end = f"<!-- BEGIN generated: {command} -->", f"<!-- END generated: {command} -->"
    new = section(command, printed)
    start = document.find(begin)
    stop = document.find(end, start)
    if start >= 0 and stop >= 0:
        return document[:start] + new + document[stop + len(end):].removeprefix("\n")
    return document + ("\n" if document and not document.endswith("\n\n") else "") + new


@contextlib.contextmanager
def markdown_section(out: Path | None, script: str, argv: Sequence[str]) -> Iterator[None]:
    """Within the block, stdout is also kept; on a normal exit it is written into `out` (if given)."""
    if out is None:
        yield
        return
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    command = command_line(script, argv)
    existing = out.read_text() if out.exists() else ""
    out.write_text(updated(existing, command, tee.getvalue()))
