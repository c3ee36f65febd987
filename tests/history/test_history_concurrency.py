"""Several `fleet submit` processes record into one history database at once, from a fresh file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from fleet.history.store import SCHEMA_VERSION, HistoryStore
from tests.history_builders import gpu_cell, run_record

WRITERS = 4
RUNS_EACH = 8


def write_runs(path: str, writer: int) -> None:
    cell = gpu_cell(f"v{writer}")
    store = HistoryStore.open(path)  # every writer also races to create and migrate the schema
    try:
        for number in range(RUNS_EACH):
            store.record_run(run_record(f"w{writer}-r{number}", [(cell, {"speedup": float(number + 1)})],
                                        at=f"2026-11-01T00:{number:02d}:00Z", commit=f"c{number}"))
            store.runs()  # readers interleave with the other processes' writes
    finally:
        store.close()


@pytest.mark.slow  # four interpreter starts: 5-15 s on 2 cores
def test_every_run_of_every_concurrent_writer_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=write_runs, args=(str(path), w)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * WRITERS
    with HistoryStore.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert len(store.runs()) == WRITERS * RUNS_EACH
        points = store.series(metric="speedup")
        assert len(points) == WRITERS * RUNS_EACH
        first = sorted(p.value for p in points if p.cell_id.startswith("v0"))
        assert first == [float(n + 1) for n in range(8)]
