"""End to end on the CPU: the README's main command, and a real regression caught by it.

Both run the real reference engine on the bundled models through the local backend's subprocesses,
judged against the committed baselines/cpu files, exactly as `fleet submit --tier local` does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from fleet.suite.model_refs import resolve_model

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def fleet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)


def degrade_draft(destination: Path, noise: float = 0.6, *, which: str = "bundled:tiny-stdlib/draft") -> Path:
    """A copy of a bundled drafter whose weight matrices carry Gaussian noise of `noise` x their std."""
    source = Path(resolve_model(which))
    shutil.copytree(source, destination)
    generator = torch.Generator().manual_seed(0)
    tensors = load_file(str(source / "model.safetensors"))
    perturbed = {}
    for name, tensor in tensors.items():
        values = tensor.float()
        if values.dim() >= 2 and tensor.is_floating_point():
            values = values + noise * values.std() * torch.randn(values.shape, generator=generator)
        perturbed[name] = values.to(tensor.dtype).contiguous()
    save_file(perturbed, str(destination / "model.safetensors"), metadata={"format": "pt"})
    return destination


def test_the_readme_main_command_passes_against_the_committed_cpu_baselines(tmp_path: Path) -> None:
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    shutil.copytree(REPO / "baselines", tmp_path / "baselines")
    done = fleet("submit", "--tier", "local", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "===== Speculative Decoding Regression Test Results =====" in done.stdout
    assert done.stdout.count("Status: ✓ PASSED") == 3


@pytest.mark.parametrize(("variant", "drafter", "noise"), [
    ("draft_model-k4", "bundled:tiny-stdlib/draft", 0.6),
    ("eagle3-k4", "bundled:tiny-stdlib/eagle3", 0.6),
])
def test_a_degraded_drafter_fails_acceptance_and_exits_1(
    tmp_path: Path, variant: str, drafter: str, noise: float
) -> None:
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    degraded = degrade_draft(tmp_path / "degraded-drafter", noise, which=drafter)
    tier_path = tmp_path / "jobs" / "local.yaml"
    tier = yaml.safe_load(tier_path.read_text())
    for entry in tier["cells"]:
        if entry["variant"] == variant:
            entry["draft_model"] = str(degraded)
    tier["max_runs"] = 3  # the tier's rerun budget, which the judge splits its false-alarm budget over
    tier_path.write_text(yaml.safe_dump(tier))

    done = fleet("submit", "--tier", "local", "--variant", variant, "--json",
                 "--baselines", str(REPO / "baselines"), cwd=tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    [cell] = report["cells"]
    assert cell["status"] == "FAIL"
    failed = {m["metric"] for m in cell["metrics"] if m["status"] == "FAIL"}
    assert {"acceptance_length", "acceptance_rate"} <= failed
    assert report["max_runs"] == 3
    observed = {m["metric"]: m for m in cell["metrics"]}["acceptance_length"]
    assert observed["observed"] < observed["lo"]
