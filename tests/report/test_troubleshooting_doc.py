"""Every failure reason fleet can report has a section in docs/troubleshooting.md that the report links to."""

from __future__ import annotations

import re
from pathlib import Path

from fleet.judge.verdicts import judge_cell, summarize
from fleet.model import ResultError
from fleet.plan import retry
from fleet.report.text import TROUBLESHOOTING_DOC, render_text, troubleshooting_link
from tests.builders import make_cell

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / TROUBLESHOOTING_DOC
SECTION_PARTS = ("**Means:**", "**Confirm:**", "**Do:**")


def taxonomy() -> set[str]:
    """The reasons fleet/plan/retry.py names: its reason constants and every reason it budgets retries for."""
    constants = {value for name, value in vars(retry).items()
                 if name.isupper() and isinstance(value, str) and not name.startswith("_")}
    return constants | set(retry.DEFAULT_BUDGETS)


def sections() -> dict[str, str]:
    text = DOC.read_text()
    parts = re.split(r'<a id="([^"]+)"></a>\n', text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_retry_reason_has_a_section_when_the_doc_is_read() -> None:
    documented = sections()
    missing = sorted(taxonomy() - set(documented))
    assert not missing, f"docs/troubleshooting.md has no section for {missing}"


def test_every_section_says_what_it_means_how_to_confirm_and_what_to_do() -> None:
    for reason, body in sections().items():
        assert body.startswith(f"### {reason}\n"), reason
        assert all(part in body for part in SECTION_PARTS), reason


def test_internal_links_point_at_sections_when_the_doc_links_to_itself() -> None:
    documented = set(sections())
    for target in re.findall(r"\]\(#([^)]+)\)", DOC.read_text()):
        assert target in documented, target


def test_error_cell_links_to_its_reason_section_when_rendered_as_text() -> None:
    error = ResultError(category="infrastructure", reason=retry.GPU_XID, message="Xid 79", exit_code=1)
    verdict = judge_cell(None, None, baseline_path=None, result_path=None, attempts=3, error=error,
                         cell=make_cell())
    report = summarize([verdict], run_id="r", tier="smoke", backend="kube", started_at="a", finished_at="b")
    lines = render_text(report, {}, {}).splitlines()
    assert f"Troubleshooting: {TROUBLESHOOTING_DOC}#GpuXid" in lines
    assert troubleshooting_link(retry.GPU_XID).split("#")[1] in sections()
