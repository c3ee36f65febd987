"""A real bisection on the CPU: a throwaway history of 30 commits, one of which degrades the draft model,
and `fleet bisect --backend local` finds that commit by running the real reference engine on each
checkout it measures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.history.store import HistoryStore
from fleet.suite.model_refs import resolve_model
from tests.e2e.test_e2e_local import degrade_draft

REPO = Path(__file__).resolve().parents[2]
COMMITS = 30
PLANTED = 19  # the commit (0 = good) whose draft model is degraded

pytestmark = pytest.mark.slow

#: Runs the CLI with the bisect command registered (a no-op once fleet.cli registers it itself).
FLEET = ("import sys; from fleet.cli import cli, main; from fleet.cli.bisect_cmd import bisect; "
         "'bisect' in cli.commands or cli.add_command(bisect); main(sys.argv[1:])")

TIER = """\
description: "bisection e2e: the draft model comes from each commit's checkout"
engine: reference
timeout_s: 300
workload: {prompts: "bundled:tiny-stdlib", num_prompts: 4, max_tokens: 16, warmup_prompts: 0}
cells:
  - variant: draft_model-k4
    model: bundled:tiny-stdlib/target
    draft_model: "{checkout}/draft"
    hardware: [cpu]
"""


def fleet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # One torch thread per cell: two cells on two cores, without threads spinning against each other.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", FLEET, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, check=False, env=env)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=fleet", "-c", "user.email=fleet@test",
                           *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def history(repo: Path, degraded: Path) -> list[str]:
    """COMMITS commits, oldest first; each edits a notes file, commit PLANTED also swaps in `degraded`."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shutil.copytree(resolve_model("bundled:tiny-stdlib/draft"), repo / "draft")
    shas = []
    for index in range(COMMITS):
        (repo / "NOTES").write_text(f"change {index}\n")
        if index == PLANTED:
            shutil.copy(degraded / "model.safetensors", repo / "draft" / "model.safetensors")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {index}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


def test_local_bisection_finds_the_commit_that_degrades_the_draft_model(tmp_path: Path) -> None:
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    (tmp_path / "jobs" / "bisect-e2e.yaml").write_text(TIER)
    shas = history(tmp_path / "vllm", degrade_draft(tmp_path / "degraded"))

    done = fleet("bisect", "--good", shas[0], "--bad", shas[-1],
                 "--cell", "draft_model-k4__tiny-stdlib-target__cpu",
                 "--backend", "local", "--repo", str(tmp_path / "vllm"), "--parallel", "2",
                 "--local-parallel", "2", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "culprit" and report["verified"]
    assert report["culprit"]["last"] == shas[PLANTED]
    assert report["culprit"]["parent"] == shas[PLANTED - 1]
    sides = {row["sha"]: row["side"] for row in report["measurements"]}
    assert sides[shas[PLANTED]] == "bad" and sides[shas[PLANTED - 1]] == "good"
    assert "round 1:" in done.stderr
    with HistoryStore.open(tmp_path / "runs" / "history.sqlite") as store:  # the bisection's cost, kept
        [recorded] = store.bisections()
        jobs = store.jobs(recorded["bisection_id"])
    assert recorded["last_commit"] == shas[PLANTED] and recorded["gpu_hours"] == 0.0  # CPU cells: 0 GPUs
    assert len(jobs) == report["runs"] and {job.purpose for job in jobs} == {"bisect"}

