"""fleet.notify.github: one issue per regressed tier, opened then commented on, against a fake GitHub."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleet.errors import ConfigError, InfrastructureError
from fleet.model import MetricVerdict, RunReport
from fleet.notify.github import LABEL, MAX_BODY, GitHubTarget, issue_body, open_or_update, target_from
from fleet.report import render
from fleet.run.deliver import notify
from tests.conftest import Fleet
from tests.history_builders import gpu_cell, verdict

TOKEN = "ghp_secretTOKEN0123456789"
CELL = gpu_cell()


def report(status: str, run_id: str = "nightly-20261128-030000-ab12") -> RunReport:
    metric = MetricVerdict(metric="acceptance_length", status="FAIL", observed=1.8, expected=2.1)
    cells = [verdict(CELL, status, [metric] if status == "FAIL" else [])]
    return RunReport(run_id=run_id, tier="nightly", backend="kube", started_at="t0", finished_at="t1",
                     status=status, exit_code=1 if status == "FAIL" else 0, cells=cells)  # type: ignore[arg-type]


@dataclass
class FakeGitHub:
    """Just the issue endpoints fleet calls, with GitHub's paths, status codes and JSON shapes."""

    url: str = ""
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    refuse_with: int | None = None


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, code: int, document: Any) -> None:
            body = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length)) if length else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append((method, self.path, headers, payload))
            if fake.refuse_with is not None:
                return self._answer(fake.refuse_with, {"message": "Resource not accessible by integration"})
            path, _, query = self.path.partition("?")
            if method == "GET" and path == "/repos/acme/vllm/issues":
                label = dict(part.split("=") for part in query.split("&"))["labels"]
                return self._answer(200, [i for i in fake.issues if label in i["labels"]])
            if method == "POST" and path == "/repos/acme/vllm/issues":
                number = len(fake.issues) + 1
                issue = {"number": number, "title": payload["title"], "state": "open",
                         "labels": payload["labels"], "html_url": f"https://github.test/acme/vllm/issues/{number}"}
                fake.issues.append(issue)
                fake.comments[number] = [payload["body"]]
                return self._answer(201, issue)
            if method == "POST" and path.startswith("/repos/acme/vllm/issues/") and path.endswith("comments"):
                number = int(path.split("/")[-2])
                fake.comments[number].append(payload["body"])
                return self._answer(201, {"html_url": f"https://github.test/acme/vllm/issues/{number}#c"})
            return self._answer(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    yield fake
    server.shutdown()
    server.server_close()


def target(fake: FakeGitHub) -> GitHubTarget:
    return GitHubTarget(repo="acme/vllm", token=TOKEN, api=fake.url)


def test_first_failing_run_opens_a_labelled_issue_with_the_markdown_report(github: FakeGitHub) -> None:
    failing = report("FAIL")
    done = open_or_update(target(github), failing, render(failing, "markdown"), "https://ci.test/r/1")
    assert (done.action, done.number) == ("opened", 1)
    [issue] = github.issues
    assert issue["title"] == "fleet: spec-decode regression in the nightly tier"
    assert issue["labels"] == [LABEL]
    body = github.comments[1][0]
    assert "acceptance_length" in body and "https://ci.test/r/1" in body and failing.run_id in body
    method, _, headers, _ = github.requests[-1]
    assert method == "POST" and headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["x-github-api-version"] == "2022-11-28"


def test_later_failing_run_of_the_tier_comments_on_the_open_issue(github: FakeGitHub) -> None:
    first, second = report("FAIL", "nightly-1"), report("FAIL", "nightly-2")
    open_or_update(target(github), first, render(first, "markdown"))
    done = open_or_update(target(github), second, render(second, "markdown"))
    assert (done.action, done.number, len(github.issues)) == ("commented", 1, 1)
    assert "nightly-2" in github.comments[1][1]


def test_a_pull_request_with_the_same_title_is_not_taken_for_the_issue(github: FakeGitHub) -> None:
    failing = report("FAIL")
    github.issues.append({"number": 7, "title": "fleet: spec-decode regression in the nightly tier",
                          "state": "open", "labels": [LABEL], "pull_request": {"url": "x"}})
    github.comments[7] = []
    assert open_or_update(target(github), failing, render(failing, "markdown")).action == "opened"


def test_no_request_or_error_carries_the_token_outside_its_header(github: FakeGitHub) -> None:
    failing = report("FAIL")
    open_or_update(target(github), failing, render(failing, "markdown"))
    assert all(TOKEN not in json.dumps(payload) and TOKEN not in path
               for _, path, _, payload in github.requests)
    github.refuse_with = 403
    with pytest.raises(InfrastructureError) as info:
        open_or_update(target(github), failing, "x")
    assert "HTTP 403" in info.value.line() and "issues: write" in info.value.line()
    assert TOKEN not in info.value.line() and TOKEN not in repr(target(github))


def test_refused_issue_is_printed_and_the_verdict_stands(github: FakeGitHub,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    github.refuse_with = 404
    notify(report("FAIL"), webhook=None, link=None, github=target(github))
    assert "GitHub issue not updated" in capsys.readouterr().err
    notify(report("PASS"), webhook=None, link=None, github=target(github))
    assert len(github.requests) == 1  # a passing run calls nobody


def test_token_comes_from_the_environment_and_a_missing_one_is_a_config_error() -> None:
    found = target_from("acme/vllm", {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": "https://ghe.test/api/v3/"})
    assert found is not None and (found.api, found.token) == ("https://ghe.test/api/v3", TOKEN)
    assert target_from(None, {"GITHUB_TOKEN": TOKEN}) is None
    with pytest.raises(ConfigError, match="no GitHub token"):
        target_from("acme/vllm", {})
    with pytest.raises(ConfigError, match="not OWNER/NAME"):
        target_from("https://github.com/acme/vllm", {"GITHUB_TOKEN": TOKEN})


def test_a_huge_report_is_cut_below_githubs_body_limit() -> None:
    body = issue_body(report("FAIL"), "x" * 200_000)
    assert len(body) < 65_536 and body.endswith("see the full report)\n") and len(body) > MAX_BODY


def test_merged_failing_shards_open_the_issue(github: FakeGitHub, tmp_path: Path, fleet: Fleet,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "shard-0"
    run_dir.mkdir()
    (run_dir / "report.json").write_text(report("FAIL").model_dump_json())
    monkeypatch.setenv("FLEET_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    code, _, err = fleet("merge", str(run_dir), "--github-issue-repo", "acme/vllm", "--jobs",
                         str(tmp_path / "no-jobs"))
    assert code == 1
    assert "GitHub issue #1 opened" in err
    assert len(github.issues) == 1


def test_submit_without_a_token_refuses_before_running_anything(tmp_path: Path, fleet: Fleet,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEET_GITHUB_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    code, _, err = fleet("submit", "--tier", "local", "--runs-dir", str(tmp_path / "runs"),
                         "--github-issue-repo", "acme/vllm", "--history-db", "")
    assert code == 2 and "no GitHub token" in err
    assert not (tmp_path / "runs").exists()
