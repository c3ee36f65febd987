"""Tell a channel when a run fails: a Slack-compatible webhook carrying the verdict and the report link.

A regression found at 3 a.m. by the nightly tier is worth something only if someone reads it; the
incoming-webhook JSON ({"text": ..., "blocks": [...]}) is accepted by Slack, Mattermost, Rocket.Chat
and most chat tools. Sending is stdlib urllib, so no dependency is added; the payload is built by a
pure function so what is sent can be tested without a network.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from fleet.errors import InfrastructureError
from fleet.model import MetricVerdict, RunReport

TIMEOUT_S = 10.0
#: Slack's section text limit is 3000 characters; the list of failing cells is cut well before that.
_MAX_LISTED = 20


def should_alert(report: RunReport) -> bool:
    """Only a found regression pages anyone: errors and inconclusive runs go to the report, not a channel."""
    return report.status == "FAIL" or any(cell.status == "FAIL" for cell in report.cells)


def _failed_metric(m: MetricVerdict) -> str:
    """`tpot_p50_ms 2.89 (+8.2 %, best of 5 runs; expected 2.67)`: a noisy metric FAILs on its best run
    (fleet.judge.best_run), which understates the change; the line says so rather than pass it off as
    the runs' value."""
    if m.observed is None or m.expected is None:
        return m.metric
    change = f"{100 * (m.observed / m.expected - 1):+.1f} %, " if m.expected else ""
    best = f"best of {m.runs} runs; " if (m.runs or 1) > 1 and "best of the runs" in m.rule else ""
    return f"{m.metric} {m.observed:.4g} ({change}{best}expected {m.expected:.4g})"


def slack_payload(report: RunReport, link: str | None = None) -> dict[str, Any]:
    failing = [cell for cell in report.cells if cell.status == "FAIL"]
    lines = []
    for cell in failing[:_MAX_LISTED]:
        metrics = ", ".join(_failed_metric(m) for m in cell.metrics if m.status == "FAIL")
        lines.append(f"• `{cell.cell_id}` on {cell.hardware}: {metrics or cell.message}")
    if len(failing) > _MAX_LISTED:
        lines.append(f"• … and {len(failing) - _MAX_LISTED} more")
    # Pairs of cells that differ in one execution axis and diverged (fleet.judge.differential).
    diverged = [pair for pair in report.differentials if pair.status == "DIVERGES"]
    lines += [f"• `{pair.name}` on {pair.hardware}: {pair.message}" for pair in diverged[:_MAX_LISTED]]
    pairs = f"; {len(diverged)} differential pair(s) diverged" if diverged else ""
    title = (f"fleet: {len(failing)} of {len(report.cells)} cells regressed{pairs} in run {report.run_id} "
             f"(tier {report.tier})")
    text = title + (f" — {link}" if link else "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines) or "(no cell listed)"}},
    ]
    if link:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open the report>"}})
    return {"text": text, "blocks": blocks}


def send(url: str, payload: dict[str, Any], *, timeout_s: float = TIMEOUT_S) -> None:
    """POST the payload as JSON; a refused or failed delivery is an InfrastructureError."""
    if not url.startswith(("https://", "http://")):
        raise InfrastructureError(f"webhook URL {url!r} is not http(s)", where="--alert-webhook",
                                  fix="pass the channel's incoming-webhook URL")
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        err.close()
        raise InfrastructureError(f"webhook answered HTTP {err.code}", where="--alert-webhook",
                                  cause="a wrong or revoked webhook URL") from err
    except (urllib.error.URLError, OSError) as err:
        raise InfrastructureError(f"webhook not reachable: {getattr(err, 'reason', err)}",
                                  where="--alert-webhook") from err
    if not 200 <= status < 300:
        raise InfrastructureError(f"webhook answered HTTP {status}", where="--alert-webhook")
