"""A run that fails on a diverging differential pair says so in its chat alert."""

from __future__ import annotations

from fleet.notify.slack import should_alert, slack_payload
from tests.builders import differential_report


def test_the_alert_lists_the_diverging_pair_with_its_figures() -> None:
    report = differential_report()
    assert should_alert(report)
    payload = slack_payload(report)
    assert "1 differential pair(s) diverged" in payload["text"]
    listed = payload["blocks"][1]["text"]["text"]
    assert "acceptance length 1.02 with prefix_caching=on vs 2.2 with prefix_caching=off" in listed
