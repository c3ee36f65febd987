"""The README's "One example per verb": every line parses as the command line it shows, and every one
this machine can run (no GPU, cluster, Docker engine or vLLM checkout) runs and exits 0, its
placeholders filled with what exists here.

The main command, `fleet submit --tier local`, is run end to end by tests/e2e/test_e2e_local.py; a
kube run's resume by tests/backends/kube/.
"""

from __future__ import annotations

import io
import shlex
import shutil
from pathlib import Path

import click
import pytest

from fleet.cli import cli, main
from fleet.history.store import HistoryStore
from fleet.model import RunResult
from tests.history_builders import run_record

REPO = Path(__file__).resolve().parents[2]
SECTION = "## One example per verb"

#: Placeholders of the README's lines, as the line's own words; what this test runs them with.
FILLED = {
    "fleet bisect --backend sim": ["--good", "c0000", "--bad", "c0199",
                                   "--cell", "ngram-k4__tiny-stdlib-target__h200"],
}
#: Lines this machine cannot run, and why: parsed only.
PARSED_ONLY = {
    "fleet submit --tier local": "runs the engine for minutes: tests/e2e/test_e2e_local.py runs it",
    "fleet submit --tier nightly --backend kube": "needs a Kubernetes API server",
    "fleet resume": "needs a Kubernetes API server (tests/backends/kube/ run it against the emulator)",
    "fleet images build": "needs Docker and vLLM's image (tests/deploy/test_images.py builds images/cpu)",
    "fleet suite run": "runs an engine on a cell file (tests/suite/ run it)",
    "fleet judge runs/": "needs an earlier run's results (tests/report/test_report_commands.py judges some)",
    "fleet merge runs/": "needs a sharded run's folders (tests/report/ merge real ones)",
    "fleet baseline record": "runs the engine five times",
    "fleet bisect --good A": "needs a vLLM checkout and a GPU",
}


def readme_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text[text.index(SECTION):].split("```", 2)[1]
    lines = []
    for line in block.splitlines():
        command = line.split(" #", 1)[0].strip()
        if "| fleet " in command:
            command = command.split("| ", 1)[1]
        if command.startswith("fleet "):
            lines.append(command)
    return lines


def argv_of(line: str) -> list[str]:
    words = shlex.split(line)[1:]
    for prefix, filled in FILLED.items():
        if line.startswith(prefix):
            words = [w for w in words if w != "..." and w not in ("--good", "--bad", "--cell")] + filled
    expanded: list[str] = []
    for word in words:
        matches = sorted(str(path) for path in Path().glob(word)) if any(c in word for c in "*?[") else []
        expanded += matches or [word]
    return expanded


def parses(argv: list[str]) -> None:
    """Parse as click would, down to the leaf command, without running it."""
    command: click.Command = cli
    context = command.make_context("fleet", list(argv))
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(context, [*context._protected_args, *context.args])
        assert sub is not None, f"no command {name!r}"
        command, context = sub, sub.make_context(name or "", rest, parent=context)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's tier files, baselines, evidence and fixtures in a scratch folder, as the current
    directory: what the examples write (runs/, site/, docs/) lands there."""
    for folder in ("jobs", "baselines", "evidence"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    (tmp_path / "tests").mkdir()
    shutil.copytree(REPO / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    record_history(tmp_path / "runs" / "history.sqlite")
    return tmp_path


def record_history(db: Path) -> None:
    """The history the history/trends/report examples read: the CPU runs recorded in evidence/cpu, one
    nightly a folder (r1, r2, ...), as `fleet submit` records them."""
    db.parent.mkdir(parents=True)
    with HistoryStore.open(db) as store:
        for day, folder in enumerate(sorted((REPO / "evidence" / "cpu").glob("r*")), start=1):
            results = [RunResult.model_validate_json(path.read_text())
                       for path in sorted(folder.glob("*.json"))]
            store.record_run(run_record(f"local-{folder.name}", [(r.cell, r.metrics) for r in results],
                                        at=f"2026-11-{day:02d}T02:00:00Z", commit=f"{day:02d}" + "cd" * 19))


def test_the_readme_has_its_examples() -> None:
    assert len(readme_lines()) >= 20


@pytest.mark.parametrize("line", readme_lines())
def test_every_readme_example_parses(line: str, here: Path) -> None:
    parses(argv_of(line))


@pytest.mark.parametrize("line", [line for line in readme_lines()
                                  if not any(line.startswith(p) for p in PARSED_ONLY)])
def test_every_readme_example_this_machine_can_run_exits_0(line: str, here: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if "--changed-files -" in line:
        monkeypatch.setattr("sys.stdin", io.StringIO("vllm/v1/spec_decode/eagle.py\n"))
    try:
        main(argv_of(line))
        code: object = 0
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    assert code == 0, f"{line}\n{captured.out[-2000:]}\n{captured.err[-2000:]}"
