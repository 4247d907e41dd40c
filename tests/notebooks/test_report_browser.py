"""Reports as a reader sees them: Debian's chromium (headless) opens rendered reports at 1280 px
and as printed on A4, and checks that nothing sticks out, every column prints and every chart
decodes. Skipped, with the reason, where chromium is not installed (`make services` installs it)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import PINNED_END
from matplotlib.figure import Figure
from notebook_checks import (
    A4_PRINT_WIDTH_PX,
    HeadlessChromium,
    chromium_binary,
    png_size,
)

from cio_mavera.jobs import report_parts as rp
from cio_mavera.reports import build_index, render_html, run_job

pytestmark = pytest.mark.skipif(
    chromium_binary() is None,
    reason="Debian's chromium is not installed, so reports are not checked in a real browser "
           "(as root: make services, or apt-get install chromium)")

SCREEN = {"width": 1280, "height": 900}


def _keep(screenshot: Path) -> None:
    """Copy a screenshot to $CIO_MAVERA_SCREENSHOTS when set (to look at them after a run)."""
    if os.environ.get("CIO_MAVERA_SCREENSHOTS"):
        target = Path(os.environ["CIO_MAVERA_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)


def _chart(width_in: float, height_in: float, title: str) -> str:
    figure = Figure(figsize=(width_in, height_in))
    axes = figure.subplots()
    axes.plot(range(10), [v * v for v in range(10)])
    axes.set_title(title)
    axes.set_xlabel("day")
    axes.set_ylabel("sends")
    return base64.b64encode(rp.figure_png(figure)).decode()  # as a notebook stores a PNG


def _output(mime: str, data: object):
    return nbformat.v4.new_output("display_data", data={mime: data, "text/plain": "x"})


def _wide_frame() -> pd.DataFrame:
    columns = {"Campaign": [11, 16, 17], "Action": [732, 743, 751],
               "Message": ["Welcome email for every new workspace owner", "Trial ends in 3 days",
                           "We miss you"], "Sent": [21636, 1617603, 9]}
    for name in ("Delivery rate (%)", "Human open rate (%)", "Human click rate (%)",
                 "Click-to-open rate (%)", "Conversion rate (%)", "Unsubscribe rate (%)",
                 "Bounce rate (%)", "Spam complaint rate (%)", "Shrunken rate (%)", "Adjusted p"):
        columns[name] = [98.16, 3.2, 0.05]
    return pd.DataFrame(columns)


def _fixture_notebook(path: Path, failed: bool = False) -> Path:
    """An executed notebook (built directly, no kernel) with what reports hold at their widest."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    frame = _wide_frame()
    cells: list = [
        "# Fixture report: every wide thing a report can hold\nWhat it answers.",
        ("banner", [_output("text/html", rp.mode_banner("sandbox", {"Workspace": "seed7-n5000"}))]),
        "## Summary",
        ("summary", [_output("text/html", rp.summary_block(
            [rp.KeyNumber("Worst click rate", "1.3%", "95% CI 1.1–1.5%", "typical SMS 6.6%"),
             rp.KeyNumber("Messages flagged", "1 of 33", "false discovery rate 5%"),
             rp.KeyNumber("Best new copy", "7.0/10", "3 personas", "+1.3 vs current")],
            ["A/B test variation B against the current copy: 2 × 14,200 sends."]))]),
        ("notice", [_output("text/html", rp.notice("The window asks for 90 days of history; the "
                                                   "workspace has 30."))]),
        "## Funnel by message\nA link with no spaces: "
        "https://example.com/" + "a-very-long-path-segment" * 12,
        ("plain frame", [_output("text/html", frame.to_html(index=False))]),
        ("helper table", [_output("text/html", rp.table(frame, flagged=[False, True, False],
                                                         caption="Funnel", csv_name="funnel"))]),
        ("log line", [nbformat.v4.new_output("stream", name="stdout",
                                             text="x" * 400 + "\n")]),
        "## Charts",
        ("wide chart", [_output("image/png", _chart(16, 4, "A chart wider than the page"))]),
        ("tall chart", [_output("image/png", _chart(6, 14, "A chart taller than a screen"))]),
        "## Glossary",
        ("glossary", [_output("text/html", rp.glossary("Wilson interval", "adjusted p", "ARI"))]),
        "## What to do next\n1. Pause the message.",
    ]
    if failed:
        error = nbformat.v4.new_output("error", ename="ApiError", evalue="Customer.io said 503",
                                       traceback=["Traceback (most recent call last)", "..."])
        cells.insert(6, ("# Pull campaign metrics\nfail()", [error]))
    for number, cell in enumerate(cells, start=1):
        if isinstance(cell, str):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell))
        else:
            source, outputs = cell
            nb.cells.append(nbformat.v4.new_code_cell(source, execution_count=number, outputs=outputs))
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with HeadlessChromium(chromium_binary(), tmp_path_factory.mktemp("chromium-profile")) as page:
        yield page


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser-report")
    return render_html(_fixture_notebook(out / "notebook.ipynb"), out / "report.html")


def assert_reads_at_1280(browser: HeadlessChromium, report: Path, min_images: int) -> dict:
    """Open `report` at 1280 px: no horizontal overflow, every image decoded and within the
    column and a laptop screen's height, nothing fetched but the file itself."""
    browser.requests.clear()
    browser.open(report.as_uri(), **SCREEN)
    layout = browser.layout()
    assert layout["scroll_width"] <= SCREEN["width"], layout["sticking_out"]
    assert layout["sticking_out"] == []
    assert layout["images"] >= min_images and layout["undecoded"] == []
    for chart in layout["charts"]:
        assert chart["right"] <= SCREEN["width"] and chart["height"] <= SCREEN["height"], chart
    assert [url for url in browser.requests if not url.startswith("data:")] == [report.as_uri()]
    return layout


def assert_prints_every_column(browser: HeadlessChromium, report: Path, pdf: Path) -> None:
    """As printed on A4: no table, chart or line wider than the page, and a PDF comes out."""
    browser.open(report.as_uri(), width=A4_PRINT_WIDTH_PX, height=1100, media="print")
    layout = browser.layout()
    assert layout["scroll_width"] <= A4_PRINT_WIDTH_PX, layout["sticking_out"]
    assert layout["sticking_out"] == []
    assert all(t["right"] <= t["container_right"] + 0.5 for t in layout["tables"]), layout["tables"]
    assert browser.pdf(pdf).read_bytes()[:5] == b"%PDF-"


def test_fixture_report_reads_at_1280_px(browser, fixture_report, tmp_path):
    layout = assert_reads_at_1280(browser, fixture_report, min_images=2)
    assert layout["height"] > SCREEN["height"]  # the page scrolls down, never sideways
    shot = browser.screenshot(tmp_path / "fixture-1280.png")
    assert png_size(shot) == (1280, 900)
    _keep(shot)


def test_fixture_report_prints_every_column_on_a4(browser, fixture_report, tmp_path):
    assert_prints_every_column(browser, fixture_report, tmp_path / "fixture.pdf")
    _keep(browser.screenshot(tmp_path / "fixture-print.png", full_page=True))


def test_contents_links_reach_their_sections(browser, fixture_report):
    browser.open(fixture_report.as_uri(), **SCREEN)
    missing = browser.evaluate("""Array.from(document.querySelectorAll('nav.cio-toc a'))
        .map(a => decodeURIComponent(a.getAttribute('href').slice(1)))
        .filter(id => !document.getElementById(id))""")
    assert missing == []
    assert browser.evaluate("document.querySelectorAll('nav.cio-toc a').length") == 5


def test_failed_report_shows_what_failed_on_the_first_screen(browser, tmp_path):
    report = render_html(_fixture_notebook(tmp_path / "notebook.ipynb", failed=True),
                         tmp_path / "report.html")
    assert_reads_at_1280(browser, report, min_images=0)
    box = browser.evaluate("""(() => { const b = document.querySelector('.cio-failed');
        return b && {top: b.getBoundingClientRect().top, text: b.innerText}; })()""")
    assert box and box["top"] < SCREEN["height"] / 2
    assert "Pull campaign metrics" in box["text"] and "ApiError: Customer.io said 503" in box["text"]
    assert "Traceback" not in browser.evaluate("document.body.innerText")
    _keep(browser.screenshot(tmp_path / "failed-1280.png"))


def test_index_timeline_reads_at_1280_px(browser, tmp_path):
    for n in range(3):
        run_dir = tmp_path / "campaign-messaging" / f"2026010{n + 1}T000000Z-000{n}"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({
            "job": "campaign-messaging", "run_id": run_dir.name, "status": "failed" if n else "succeeded",
            "started_at": f"2026-01-0{n + 1}T00:00:00+00:00",
            "parameters": {"campaign_ids": list(range(1000, 1060)), "channel": "x" * 300},
            "error": "cell 4 raised ApiError: " + "y" * 400 if n else None}))
        (run_dir / "report.html").write_text("<!DOCTYPE html><title>r</title>")
    index = build_index(tmp_path)
    assert_reads_at_1280(browser, index, min_images=0)
    _keep(browser.screenshot(tmp_path / "index-1280.png"))


@pytest.mark.notebook
@pytest.mark.slow
def test_campaign_report_from_the_sandbox_reads_at_1280_px_and_prints(browser, tmp_path):
    run = run_job("campaign-messaging", {}, out_dir=tmp_path,
                  environment={"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_SANDBOX_CUSTOMERS": "500",
                               **PINNED_END, "CIO_MAVERA_DATA_DIR": str(tmp_path / "data")})
    assert_reads_at_1280(browser, run.report, min_images=2)
    _keep(browser.screenshot(tmp_path / "campaign-messaging-1280.png"))
    assert_prints_every_column(browser, run.report, tmp_path / "campaign-messaging.pdf")
