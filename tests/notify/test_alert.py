"""fleet.notify.slack: a Slack-compatible webhook on FAIL, sent to a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.errors import InfrastructureError
from fleet.history.store import HistoryStore
from fleet.model import MetricVerdict, RunReport
from fleet.notify.slack import send, should_alert, slack_payload
from fleet.run.deliver import record_and_alert
from tests.cli.test_history_cli import write_run_dir
from tests.history_builders import gpu_cell, stepped_history, verdict

CELL = gpu_cell()


def report(status: str) -> RunReport:
    metric = MetricVerdict(metric="acceptance_length", status="FAIL", observed=1.8, expected=2.1)
    cells = [verdict(CELL, status, [metric] if status == "FAIL" else [])]
    return RunReport(run_id="nightly-1", tier="nightly", backend="kube", started_at="t", finished_at="t",
                     status=status, exit_code=1 if status == "FAIL" else 0, cells=cells)  # type: ignore[arg-type]


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any], list[int]]]:
    received: list[Any] = []
    answer = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(answer[0])
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received, answer
    server.shutdown()
    server.server_close()


def test_failing_run_posts_the_regressed_metric_and_the_report_link(webhook: Any) -> None:
    url, received, _ = webhook
    failing = report("FAIL")
    assert should_alert(failing)
    send(url, slack_payload(failing, "https://ci.example/runs/nightly-1/index.html"))
    [(content_type, payload)] = received
    assert content_type == "application/json"
    assert payload["text"].startswith("fleet: 1 of 1 cells regressed in run nightly-1")
    assert "https://ci.example/runs/nightly-1/index.html" in payload["text"]
    assert "acceptance_length 1.8 (-14.3 %, expected 2.1)" in json.dumps(payload["blocks"])


def test_a_metric_failed_on_its_best_run_is_alerted_as_the_best_run() -> None:
    tpot = MetricVerdict(metric="tpot_p50_ms", status="FAIL", observed=2.89, expected=2.67, runs=5,
                         rule="best of the runs on recorded spread, slow starts allowed + Mann–Whitney")
    cells = [verdict(CELL, "FAIL", [tpot])]
    failing = RunReport(run_id="nightly-1", tier="nightly", backend="kube", started_at="t", finished_at="t",
                        status="FAIL", exit_code=1, cells=cells)
    text = json.dumps(slack_payload(failing)["blocks"], ensure_ascii=False)
    assert "tpot_p50_ms 2.89 (+8.2 %, best of 5 runs; expected 2.67)" in text


def test_passing_or_erroring_run_does_not_alert() -> None:
    assert not should_alert(report("PASS"))
    assert not should_alert(report("ERROR"))


def test_webhook_refusal_is_an_infrastructure_error(webhook: Any) -> None:
    url, _, answer = webhook
    answer[0] = 403
    with pytest.raises(InfrastructureError, match="HTTP 403"):
        send(url, slack_payload(report("FAIL")))


def test_non_http_webhook_url_is_refused_before_sending() -> None:
    with pytest.raises(InfrastructureError, match="not http"):
        send("file:///etc/passwd", {"text": "x"})


def test_submitted_failing_run_is_recorded_costed_and_alerted_with_its_link(webhook: Any,
                                                                           tmp_path: Path) -> None:
    url, received, _ = webhook
    record = stepped_history(runs=12)[-1]
    run_dir = write_run_dir(tmp_path, record)
    link = "https://ci.example/fleet/run-nightly-11.html"
    record_and_alert(run_dir, record.report, record.jobs, prices={"h100": 3.0},
                     db=str(tmp_path / "h.sqlite"), webhook=url, link=link)
    assert json.loads((run_dir / "cost.json").read_text())["total"]["cost_usd"] == 3.0
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        [row] = store.runs()
    assert (row.run_id, row.cost_usd, row.link) == ("nightly-11", 3.0, link)
    [(_, payload)] = received
    assert link in payload["text"]


@pytest.mark.parametrize("database", ["below a file", "not a database"])
def test_unreachable_webhook_and_history_only_warn_so_the_verdict_stands(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str) -> None:
    record = stepped_history(runs=12)[-1]
    run_dir = write_run_dir(tmp_path, record)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("not a database")
    db = blocker / "h.sqlite" if database == "below a file" else blocker
    record_and_alert(run_dir, record.report, record.jobs, prices={}, db=str(db),
                     webhook="http://127.0.0.1:9/hook", link=None)
    err = capsys.readouterr().err
    assert "run not recorded in the history" in err and "alert not sent" in err
