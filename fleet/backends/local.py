"""The local backend: every cell runs as a subprocess on this machine, as its Kubernetes Job would run it.

The subprocess gets the same command line (`fleet suite run --cell ... --out ...`) and the same
environment variables a Job's container gets, so a cell that passes here fails on the cluster only for
reasons of the cluster. Cells run one at a time by default: latency metrics measured side by side on a
small machine would measure each other.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pydantic import ValidationError

from fleet.backends._pool import AttemptPool
from fleet.backends.base import Attempt, AttemptOutcome
from fleet.errors import ConfigError, ExitCode
from fleet.model import ResultError, RunResult

LOG_TAIL_LINES = 40


def suite_command(cell_path: Path, result_path: Path, reference_cache: Path) -> list[str]:
    """The container's command, with this interpreter standing in for the image's `fleet`."""
    return [
        sys.executable, "-m", "fleet", "suite", "run",
        "--cell", str(cell_path), "--out", str(result_path), "--reference-cache", str(reference_cache),
    ]


def job_environment(attempt: Attempt) -> dict[str, str]:
    """Variables a Job's container receives; models are never fetched from a hub at run time."""
    return {
        "FLEET_RUN_ID": attempt.run_id,
        "FLEET_CELL_ID": attempt.cell.id,
        "FLEET_ATTEMPT": str(attempt.number),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


#: Seconds a cancelled cell's suite has to stop its engines before it is killed.
CANCEL_GRACE_S = 15.0


class LocalBackend:
    name = "local"

    def __init__(self, run_dir: Path, *, parallel: int = 1,
                 on_start: Callable[[Attempt], None] | None = None,
                 command: Callable[[Path, Path, Path], list[str]] = suite_command) -> None:
        if parallel < 1:
            raise ConfigError("--parallel must be at least 1", where="--parallel")
        self.run_dir = run_dir.resolve()  # the subprocess runs in the cell directory
        self.parallel = parallel
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._cancelled = threading.Event()
        self._pool = AttemptPool(self._run, self.cell_dir, parallel=parallel, what="local")
        self._on_start = on_start
        self._command = command

    def cell_dir(self, cell_id: str) -> Path:
        return self.run_dir / "cells" / cell_id

    def submit(self, attempts: Sequence[Attempt]) -> None:
        self._pool.submit(attempts)

    def outcomes(self) -> Iterator[AttemptOutcome]:
        return self._pool.outcomes()

    def close(self) -> None:
        """Nothing is held between outcomes: each attempt's process is waited for by its own thread."""

    @property
    def closed(self) -> bool:
        return False  # close() released nothing: it can take more attempts

    def cancel(self) -> None:
        """Stop every running cell: SIGTERM first, which a suite turns into stopping its engines (their own
        sessions, which killing the suite would orphan on the GPU), SIGKILL after CANCEL_GRACE_S."""
        self._cancelled.set()
        with self._lock:
            running = list(self._running)
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + CANCEL_GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()

    def _run(self, attempt: Attempt) -> AttemptOutcome:
        directory = self.cell_dir(attempt.cell.id)
        result_path = directory / f"result.attempt-{attempt.number}.json"
        log_path = directory / f"attempt-{attempt.number}.log"
        reference_cache = self.run_dir / "reference-cache"
        started = time.time()
        if self._cancelled.is_set():
            cancelled = ResultError(category="infrastructure", reason="Cancelled",
                                    message="the run was cancelled")
            return AttemptOutcome(attempt, None, cancelled, None, None, started, time.time())
        if self._on_start is not None:
            self._on_start(attempt)
        command = self._command(directory / "cell.json", result_path, reference_cache)
        env = {**os.environ, **job_environment(attempt), "FLEET_CONTROLLER_PID": str(os.getpid())}
        timed_out = False
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)
            with self._lock:
                self._running.add(process)
            try:
                exit_code = process.wait(timeout=attempt.cell.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                process.kill()
                exit_code = process.wait()
            finally:
                with self._lock:
                    self._running.discard(process)
        finished = time.time()
        result, unreadable = _read_result(result_path)
        failure = _failure(exit_code, timed_out, result, unreadable, log_path, attempt.cell.timeout_s)
        return AttemptOutcome(attempt, result, failure, result_path if result else None, exit_code,
                              started, finished)


def _read_result(path: Path) -> tuple[RunResult | None, str | None]:
    if not path.exists():
        return None, None
    try:
        return RunResult.model_validate_json(path.read_bytes()), None
    except (ValidationError, ValueError) as err:
        return None, f"{path.name} is not a valid RunResult: {str(err).splitlines()[0]}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _failure(exit_code: int, timed_out: bool, result: RunResult | None, unreadable: str | None,
             log_path: Path, timeout_s: int) -> ResultError | None:
    """Why an attempt produced no usable result, in the failure taxonomy's words; None if it did."""
    if timed_out:
        return ResultError(category="infrastructure", reason="DeadlineExceeded",
                           message=f"the cell ran longer than its timeout of {timeout_s} s and was killed",
                           log_tail=log_tail(log_path), exit_code=exit_code)
    if result is not None:
        return None
    tail = log_tail(log_path)
    if unreadable:
        return ResultError(category="infrastructure", reason="BadResult", message=unreadable,
                           log_tail=tail, exit_code=exit_code)
    if exit_code == ExitCode.CONFIG:
        return ResultError(category="config", reason="ConfigError",
                           message=tail.splitlines()[-1] if tail else "the suite rejected the cell",
                           log_tail=tail, exit_code=exit_code)
    if exit_code < 0 or exit_code == 137:
        return ResultError(category="infrastructure", reason="Killed",
                           message=f"the suite process was killed (exit {exit_code}); out of memory?",
                           log_tail=tail, exit_code=exit_code)
    return ResultError(category="infrastructure", reason="NoResult",
                       message=f"the suite exited {exit_code} without writing a result",
                       log_tail=tail, exit_code=exit_code)
