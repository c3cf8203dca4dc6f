"""The HTML report opened in headless Chromium: it renders (non-blank screenshot) and its DOM holds
the summary tables and the inlined plots."""

from __future__ import annotations

import base64
import html
import io
import re
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


# Every plot of the report: figure id -> words its title + caption must hold (labelled).
FIGURES = {
    "ua-vs-ta": ("UA vs TA", "labelled"),
    "gap-bars": ("Gap to retrain", "std over seeds", "beyond the noise"),
    "pareto": ("Run time vs Avg. Gap", "retrain's run time"),
    "roc": ("MIA ROC", "SVC of MIA-Efficacy", "1/n_nonmembers", "undefined"),
    "robust-bars": ("Clean and robust accuracy", "Linf", "ε = 0.03137 (8/255)", "n = points"),
    "per-class-class-3": ("Per-class test accuracy",),
}


def _figures(dom: str) -> dict[str, tuple[bytes, str]]:
    """figure id -> (decoded PNG, title + caption text) from the rendered DOM."""
    out = {}
    for fid, b64, text in re.findall(
            r'<figure id="fig-([^"]+)">\s*<img src="data:image/png;base64,([^"]+)"[^>]*>\s*<figcaption>(.*?)</figcaption>',
            dom, re.S):
        out[fid] = (base64.b64decode(b64), html.unescape(re.sub(r"<[^>]+>", "", text)))
    return out


def test_dom_has_tables_and_images(report_html, tmp_path):
    dom = _chromium(["--dump-dom", report_html.as_uri()], tmp_path).stdout
    assert dom.count('<table class="summary"') == 1
    assert dom.count("<img ") == len(FIGURES)
    assert dom.count('src="data:image/png;base64,') == len(FIGURES)
    for header in ("UA", "RA", "TA", "MIA-Efficacy", "Avg. Gap", "RTE (s)"):
        assert f'<th class="num">{header}</th>' in dom
    assert "<td>salun</td>" in dom and "<td>l1_sparse</td>" in dom
    # intervals under the values, n per column, * where the gap to retrain is beyond the noise
    assert dom.count('<span class="ci">[') >= 4 * 7 - 2
    assert '<tr class="points"><td>n (points)</td><td class="num" data-label="UA">180</td>' in dom
    assert '<span class="mark">*</span>' in dom


def test_new_plots_are_present_non_empty_and_labelled(report_html, tmp_path):
    from PIL import Image, ImageStat

    dom = _chromium(["--dump-dom", report_html.as_uri()], tmp_path).stdout
    figures = _figures(dom)
    assert set(figures) == set(FIGURES)
    for fid, words in FIGURES.items():
        png, text = figures[fid]
        img = Image.open(io.BytesIO(png)).convert("L")
        assert img.size[0] >= 400 and img.size[1] >= 250, fid
        assert ImageStat.Stat(img).stddev[0] > 15, fid  # drawn, not a blank canvas
        dark = sum(img.histogram()[:160]) / (img.size[0] * img.size[1])
        assert dark > 0.01, fid  # axes, bars and labels
        for word in words:
            assert word in text, (fid, word, text)
    # alt text names every plot (screen readers, broken images)
    for fid, words in FIGURES.items():
        assert re.search(rf'<figure id="fig-{fid}">\s*<img src="[^"]+" alt="{re.escape(words[0])}', dom), fid


def test_all_metrics_are_grouped_by_family_and_collapsed(report_html, tmp_path):
    dom = _chromium(["--dump-dom", report_html.as_uri()], tmp_path).stdout
    section = dom.split("<h2>All metrics</h2>", 1)[1]
    families = re.findall(r'<details class="family">\s*<summary>([^<]+?) \((\d+)\)</summary>', section)
    names = [f.strip() for f, _ in families]
    assert names[:2] == ["Accuracy", "MIA-Efficacy (SVC)"] and "Gaps to retrain" in names and "Counts (n)" in names
    assert "Robustness" in names and "Run time" in names
    # collapsed by default: no details element is open
    assert "<details open" not in section
    # every metric row sits in exactly one family
    rows = re.findall(r"<tr><td><code>([^<]+)</code></td>", section)
    assert len(rows) == len(set(rows)) == sum(int(n) for _, n in families)
    assert "gap/ua" in rows and "n/test_acc" in rows


# Appended to a copy of the report (the report itself has no script): measures, after layout,
# every summary-table cell and everything on the page against the window, and writes the verdict
# into the DOM that --dump-dom prints.
_MEASURE = """<script>
window.addEventListener("load", () => {
  const view = document.documentElement.clientWidth;
  const hidden = [];
  for (const el of document.querySelectorAll("table.summary td, table.summary th, h1, h2, h3, p, figure img")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // display: none (the header row when stacked)
    // Inside a scroll box, count what lies outside that box as unseen too.
    const box = el.closest(".scroll");
    const right = box ? Math.min(view, box.getBoundingClientRect().right) : view;
    if (r.left < -0.5 || r.right > right + 0.5) hidden.push((el.textContent || el.tagName).trim().slice(0, 40));
  }
  const scrollers = [...document.querySelectorAll(".scroll")].filter(b => b.offsetParent !== null
    && b.querySelector("table.summary") && b.scrollWidth > b.clientWidth + 1).length;
  const out = document.createElement("pre");
  out.id = "measure";
  out.textContent = JSON.stringify({view, page: document.documentElement.scrollWidth, hidden, scrollers});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.parametrize("width", [800, 1400])
def test_summary_table_fits_the_window_with_nothing_hidden(report_html, tmp_path, width):
    """At 800 px (stacked cards) and at 1400 px (the table), every summary cell (UA to RTE and
    Seeds) lies inside the window: no sideways scrolling hides Avg. Gap or RTE, no page overflow."""
    import json

    page = tmp_path / "measured.html"
    page.write_text(report_html.read_text().replace("</body>", _MEASURE + "</body>"))
    dom = _chromium([f"--window-size={width},1200", "--dump-dom", page.as_uri()], tmp_path).stdout
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    m = json.loads(html.unescape(found.group(1)))
    assert m["view"] <= width and m["view"] >= width - 20, m
    assert m["hidden"] == [], m
    assert m["page"] <= m["view"], m  # the page itself never scrolls sideways
    assert m["scrollers"] == 0, m  # no summary table needs its scroll bar
    # Every metric is still named next to its value in the stacked layout.
    assert dom.count('data-label="Avg. Gap"') >= 1 and dom.count('data-label="RTE (s)"') >= 1
