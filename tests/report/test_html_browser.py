"""The HTML report in a real browser: headless Chromium loads every page with no console message, and
a screenshot of each is kept as a test artifact ($FLEET_TEST_ARTIFACTS, when set, gets a copy).

The pages carry no script and a Content-Security-Policy of default-src 'none', so Chromium reports any
attempt to fetch a file, a font or a CDN script as a console message; the control test proves a page
that tries gets caught. Chromium is Debian's `chromium` package (CI installs it: see .ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.report.test_html import write_site

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium (apt-get install -y chromium; "
                                       "CI installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1200,1600", "--hide-scrollbars"]
CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=90, check=False)


def load(page: Path, shots: Path) -> tuple[list[str], str]:
    """Console messages and the screenshot's path, from one fresh browser profile per page."""
    shot = shots / f"{page.stem}.png"
    run = chromium(page, shots / f"profile-{page.stem}", f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 2000, run.stderr[-2000:]
    return CONSOLE.findall(run.stderr), str(shot)


def keep(shot: Path) -> None:
    target = os.environ.get("FLEET_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


@pytest.mark.slow  # one browser start per page: about a second each on 2 cores
def test_every_page_renders_in_chromium_without_console_messages(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for name in ("index.html", "trends.html", "run-nightly-12.html"):
        messages, shot = load(site / name, shots)
        assert messages == [], f"{name}: {messages}"
        keep(Path(shot))
    dom = chromium(site / "trends.html", shots / "profile-dom", "--dump-dom").stdout
    assert dom.count("<svg") >= 3 and "Change points" in dom


def test_a_page_that_fetches_anything_is_caught(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    page = site / "trends.html"
    page.write_text(page.read_text().replace(
        "</body>", '<img src="https://cdn.example.com/chart.png"><script>console.error("x")</script></body>'))
    messages, _ = load(page, tmp_path)
    assert len(messages) == 2, messages
    assert any("cdn.example.com" in m for m in messages)
