"""Every tier's Jobs, as rendered for any run, validate on every Kubernetes minor fleet supports.

The supported range is MIN_KUBERNETES (fleet.plan.render says why) up to the newest schema
kubernetes-validate ships; docs/operating.md and the README state the same range. A Job's shape depends
on its pool (GPU resource, node labels, tolerations, AMD groups), its prompts (the dataset volume) and the
run (Kueue, shards, caches, a rerun's node preference), so each tier is rendered per pool and per run shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from fleet.model import Cell
from fleet.plan.catalog import load_catalog, load_tier
from fleet.plan.matrix import expand
from fleet.plan.render import MIN_KUBERNETES, RenderContext, render_job

JOBS = Path(__file__).resolve().parents[2] / "jobs"
TIERS = sorted(path.stem for path in JOBS.glob("*.yaml") if path.stem not in ("hardware", "variants"))
RUNS: dict[str, dict[str, Any]] = {
    "plain": {},
    "kueue-sharded-cached": {"kueue": True, "shards": 4, "model_cache_pvc": "fleet-models",
                             "compile_cache_pvc": "fleet-compile-cache", "hf_offline": True},
}


def minors(first: str, last: str) -> list[str]:
    major, low = (int(part) for part in first.split(".")[:2])
    high = int(last.split(".")[1])
    return [f"{major}.{minor}" for minor in range(low, high + 1)]


SUPPORTED = minors(MIN_KUBERNETES, latest_version())


def one_cell_per_pool(tier: str) -> list[Cell]:
    cells = expand(load_tier(JOBS, tier), load_catalog(JOBS), tier_path=f"{tier}.yaml")
    firsts: dict[str, Cell] = {}
    for cell in cells:
        firsts.setdefault(cell.hardware.name, cell)
    return list(firsts.values())


def test_the_supported_range_runs_from_1_29_to_at_least_1_33() -> None:
    assert SUPPORTED[0] == "1.29" and len(SUPPORTED) >= 5


@pytest.mark.parametrize("run", RUNS, ids=str)
@pytest.mark.parametrize("tier", TIERS, ids=str)
def test_every_tier_renders_jobs_valid_on_every_supported_kubernetes(tier: str, run: str) -> None:
    context = RenderContext(run_id=f"{tier}-20261207-000000-ab12", **RUNS[run])
    for cell in one_cell_per_pool(tier):
        # A rerun's Job adds the node preference; the plain run's first attempt is the smallest Job.
        job = render_job(cell, 2, context, avoid_nodes=["gpu-a", "gpu-b"]) if run != "plain" else \
            render_job(cell, 1, context)
        for version in SUPPORTED:
            kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize("tier", ["smoke", "nightly", "weekly"])
def test_unsharded_jobs_also_validate_on_1_26_to_1_28_where_on_pod_conditions_is_required(tier: str) -> None:
    context = RenderContext(run_id=f"{tier}-1", kueue=True)
    for cell in one_cell_per_pool(tier):
        for version in ("1.26", "1.27", "1.28"):
            kubernetes_validate.validate(render_job(cell, 1, context), version, strict=True)
