"""The attempt queue the machine-local backends share: attempts handed to `parallel` worker threads, each
attempt's cell.json written where the pod would find it, outcomes handed back in the order they finish."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from fleet.backends.base import Attempt, AttemptOutcome
from fleet.model import ResultError


class AttemptPool:
    """Runs `run(attempt)` on up to `parallel` threads; `outcomes()` ends when every attempt has one."""

    def __init__(self, run: Callable[[Attempt], AttemptOutcome], cell_dir: Callable[[str], Path], *,
                 parallel: int, what: str) -> None:
        self._run = run
        self._cell_dir = cell_dir
        self.parallel = parallel
        self._what = what
        self._pending: queue.Queue[Attempt] = queue.Queue()
        self._done: queue.Queue[AttemptOutcome] = queue.Queue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def submit(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            directory = self._cell_dir(attempt.cell.id)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "cell.json").write_text(attempt.cell.model_dump_json(indent=2) + "\n")
            with self._lock:
                self._outstanding += 1
            self._pending.put(attempt)
        while len(self._workers) < self.parallel:
            worker = threading.Thread(target=self._work, daemon=True)
            worker.start()
            self._workers.append(worker)

    def outcomes(self) -> Iterator[AttemptOutcome]:
        while True:
            with self._lock:
                if self._outstanding == 0:
                    return
            outcome = self._done.get()
            with self._lock:
                self._outstanding -= 1
            yield outcome

    def _work(self) -> None:
        while True:
            attempt = self._pending.get()
            try:
                outcome = self._run(attempt)
            except Exception as err:  # a worker that dies silently would leave outcomes() waiting forever
                failure = ResultError(category="infrastructure", reason="NoResult",
                                      message=f"the {self._what} backend failed the attempt: {err!r}")
                outcome = AttemptOutcome(attempt, None, failure, None, None, time.time(), time.time())
            self._done.put(outcome)
