"""End to end on the CPU: a drafter that loses its context on a prefix-cache hit (the reference engine's
injected fault, as vLLM #47930's drafter got no hidden states for restored tokens) makes `fleet submit`
FAIL with exit 1 through the differential judge alone: no baseline exists for the cells, and the greedy
output stays lossless, so only comparing prefix_caching=on with prefix_caching=off can catch it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_drafter_fault_on_cache_hits_fails_the_run_by_the_differential_verdict(tmp_path: Path) -> None:
    shutil.copytree(REPO / "tests" / "fixtures" / "tiers", tmp_path / "jobs", symlinks=False)
    (tmp_path / "baselines").mkdir()  # none: the pair needs no baseline

    done = subprocess.run([sys.executable, "-m", "fleet", "submit", "--tier", "differential-fault", "--json",
                           "--allow-missing-baselines"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, check=False)

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["status"] == "FAIL"
    [pair] = report["differentials"]
    assert pair["status"] == "DIVERGES" and pair["axis"] == "prefix_caching"
    assert "with prefix_caching=on vs" in pair["message"]
    length = {m["metric"]: m for m in pair["metrics"]}["acceptance_length"]
    on = length["value_b"] if pair["value_b"] == "on" else length["value_a"]
    off = length["value_a"] if pair["value_b"] == "on" else length["value_b"]
    assert on < off
    assert {cell["status"] for cell in report["cells"]} == {"NO_BASELINE"}
    # Lossless all the same (every prompt's greedy tokens equal the non-speculative ones), and the cache
    # really served the prefix_caching=on cell.
    results = {path.parent.name: json.loads(path.read_text())
               for path in (tmp_path / "runs" / report["run_id"]).glob("cells/*/result.attempt-*.json")}
    assert all(r["match"]["exact_token_matches"] == r["match"]["num_prompts"] for r in results.values())
    cache = next(r["prefix_cache"] for cell, r in results.items() if cell.endswith("prefix_caching=on"))
    assert cache["hits"] >= 0.5 * cache["queries"] > 0
