"""Notebook 03 end to end in sandbox mode: papermill runs receiver, replay, worker, triggers and Mave research
in the kernel; results.json holds the planted spike (campaign and audience) with its brief; the HTML is a
code-free self-contained report that opens with the banner, the summary (key numbers with intervals, what to
do next) and what changed, names the spike alike everywhere, highlights it in the tables and reads at
1280 px in chromium; a re-run within the cooldown spends nothing and says what changed since the first run;
nbval (lax) runs the template; in one kept kernel (as in JupyterLab) a changed window re-runs from its step;
a live run on a workspace whose campaign names and attribute values carry markup keeps them as text."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from conftest import END, PINNED_END
from jupyter_client.manager import start_new_kernel
from notebook_checks import (
    A4_PRINT_WIDTH_PX,
    HeadlessChromium,
    assert_code_free_offline_report,
    chromium_binary,
    kernel_execute,
    kernel_value,
    run_nbval,
)

from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.receiver.server import BackgroundReceiver
from cio_mavera.receiver.worker import drain_once
from cio_mavera.reports import NOTEBOOKS_DIR, PROJECT_ROOT, RunResult, notebook_parameters, run_job
from cio_mavera.sandbox.server import start_sandbox
from cio_mavera.sandbox.webhooks import generate_events, replay
from cio_mavera.sandbox.workspace import World, generate_workspace
from cio_mavera.sandbox.workspace.catalog import HOSTILE_CAMPAIGN

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

NOTEBOOK = NOTEBOOKS_DIR / "03_retention_research.ipynb"
DEFAULTS = {"events": 12000, "window_hours": 24, "step_hours": 12, "valuable_plans": ["pro", "business", "enterprise"],
            "alpha": 0.05, "cooldown_hours": 24, "max_credits": 600, "refresh": False}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nb03") / "data"


@pytest.fixture(scope="module")
def default_run(data_dir) -> RunResult:
    return run_job("retention-research", {}, out_dir=data_dir.parent,
                   environment={"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(data_dir),
                                **PINNED_END})


def test_template_has_no_outputs_one_parameters_cell_and_the_python3_kernel():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])] == [1]
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert notebook_parameters(NOTEBOOK) == DEFAULTS


def test_results_hold_the_planted_spike_with_its_audience_and_a_brief(default_run, data_dir):
    results = json.loads(default_run.results.read_text())
    truth = generate_workspace(seed=7, customers=5000, end=END).truth
    spike = truth["spike"]
    assert results["mode"] == "sandbox" and results["parameters"] == DEFAULTS
    hits = [t for t in results["triggers"] if t["kind"] == "campaign" and t["campaign_id"] == spike["campaign_id"]
            and pd.Timestamp(t["window_start"]).timestamp() < spike["end"]
            and spike["start"] < pd.Timestamp(t["window_end"]).timestamp()]
    assert len(hits) == 1 and len(results["triggers"]) - 1 <= 1
    trigger = hits[0]
    assert trigger["rate"] > trigger["baseline"] and trigger["p_adjusted"] <= 0.05
    assert trigger["cluster_name"] and trigger["audience"]["clusters"][0]["event_share"] >= 0.8
    assert trigger["brief"]["status"] == "asked" and trigger["brief"]["content"]
    assert trigger["brief"]["sources"] and trigger["brief"]["confidence"] is not None
    assert results["credits_spent"] > 0 and results["credits_spent"] <= 600 and results["skipped"] == []
    replay = results["pipeline"]["replay"]
    assert replay["sent"] == replay["acknowledged"] == 12000 and replay["failed"] == 0
    assert results["event_counts"]["unique_events"] == 12000 - replay["duplicates_acknowledged"]


def test_the_trigger_audience_is_the_planted_cluster(default_run):
    results = json.loads(default_run.results.read_text())
    truth = generate_workspace(seed=7, customers=5000, end=END).truth
    trigger = next(t for t in results["triggers"] if t["campaign_id"] == truth["spike"]["campaign_id"])
    clusters = pd.read_parquet(results["enrichment"]["clusters_path"])
    members = clusters.loc[clusters["cluster"] == trigger["cluster"], "cio_id"]
    labels = Counter(truth["clusters"]["assignments"][c] for c in members)
    assert labels.most_common(1)[0][0] == truth["spike"]["cluster"]
    # Realistic clusters share plans and a quarter of people have none on record ("unknown"), but the
    # planted cluster's own plans (free and starter) are most of the opt-outs with a plan.
    plans = {k: v for k, v in trigger["audience"]["plans"].items() if k != "unknown"}
    assert sum(v for k, v in plans.items() if k in ("free", "starter")) > 0.5 * sum(plans.values())


def test_report_html_is_code_free_and_self_contained(default_run):
    page = default_run.report.read_text()
    assert_code_free_offline_report(page, ("retention_", "find_triggers(", "max_credits = 600"),
                                    min_images=4)
    assert "Research briefs" in page


def _texts(page: str) -> tuple[BeautifulSoup, str]:
    """The page, and its text as read (the contents list left out)."""
    soup = BeautifulSoup(page, "html.parser")
    for toc in soup.select("nav.cio-toc"):
        toc.decompose()
    return soup, soup.get_text(" ")


def test_report_opens_with_banner_summary_and_what_changed_and_names_the_spike_alike(default_run, tmp_path):
    results = json.loads(default_run.results.read_text())
    spike = results["triggers"][0]
    soup, text = _texts(default_run.report.read_text())
    # Banner, then the summary with what to do next, then what changed, then the sections.
    order = [text.index(s) for s in ("SANDBOX DATA", "Summary", "What to do next",
                                     "What changed since the last run", "Research briefs from Mave",
                                     "Rates by campaign", "Glossary", "Parameters")]
    assert order == sorted(order)
    assert results["changes"] == {"previous_run_id": None, "first_run": True}
    assert "This is the first run of this job" in text
    keys = soup.select(".cio-summary .cio-key")
    assert 3 <= len(keys) <= 5 and all(k.select_one(".cio-key-uncertainty") for k in keys)
    values = [k.select_one(".cio-key-value").get_text() for k in keys]
    assert f"{spike['rate']:.1%} (" in " ".join(values)  # the spike's rate with its interval
    # One name for the spike's campaign and audience: summary, decisions, table, brief, rates table.
    campaign = f"{spike['campaign_name']} (#{spike['campaign_id']})"
    decisions = [li.get_text() for li in soup.select(".cio-decisions li")]
    assert decisions[0].startswith(f"Review {campaign} for {spike['cluster_name']}")
    assert "messages to" in decisions[0] and "80% power" in decisions[0]
    assert text.count(campaign) >= 5 and text.count(spike["cluster_name"]) >= 5
    flagged = [row.find("td").get_text() for row in soup.select("tr.cio-flagged")]
    assert campaign in flagged and spike["cluster_name"] in flagged
    assert len(soup.select("a[download]")) >= 5  # every table downloadable as CSV
    assert "twilio" not in text.lower() and "0.0e+00" not in text and "adjusted p = 0 " not in text
    assert "pro, business, enterprise" in text and "['pro'" not in text  # plain parameters
    if chromium_binary() is not None:
        _reads_at_1280_and_prints(default_run.report, tmp_path)


def _reads_at_1280_and_prints(report: Path, tmp_path: Path) -> None:
    """In chromium at 1280 px: nothing sticks out sideways, every chart decodes and fits the screen,
    nothing foreign (a script, an image that is not one of the report's charts); printed on A4: no
    table, chart or line wider than the page, and a PDF comes out."""
    images = len(BeautifulSoup(report.read_text(), "html.parser").find_all("img"))
    with HeadlessChromium(chromium_binary(), tmp_path / "chromium") as browser:
        browser.open(report.as_uri(), width=1280, height=900)
        layout = browser.layout()
        foreign = browser.evaluate(
            "document.querySelectorAll('script, img:not([src^=\"data:image/png\"])').length")
        browser.open(report.as_uri(), width=A4_PRINT_WIDTH_PX, height=1100, media="print")
        printed = browser.layout()
        pdf = browser.pdf(tmp_path / "retention-research.pdf").read_bytes()
    assert layout["scroll_width"] <= 1280 and layout["sticking_out"] == [], layout["sticking_out"]
    assert layout["images"] == images >= 4 and layout["undecoded"] == [] and foreign == 0
    assert all(c["right"] <= 1280 and c["height"] <= 900 for c in layout["charts"]), layout["charts"]
    assert printed["scroll_width"] <= A4_PRINT_WIDTH_PX and printed["sticking_out"] == []
    assert all(t["right"] <= t["container_right"] + 0.5 for t in printed["tables"]), printed["tables"]
    assert pdf[:5] == b"%PDF-"


def test_a_rerun_within_the_cooldown_asks_mave_nothing(default_run, data_dir):
    again = run_job("retention-research", {}, out_dir=data_dir.parent,
                    environment={"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(data_dir),
                                **PINNED_END})
    results = json.loads(again.results.read_text())
    assert results["credits_spent"] == 0
    assert Counter(b["status"] for b in results["briefs"]) == Counter({"cooldown": len(results["triggers"])})
    assert all(t["brief"]["content"] for t in results["triggers"])
    # What changed: the first run is the previous one, and the same spikes still fire.
    first = json.loads(default_run.results.read_text())
    changes = results["changes"]
    assert changes["first_run"] is False and changes["previous_run_id"] == default_run.run_id
    assert changes["fired"] == changes["cleared"] == []
    assert changes["still_firing"] == sorted(t["key"] for t in first["triggers"])
    assert changes["credits"] == {"before": first["credits_spent"], "now": 0}
    text = _texts(again.report.read_text())[1]
    assert "Compared with the previous run" in text and default_run.run_id in text


def test_nbval_lax_executes_the_template_in_sandbox_mode(tmp_path):
    run_nbval(NOTEBOOK, tmp_path / "data")


# ---- JupyterLab: one kernel, a changed parameter, re-run from its step ----------------------------


def test_jupyterlab_rerun_after_changing_the_window_needs_no_restart(tmp_path):
    code = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    env = {**os.environ, "CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(tmp_path / "data"),
           "MPLBACKEND": "Agg", **PINNED_END}
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(PROJECT_ROOT), env=env)
    try:
        for source in code:  # top to bottom, once
            kernel_execute(client, source)
        before = kernel_value(client, "{'client': id(run.mavera), 'keys': [t.key for t in found.triggers], "
                                "'spent': run.credits_spent()}")
        # Change one analysis parameter in the parameters cell, run it, re-run from its step down.
        kernel_execute(client, code[0].replace("window_hours = 24", "window_hours = 48"))
        start = next(i for i, c in enumerate(code) if c.startswith("# Find spikes"))
        rerun = [o for source in code[start:] for o in kernel_execute(client, source)]
        after = kernel_value(client, "{'client': id(run.mavera), 'keys': [t.key for t in found.triggers], "
                               "'tested': results['tests']['window_hours'], "
                               "'written': results['parameters']['window_hours'], "
                               "'statuses': {b.key: b.status for b in briefs}, 'spent': run.credits_spent()}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert before["keys"] and before["spent"] > 0
    assert after["client"] == before["client"]  # the same open Mavera client
    assert after["tested"] == after["written"] == 48  # the tests and results.json use the new window
    # The spike is found again with 48 h windows and its brief comes from the cooldown store; only a
    # spike new to these windows is asked about, on the same budget.
    assert set(before["keys"]) <= set(after["keys"])
    assert {after["statuses"][k] for k in before["keys"]} == {"cooldown"}
    new = set(after["keys"]) - set(before["keys"])
    assert (after["spent"] > before["spent"]) == any(after["statuses"][k] == "asked" for k in new)
    shown = "".join(o.get("data", {}).get("text/html", "") for o in rerun if o["type"] == "display_data")
    assert "cio-summary" in shown and "SANDBOX DATA" in shown and "window_hours" in shown


# ---- hostile names: Customer.io campaign names and attribute values in a live report ---------------


def test_hostile_campaign_names_and_attribute_values_stay_text_in_a_live_report(tmp_path):
    """A live run against a sandbox whose campaign names and attribute values carry markup: the
    event log is filled as `webhooks serve` + `webhooks work` would, then the report is rendered."""
    world = World().with_knobs({"campaigns.hostile_copy": True, "customers.hostile_values": True})
    server = start_sandbox(seed=7, customers=5000, end=END, world=world)
    data = tmp_path / "data"
    try:
        queue = SqliteQueue(tmp_path / "queue.sqlite3")
        try:
            with BackgroundReceiver(create_app(queue, "whsec-test")) as receiver:
                stream = generate_events(server.state.workspace, 12000, seed=7)
                summary = replay(receiver.url + WEBHOOK_PATH, stream, "whsec-test")
            assert summary["failed"] == 0
            drain_once(queue, data / "events")
        finally:
            queue.close()
        run = run_job("retention-research", {}, out_dir=tmp_path / "reports",
                      environment={**server.env(), "CIO_MAVERA_MODE": "live", "CIO_MAVERA_DATA_DIR": str(data)})
    finally:
        server.stop()
    results = json.loads(run.results.read_text())
    spike = results["triggers"][0]
    assert HOSTILE_CAMPAIGN in spike["campaign_name"]
    soup, text = _texts(run.report.read_text())
    assert "Live data" in text and "SANDBOX DATA" not in text
    assert soup.find_all("script") == [] and soup.find_all("iframe") == []
    assert {img["src"][:22] for img in soup.find_all("img")} == {"data:image/png;base64,"}
    assert not [t.name for t in soup.find_all(True) if any(a.lower().startswith("on") for a in t.attrs)]
    links = [a.get("href", "") for a in soup.find_all("a")]
    assert not [h for h in links if h.strip().lower().startswith(("javascript:", "vbscript:"))]
    made = {("b", "bold"), ("strong", "bold"), ("a", "link"), ("a", "pro"), ("a", "x")}
    assert not [t for t in soup.find_all(True) if (t.name, t.get_text(strip=True).lower()) in made]
    # ... and the names are still there to read, exactly as Customer.io holds them.
    assert text.count(HOSTILE_CAMPAIGN) >= 5
    # Hostile plan levels define clusters, so they are in the audiences' names (the spike's too).
    audiences = list(results["enrichment"]["clusters"]["profiles"].values())
    for piece in ("<script>", "**bold**", "$x^2$", "javascript:", "onerror"):
        assert piece in " ".join(audiences), piece
    assert spike["cluster_name"] in audiences and "<script>" in spike["cluster_name"]
    for name in audiences:
        assert name in text, name  # the audience table and chart sentence, as text
    assert text.count(spike["cluster_name"]) >= 5
    if chromium_binary() is not None:
        _reads_at_1280_and_prints(run.report, tmp_path)
