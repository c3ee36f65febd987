"""Which recorded H200 cells stand for what: shared by the benchmarks that fit noise from evidence/h200
and baselines/h200, so that each of them tells the GPU-bound cell from the host-bound ones the same way."""

#: The one GPU-bound configuration measured: an 8B-shaped Llama (dummy weights, real kernels and memory
#: traffic) whose decode step is set by the GPU, as the nightly tier's 8B-class targets are; the tiny
#: models' 6 M parameters leave their latency to the host's CPU (evidence/h200/README.md).
GPU_BOUND_MODEL = "bundled:llama-8b-shape/target"
#: Runs of the GPU-bound cell made by another procedure, not other engine starts of the cell's own:
#: - runs/m1 predates the batch-size-1 warm-up, whose missing kernels cost its first single request a JIT
#:   compile (speedup 1.31 there, 1.60-1.80 in mseries);
#: - aseries asked vLLM for async scheduling, which vLLM 0.26.0 leaves off for draft_model: TPOT p50
#:   2.15-4.21 ms over ten engine starts against mseries' 2.54-2.80 ms (evidence/h200/README.md), so the
#:   cell keeps vLLM's default;
#: - pinseries reused one reference for all 24 of its runs (its speedup shares one denominator) and ran
#:   half of them pinned to two CPUs: an experiment on what sets the per-start level, not the cell's
#:   procedure. Its twelve unpinned starts (pu*) read as mseries do (core 2.6 %, one start +25 %);
#: - pinseries2, the same experiment on a seventh lease's host, which ran the cell 5 % slower and twice as
#:   spread (evidence/h200/README.md): another host's level, not more starts of the baseline's hosts.
#: - startseries measured each run over three engine starts (workload.engine_starts: 3) and reports their
#:   median: a run of another unit, not one engine start, which is what the noise models draw.
EARLIER_PROCEDURE = ("h200/runs/m1/", "h200/aseries/", "h200/pinseries/", "h200/pinseries2/",
                     "h200/startseries/")


def earlier_procedure(path: str) -> bool:
    """Whether a RunResult file (a POSIX path) was measured by an earlier suite (EARLIER_PROCEDURE)."""
    return any(part in path for part in EARLIER_PROCEDURE)
