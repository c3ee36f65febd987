"""Open, or update, one GitHub issue per regressed tier through GitHub's REST API.

A chat message scrolls away; an issue stays open until someone closes it, collects every later failing
run of the same tier as a comment (so a flaky tier shows as one issue with many comments, not many
issues), and can be assigned and referenced from the fix. One open issue per tier is found by its
label (`fleet-regression`) and exact title. The body is the run's Markdown report, which holds
verdicts, values and links but never a credential; the token travels only in the Authorization
header and is never part of a message or an error. Sending is stdlib urllib like fleet.notify.slack, so
no dependency is added; the decisions (title, body, which call to make) are pure functions.

API: https://docs.github.com/en/rest/issues (api version 2022-11-28): list a repository's issues
filtered by label, create an issue, create an issue comment. The token needs `issues: write`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fleet.errors import ConfigError, InfrastructureError
from fleet.model import RunReport

API = "https://api.github.com"
API_VERSION = "2022-11-28"
LABEL = "fleet-regression"
TIMEOUT_S = 10.0
#: GitHub refuses bodies over 65,536 characters; the cut leaves room for the note that says so.
MAX_BODY = 65_000
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
#: Environment variables the token is read from, first found wins (GitHub Actions sets GITHUB_TOKEN).
TOKEN_VARIABLES = ("FLEET_GITHUB_TOKEN", "GITHUB_TOKEN")


@dataclass(frozen=True)
class GitHubTarget:
    """Where issues go. `token` is excluded from repr so it cannot leak into a log or a traceback."""

    repo: str
    token: str = field(repr=False)
    api: str = API


@dataclass(frozen=True)
class IssueAction:
    """What was done: `opened` a new issue or `commented` on the tier's open one."""

    action: Literal["opened", "commented"]
    number: int
    url: str


def target_from(repo: str | None, environ: Mapping[str, str], api: str | None = None) -> GitHubTarget | None:
    """The target when a repository is named; its token from the environment, never from a flag."""
    if not repo:
        return None
    if not _REPO.match(repo):
        raise ConfigError(f"GitHub repository {repo!r} is not OWNER/NAME", where="--github-issue-repo",
                          fix="pass it as e.g. vllm-project/vllm")
    token = next((environ[name] for name in TOKEN_VARIABLES if environ.get(name)), None)
    if token is None:
        raise ConfigError("no GitHub token to open issues with", where="--github-issue-repo",
                          cause=f"none of {', '.join(TOKEN_VARIABLES)} is set",
                          fix="export FLEET_GITHUB_TOKEN (a token with issues: write), or drop the option")
    base = (api or environ.get("GITHUB_API_URL") or API).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ConfigError(f"GitHub API URL {base!r} is not http(s)", where="GITHUB_API_URL")
    return GitHubTarget(repo=repo, token=token, api=base)


def issue_title(report: RunReport) -> str:
    """The same title for every failing run of a tier, so later runs find the open issue."""
    return f"fleet: spec-decode regression in the {report.tier} tier"


def issue_body(report: RunReport, markdown: str, link: str | None = None) -> str:
    failing = [cell.cell_id for cell in report.cells if cell.status == "FAIL"]
    head = [f"Run `{report.run_id}` ({report.started_at} to {report.finished_at}, backend {report.backend}): "
            f"{len(failing)} of {len(report.cells)} cells regressed."]
    if link:
        head.append(f"Report: {link}")
    body = "\n\n".join([*head, markdown.strip()]) + "\n"
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY] + "\n\n(report cut at GitHub's size limit: see the full report)\n"
    return body


def find_open_issue(issues: Sequence[Mapping[str, Any]], title: str) -> Mapping[str, Any] | None:
    """The open issue with exactly this title; pull requests (also listed by the issues API) excluded."""
    return next((item for item in issues
                 if item.get("title") == title and "pull_request" not in item
                 and item.get("state", "open") == "open"), None)


def open_or_update(target: GitHubTarget, report: RunReport, markdown: str, link: str | None = None,
                   *, timeout_s: float = TIMEOUT_S) -> IssueAction:
    """Comment on the tier's open issue, or open one; any refusal is an InfrastructureError."""
    title = issue_title(report)
    body = issue_body(report, markdown, link)
    listed = _call(target, "GET", f"/repos/{target.repo}/issues?state=open&labels={LABEL}&per_page=100",
                   None, timeout_s)
    existing = find_open_issue(listed if isinstance(listed, list) else [], title)
    if existing is not None:
        number = int(existing["number"])
        comment = _call(target, "POST", f"/repos/{target.repo}/issues/{number}/comments", {"body": body},
                        timeout_s)
        return IssueAction("commented", number, str(comment.get("html_url", existing.get("html_url", ""))))
    created = _call(target, "POST", f"/repos/{target.repo}/issues",
                    {"title": title, "body": body, "labels": [LABEL]}, timeout_s)
    return IssueAction("opened", int(created["number"]), str(created.get("html_url", "")))


def _call(target: GitHubTarget, method: str, path: str, payload: dict[str, Any] | None,
          timeout_s: float) -> Any:
    request = urllib.request.Request(
        target.api + path, method=method,
        data=json.dumps(payload).encode() if payload is not None else None,
        headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                 "Authorization": f"Bearer {target.token}", "User-Agent": "fleet",
                 **({"Content-Type": "application/json"} if payload is not None else {})})
    where = f"GitHub {method} {path.split('?')[0]}"
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        err.close()  # the error carries GitHub's open response
        causes = {401: "the token is wrong or expired",
                  403: "the token lacks issues: write on this repository, or a rate limit was hit",
                  404: "the repository does not exist or the token cannot see it",
                  410: "issues are disabled on this repository",
                  422: f"GitHub refused the issue (is the label {LABEL!r} allowed?)"}
        raise InfrastructureError(f"GitHub answered HTTP {err.code}", where=where,
                                  cause=causes.get(err.code), fix="check --github-issue-repo and the token's "
                                  "permissions; the run's verdict is unaffected") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise InfrastructureError(f"GitHub API not reachable: {getattr(err, 'reason', err)}",
                                  where=where) from None
