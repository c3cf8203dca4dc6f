"""The HTML report opened in headless Chromium: it renders (non-blank screenshot) and its DOM holds
the summary tables and the inlined plots."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from report_helpers import log_study, records

from unlearnbench.reports import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
)
# Flags for a root, offline, throw-away browser: no sandbox (root), no network services, no GPU.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report_html(mlflow_uri, tmp_path_factory):
    from report_helpers import unique_experiment

    experiment = unique_experiment("browser")
    log_study(mlflow_uri, experiment, records())
    return build_report(experiment, tmp_path_factory.mktemp("out"), tracking_uri=mlflow_uri).html


def test_screenshot_is_not_blank(report_html, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "report.png"
    _chromium([f"--screenshot={shot}", "--window-size=1280,2000", report_html.as_uri()], tmp_path)
    assert shot.stat().st_size > 50_000  # a blank 1280×2000 page compresses to a few kB
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 2000)
    assert ImageStat.Stat(img).stddev[0] > 20  # text, tables and plots, not a flat colour
    # The plots sit below the tables: the lower half of the page is not empty either.
    lower = img.crop((0, 1000, 1280, 2000))
    assert ImageStat.Stat(lower).stddev[0] > 20
    dark = sum(img.histogram()[:128]) / (img.size[0] * img.size[1])
    assert 0.005 < dark < 0.6


def test_dom_has_tables_and_images(report_html, tmp_path):
    dom = _chromium(["--dump-dom", report_html.as_uri()], tmp_path).stdout
    assert dom.count('<table class="summary"') == 1
    assert dom.count("<img ") == 4
    assert dom.count('src="data:image/png;base64,') == 4
    for header in ("UA", "RA", "TA", "MIA-Efficacy", "Avg. Gap", "RTE (s)"):
        assert f'<th class="num">{header}</th>' in dom
    assert "<td>salun</td>" in dom and "<td>l1_sparse</td>" in dom
