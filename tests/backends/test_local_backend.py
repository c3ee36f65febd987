"""The local backend runs each attempt's command as a subprocess and classifies how it ended.

The suite itself is replaced at the backend's command seam by small Python programs that behave like
it (write a result, exit 2, crash, hang), so these tests exercise the real process handling.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleet.backends.base import Attempt
from fleet.backends.local import LocalBackend, job_environment
from fleet.model import RunResult
from tests.builders import make_cell


def scripted(body: str):  # type: ignore[no-untyped-def]
    def command(cell: Path, out: Path, cache: Path) -> list[str]:
        return [sys.executable, "-c", body, str(cell), str(out), str(cache)]

    return command


WRITE_RESULT = """
import sys, json, os
from fleet.model import Cell, RunResult, Provenance
cell = Cell.model_validate_json(open(sys.argv[1]).read())
assert os.environ["FLEET_CELL_ID"] == cell.id and os.environ["HF_HUB_OFFLINE"] == "1"
doc = RunResult(cell=cell, status="ok", provenance=Provenance(fleet_version="t", engine="script"),
                metrics={"acceptance_length": 1.5})
open(sys.argv[2], "w").write(doc.model_dump_json())
"""


def run_one(tmp_path: Path, body: str, timeout_s: int = 60):  # type: ignore[no-untyped-def]
    cell = make_cell().model_copy(update={"timeout_s": timeout_s})
    backend = LocalBackend(tmp_path, command=scripted(body))
    backend.submit([Attempt(cell, 1, "run-1")])
    [outcome] = list(backend.outcomes())
    return outcome


def test_a_written_result_is_read_back_with_the_job_environment(tmp_path: Path) -> None:
    outcome = run_one(tmp_path, WRITE_RESULT)
    assert outcome.failure is None and outcome.exit_code == 0
    assert isinstance(outcome.result, RunResult)
    assert outcome.result.metrics == {"acceptance_length": 1.5}
    assert (tmp_path / "cells" / outcome.cell_id / "cell.json").exists()


def test_exit_2_without_result_is_a_config_failure_with_the_last_log_line(tmp_path: Path) -> None:
    outcome = run_one(tmp_path, "import sys; print('config error: no such model'); sys.exit(2)")
    assert outcome.failure is not None
    assert outcome.failure.category == "config"
    assert outcome.failure.message == "config error: no such model"


def test_a_crash_without_result_is_an_infrastructure_failure_with_the_log_tail(tmp_path: Path) -> None:
    outcome = run_one(tmp_path, "raise RuntimeError('CUDA error: an illegal memory access')")
    assert outcome.failure is not None
    assert outcome.failure.category == "infrastructure"
    assert outcome.failure.reason == "NoResult"
    assert "illegal memory access" in outcome.failure.log_tail


def test_a_cell_past_its_timeout_is_killed_as_deadline_exceeded(tmp_path: Path) -> None:
    outcome = run_one(tmp_path, "import time; time.sleep(60)", timeout_s=1)
    assert outcome.failure is not None
    assert outcome.failure.reason == "DeadlineExceeded"
    assert outcome.finished_at - outcome.started_at < 30


def test_a_garbled_result_file_is_an_infrastructure_failure(tmp_path: Path) -> None:
    outcome = run_one(tmp_path, "import sys; open(sys.argv[2], 'w').write('{not json')")
    assert outcome.failure is not None
    assert outcome.failure.reason == "BadResult"


def test_one_failing_cell_does_not_stop_the_others(tmp_path: Path) -> None:
    good, bad = make_cell("good"), make_cell("bad")
    fail_bad = "import sys, json, os\nif 'bad__' in sys.argv[1]: sys.exit(3)"
    body = WRITE_RESULT.replace("import sys, json, os", fail_bad)
    backend = LocalBackend(tmp_path, command=scripted(body))
    backend.submit([Attempt(bad, 1, "r"), Attempt(good, 1, "r")])
    outcomes = {o.cell_id: o for o in backend.outcomes()}
    assert outcomes[bad.id].failure is not None
    assert outcomes[good.id].result is not None


def test_job_environment_names_the_run_cell_and_attempt() -> None:
    env = job_environment(Attempt(make_cell(), 2, "run-9"))
    assert env["FLEET_RUN_ID"] == "run-9" and env["FLEET_ATTEMPT"] == "2"


def gone_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` ends within `seconds` (polled)."""
    import os
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_suite_process_dies_with_the_controller(tmp_path: Path) -> None:
    """A `fleet submit` killed mid-run must not leave its suite processes running."""
    import signal
    import subprocess

    program = (
        "import subprocess, sys, os, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'from fleet.cli.suite_cmd import exit_with_controller; exit_with_controller(); "
        "import time; time.sleep(60)'], env={**os.environ, 'FLEET_CONTROLLER_PID': str(os.getpid())})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True) as controller:
        assert controller.stdout is not None
        child_pid = int(controller.stdout.readline())
        controller.send_signal(signal.SIGKILL)
        controller.wait()
    assert gone_within(child_pid, 20), "the suite process outlived its controller"


def test_a_cancelled_run_stops_the_engines_its_suites_started(tmp_path: Path) -> None:
    """Cancelling (Ctrl-C, or SIGTERM from CI) must not leave an engine in its own session holding a GPU."""
    import os
    import time

    engine_pid = tmp_path / "engine.pid"
    engine = tmp_path / "engine.py"
    engine.write_text(f"import os, time\nopen({str(engine_pid)!r}, 'w').write(str(os.getpid()))\n"
                      "time.sleep(60)\n")
    # A suite as `fleet suite run` is one: SIGTERM raises KeyboardInterrupt (fleet.cli.main), and its engine
    # runs in a session of its own (fleet.suite.engines.vllm_launch.run_child).
    suite = (
        "import os, signal, sys, pathlib\n"
        "from fleet.cli import _terminated\n"
        "from fleet.suite.engines.vllm_launch import run_child\n"
        "signal.signal(signal.SIGTERM, _terminated)\n"
        "out = pathlib.Path(sys.argv[2])\n"
        f"run_child([sys.executable, {str(engine)!r}], workdir=out.parent,\n"
        "          result_path=out.parent / 'c.json', env=dict(os.environ), timeout_s=120)\n"
    )
    backend = LocalBackend(tmp_path / "run", command=scripted(suite))
    backend.submit([Attempt(make_cell(), 1, "run-1")])
    deadline = time.monotonic() + 30
    while not (engine_pid.is_file() and engine_pid.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(engine_pid.read_text())
    backend.cancel()
    if not gone_within(pid, 20):
        os.kill(pid, 9)
        raise AssertionError("the engine outlived the cancelled run")
