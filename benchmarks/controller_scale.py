"""Controller scale: render time, API requests per Job, peak RSS, growth from 200 to 2,000 cells.

The API server is the test emulator (tests/kube/emulator.py) with the simulated cluster, run in a separate
process so that the controller's memory is measured alone; each controller size runs in its own process
for a clean peak RSS. Run from the repository root:

    python benchmarks/controller_scale.py            # 200 and 2000 cells
    python benchmarks/controller_scale.py --sizes 200 1000 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.model import Cell  # noqa: E402
from fleet.plan.catalog import load_catalog, load_tier  # noqa: E402
from fleet.plan.matrix import expand  # noqa: E402


def synthetic_cells(n: int) -> list[Cell]:
    """n distinct cells: the weekly matrix's cells with numbered variants (same manifests' size)."""
    weekly = expand(load_tier(ROOT / "jobs", "weekly"), load_catalog(ROOT / "jobs"), tier_path="weekly.yaml")
    cells = []
    for i in range(n):
        base = weekly[i % len(weekly)]
        variant = base.variant.model_copy(update={"name": f"{base.variant.name}-r{i // len(weekly)}"})
        cells.append(base.model_copy(update={"variant": variant}))
    return cells


def serve() -> None:
    from tests.kube.cluster import Cluster
    from tests.kube.emulator import Emulator, EmulatorServer

    emulator = Emulator()
    with EmulatorServer(emulator) as server, Cluster(emulator):
        print(server.url, flush=True)
        sys.stdin.readline()  # the parent closes stdin (or writes a line) to stop the server
        print(json.dumps(dict(emulator.requests)), flush=True)


def controller(n: int, url: str) -> None:
    from fleet.backends.kube.client import make_backend
    from fleet.plan.render import RenderContext
    from fleet.run.controller import execute

    cells = synthetic_cells(n)
    run_id = f"scale-{n}"
    backend = make_backend(RenderContext(run_id=run_id), host=url)
    started = time.perf_counter()
    outcomes = execute(cells, backend, run_id=run_id)
    wall = time.perf_counter() - started
    backend.close()
    ok = sum(1 for o in outcomes if o.result is not None and o.error is None)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cells": n, "ok": ok, "wall_s": round(wall, 2), "peak_rss_mb": round(peak_mb, 1),
                      "requests": dict(backend.api.requests)}))


def render_time(n: int) -> float:
    from fleet.plan.render import RenderContext, render_run

    cells = synthetic_cells(n)
    context = RenderContext(run_id="scale")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        render_run(cells, context)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--controller", type=int)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.controller:
        controller(args.controller, args.url)
        return
    print(f"render: {max(args.sizes)} cells in {render_time(max(args.sizes)) * 1000:.0f} ms (best of 3)")
    for n in args.sizes:
        server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert server.stdout is not None and server.stdin is not None
        url = server.stdout.readline().strip()
        done = subprocess.run([sys.executable, __file__, "--controller", str(n), "--url", url],
                              capture_output=True, text=True, cwd=ROOT, check=True)
        server.stdin.write("\n")
        server.stdin.flush()
        server_side = json.loads(server.stdout.readline())
        server.wait(timeout=30)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        total = sum(server_side.values())
        print(f"{n} cells: {figures['ok']} ok, wall {figures['wall_s']} s, controller peak RSS "
              f"{figures['peak_rss_mb']} MB, API requests {total} = {total / n:.2f} per Job {server_side}")


if __name__ == "__main__":
    main()
