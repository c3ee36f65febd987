"""Running one vLLM configuration in a process of its own, and getting its answer or its log tail back.

Each configuration (reference, speculative, the capability probe) is a separate process because vLLM's
counters are per engine and its GPU memory is freed only when the process ends. The child gets a new
process session, so a timeout or a crash takes down vLLM's engine-core workers with it instead of
leaving them holding the GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds a child gets to exit after SIGTERM before it is killed.
TERM_GRACE_S = 10.0


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int | None
    timed_out: bool
    wall_s: float
    log_text: str
    result: dict[str, Any] | None


def _kill_session(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def child_command(*args: str) -> list[str]:
    """This interpreter running the vLLM engine module's child entry point."""
    return [sys.executable, "-m", "fleet.suite.engines.vllm", *args]


def run_child(command: list[str], *, workdir: Path, result_path: Path, env: dict[str, str],
              timeout_s: float) -> ChildOutcome:
    """Run the child to its end (or its timeout), then make sure nothing of its session survives."""
    log_path = workdir / f"{result_path.stem}.log"
    started = time.perf_counter()
    timed_out = False
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            try:
                returncode: int | None = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_session(process, signal.SIGTERM)
                try:
                    returncode = process.wait(timeout=TERM_GRACE_S)
                except subprocess.TimeoutExpired:
                    _kill_session(process, signal.SIGKILL)
                    returncode = process.wait()
        finally:
            # vLLM's engine-core workers may outlive a child that exited early, or a suite stopped while it
            # waited (SIGTERM or Ctrl-C: the run was cancelled); they hold GPU memory.
            _kill_session(process, signal.SIGKILL)
    wall_s = time.perf_counter() - started
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    result: dict[str, Any] | None = None
    if result_path.is_file():
        try:
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
            result = loaded if isinstance(loaded, dict) else None
        except (OSError, json.JSONDecodeError):
            result = None
    return ChildOutcome(returncode=returncode, timed_out=timed_out, wall_s=wall_s, log_text=log_text,
                        result=result)
