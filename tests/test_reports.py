"""The runner: papermill execution, code-free self-contained HTML, results.json, index, failures;
and the report's parts: numbers, tables, banner, summary, glossary, contents, failure box, timeline."""

import base64
import html as html_module
import json
import re

import nbformat
import pandas as pd
import pytest
from notebook_checks import external_loads

from cio_mavera import reports
from cio_mavera.errors import ConfigError, InvalidParameter
from cio_mavera.headlines import headline
from cio_mavera.jobs import report_parts as rp
from cio_mavera.parameters import parse_cli_value
from cio_mavera.report_index import IndexedRun, index_page
from cio_mavera.reports import Job, RunFailed, build_index, render_html, run_job


def _notebook(path, body: str, params: str = "days = 30\nlabel = 'x'"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Fixture report\nA sentence for the reader."),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)


CHART_AND_RESULTS = """
import os
from IPython.display import Image, display
from matplotlib.figure import Figure
from cio_mavera.jobs.report_parts import figure_png
from cio_mavera.run_results import write_results
fig = Figure()
ax = fig.subplots()
ax.plot([1, 2, 3], [days, days * 2, days * 3])
ax.set_title("Fixture chart"); ax.set_xlabel("x"); ax.set_ylabel("y")
display(Image(figure_png(fig)))
print("APP KEY SEEN BY KERNEL:", bool(os.environ.get("CIO_APP_KEY")))
write_results({"answer": days * 2, "label": label}, parameters={"days": days, "label": label})
"""


@pytest.fixture
def fixture_jobs(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "ok.ipynb", CHART_AND_RESULTS)
    _notebook(notebooks / "boom.ipynb", "raise RuntimeError('planned failure in cell')")
    monkeypatch.setattr(reports, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(reports, "JOBS", {
        "ok": Job("ok", "ok.ipynb", (), "fixture"),
        "boom": Job("boom", "boom.ipynb", (), "fixture that fails"),
    })
    return tmp_path / "reports"


@pytest.mark.notebook
def test_run_writes_notebook_html_results_and_index(fixture_jobs, monkeypatch):
    monkeypatch.setenv("CIO_APP_KEY", "FAKEKEY-app-1234567890")
    run = run_job("ok", {"days": 7}, out_dir=fixture_jobs)
    results = json.loads(run.results.read_text())
    assert results["answer"] == 14
    assert results["parameters"]["days"] == 7
    assert results["job"] == "ok" and results["run_id"] == run.run_id
    html = run.report.read_text()
    assert "Fixture report" in html
    assert "<title>Fixture report</title>" in html
    # The chart is embedded, not linked (the lab CSS has a tiny PNG icon of its own, hence <img).
    assert re.search(r"<img [^>]*src=\"data:image/png;base64,", html)
    assert "<script src=" not in html  # nothing loaded from the network
    assert "write_results" not in html and "ax.set_title" not in html  # no code
    assert "injected-parameters" not in html and "days = 7" not in html
    for artefact in (run.report, run.notebook, run.results):
        assert "FAKEKEY-app-1234567890" not in artefact.read_text()
    index = (fixture_jobs / "index.html").read_text()
    assert run.run_id in index and "succeeded" in index


@pytest.mark.notebook
def test_failed_run_keeps_its_notebook_and_says_where_it_failed(fixture_jobs):
    with pytest.raises(RunFailed, match="RuntimeError: planned failure in cell") as info:
        run_job("boom", out_dir=fixture_jobs)
    run_dir = info.value.run_dir
    assert (run_dir / "notebook.ipynb").is_file()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "planned failure" in record["error"]
    assert "failed" in (fixture_jobs / "index.html").read_text()


def test_unknown_parameter_fails_before_anything_runs(fixture_jobs):
    with pytest.raises(InvalidParameter, match="no parameter.*colour.*takes: days, label"):
        run_job("ok", {"colour": "red"}, out_dir=fixture_jobs)
    assert not fixture_jobs.exists()


def test_secret_looking_parameter_is_refused(fixture_jobs):
    with pytest.raises(InvalidParameter, match="looks like a secret"):
        reports.check_parameters(reports.JOBS["ok"], {"api_key": "x"})


def test_configured_key_value_is_refused_as_a_parameter(fixture_jobs, monkeypatch):
    monkeypatch.setenv("MAVERA_API_KEY", "mvra_live_leakme123456")
    with pytest.raises(InvalidParameter, match="contains a configured key"):
        reports.check_parameters(reports.JOBS["ok"], {"label": "mvra_live_leakme123456"})


def test_unknown_job_lists_the_jobs():
    with pytest.raises(InvalidParameter, match="campaign-messaging"):
        reports.get_job("nope")


@pytest.mark.parametrize(("text", "value"), [
    ("30", 30), ("0.5", 0.5), ("true", True), ("False", False), ("[1, 2]", [1, 2]),
    ("email", "email"), ("none", None), ('"45"', "45"), ("(1, 2)", "(1, 2)"),
])
def test_cli_parameter_values_are_parsed_as_json_or_kept_as_text(text, value):
    assert parse_cli_value(text) == value


@pytest.mark.notebook
def test_each_step_is_reported_as_it_starts_and_ends(fixture_jobs):
    lines: list[str] = []
    run_job("ok", {"days": 3}, out_dir=fixture_jobs, progress=lines.append)
    assert lines == ["  [1/1] Setup ...", lines[1]]
    assert lines[1].startswith("  [1/1] Setup: ") and lines[1].endswith(" s")


def test_missing_live_keys_are_found_before_a_notebook_starts(tmp_path, monkeypatch):
    for name in ("CIO_SITE_ID", "CIO_API_KEY", "CIO_APP_KEY", "MAVERA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="CIO_APP_KEY"):
        run_job("campaign-messaging", {}, out_dir=tmp_path / "reports",
                environment={"CIO_MAVERA_MODE": "live"})
    assert not list((tmp_path / "reports").glob("*/*"))


@pytest.mark.parametrize(("job", "results", "line"), [
    ("campaign-messaging", {"flagged_underperformers": [{"action_id": 1}, {"action_id": 1},
                                                        {"action_id": 2}],
                            "messages_tested": 36, "ranked_variations": [{}] * 6, "credits_spent": 1280},
     "2 of 36 messages underperform their channel; 6 new variations ranked by personas; "
     "1,280 Mavera credits spent"),
    ("attribute-personas", {"clusters": [{"persona_status": "created"}, {"persona_status": "unchanged"}],
                            "credits_spent": 300},
     "2 audience clusters, 1 new Mavera persona(s); 300 Mavera credits spent"),
    ("retention-research", {"triggers": [{"kind": "campaign", "campaign_id": 45,
                                          "campaign_name": "Onboarding"}], "credits_spent": 75},
     "1 spike(s); strongest: campaign Onboarding (#45); 75 Mavera credits spent"),
    ("retention-research", {"triggers": []}, "no spike in unsubscribes, complaints or churn signals; "
                                             "0 Mavera credits spent"),
])
def test_the_run_ends_with_its_headline_finding_and_credits(job, results, line):
    assert headline(job, results) == line


# ---- report parts: numbers, tables, blocks -------------------------------------------------------

@pytest.mark.parametrize(("p", "label", "text"), [
    (0.0, "p", "p < 1e-300"), (1e-320, "adjusted p", "adjusted p < 1e-300"),
    (3.2e-5, "p", "p = 3.2e-5"), (0.0123, "p", "p = 0.012"), (0.5, "p", "p = 0.5"),
    (0.9991, "p", "p = 1"), (float("nan"), "p", "p = n/a"), (0.0, None, "< 1e-300"),
    (0.0451, None, "0.045"),
])
def test_p_values_read_as_numbers_never_as_zero(p, label, text):
    assert rp.format_p(p, label) == text


def test_percentages_carry_their_interval_and_counts_their_separators():
    assert rp.format_percent_interval(0.0761, 0.0692, 0.0843) == "7.6% (6.9–8.4%)"
    assert rp.format_percent_interval(0.0761, None, 0.0843) == "7.6%"
    assert rp.format_percent(0.144) == "14.4%" and rp.format_percent(None) == "–"
    assert rp.format_count(1617603) == "1,617,603" and rp.format_number(12345.678) == "12,345.68"


def _cells(page: str, tag: str = "td") -> list[tuple[str, str]]:
    """(class, text) of every `tag` cell in `page`."""
    return [(m.group(1) or "", html_module.unescape(re.sub("<[^>]+>", "", m.group(2))).strip())
            for m in re.finditer(rf"<{tag}(?: [^>]*?class=['\"]([^'\"]*)['\"])?[^>]*>(.*?)</{tag}>",
                                 page, re.S)]


def _csv(page: str) -> str:
    encoded = re.search(r"href=['\"]data:text/csv;charset=utf-8;base64,([^'\"]+)", page).group(1)
    return base64.b64decode(encoded).decode("utf-8-sig")


def test_table_aligns_text_left_numbers_right_and_separates_thousands_but_not_ids():
    frame = pd.DataFrame({"action_id": [7430, 12], "Message": ["<b>Welcome</b>", "Day 3"],
                          "Sent": [1617603, 950], "Rate (%)": [98.164, 3.2],
                          "95% CI": ["6.9–8.4", "1.0–2.0"]})
    page = rp.table(frame, flagged=[False, True], caption="Funnel", csv_name="funnel")
    assert "figure class='cio-table'" in page and "cio-table-scroll" in page
    assert _cells(page) == [("cio-num", "7430"), ("", "<b>Welcome</b>"), ("cio-num", "1,617,603"),
                            ("cio-num", "98.16"), ("cio-num", "6.9–8.4"),
                            ("cio-num", "12"), ("", "Day 3"), ("cio-num", "950"),
                            ("cio-num", "3.20"), ("cio-num", "1.0–2.0")]
    assert "<b>" not in page  # the message is text, not markup
    assert page.count("class='cio-flagged'") == 1 and "<tr class='cio-flagged'><td class='cio-num'>12<" in page
    assert "download='funnel.csv'" in page
    assert _csv(page).splitlines()[1] == "7430,<b>Welcome</b>,1617603,98.164,6.9–8.4"  # raw data


@pytest.mark.parametrize(("header", "names_a_thing"), [
    ("Campaign", True), ("Action", True), ("action_id", True), ("Campaign id", True),
    ("Message #", True), ("Year", True), ("Sent", False), ("Paid", False), ("Campaign sends", False),
])
def test_numbers_in_id_columns_get_no_thousands_separators(header, names_a_thing):
    assert rp.is_id_header(header) is names_a_thing
    page = rp.table(pd.DataFrame({header: [12345]}))
    assert ("12345" if names_a_thing else "12,345") in page


def test_table_of_a_styler_keeps_its_formats_escapes_labels_and_flags_by_index_label():
    frame = pd.DataFrame({"Message": ["<i>Hi</i>", "Bye"], "Sent": [21636, 5]}).set_index("Message")
    page = rp.table(frame.style.format(thousands=","), flagged=["Bye"])
    assert "&lt;i&gt;Hi&lt;/i&gt;" in page and "<i>Hi" not in page
    assert re.search(r"class=\"data row0 col0 cio-num\" >21,636<", page)
    assert re.search(r"class=\"data row1 col0 cio-num cio-flagged\" >5<", page)


def test_banner_summary_and_glossary_escape_every_text():
    hostile = "<script>alert(1)</script>"
    sandbox = rp.mode_banner("sandbox", {"Workspace": hostile})
    assert "SANDBOX DATA" in sandbox and "<script>" not in sandbox and "&lt;script&gt;" in sandbox
    assert "Live data" in rp.mode_banner("live", [hostile]) and "<script>" not in rp.mode_banner("live", [hostile])
    with pytest.raises(ValueError, match="sandbox.*live"):
        rp.mode_banner("demo")
    block = rp.summary_block([rp.KeyNumber("Worst click rate", "1.3%", "95% CI 1.1–1.5%", hostile)],
                             [f"Pause {hostile}"])
    assert "95% CI 1.1–1.5%" in block and "<script>" not in block and "What to do next" in block
    with pytest.raises(ValueError, match="1 to 5 key numbers"):
        rp.summary_block([rp.KeyNumber("x", "1")] * 6)
    warning = rp.notice(f"The window asks for 90 days; {hostile} has 30.")
    assert "cio-notice-warning" in warning and "Warning:" in warning and "<script>" not in warning
    with pytest.raises(ValueError, match="warning.*info"):
        rp.notice("x", kind="error")
    terms = rp.glossary("wilson interval", "ARI", "click-to-open", extra={hostile: "defined"})
    assert terms.count("<dt>") == 4 and "Click-to-open rate" in terms and "<script>" not in terms
    with pytest.raises(KeyError, match="Silhouette"):
        rp.glossary("p-hacking")


# ---- rendering: contents, tables, failure box, index --------------------------------------------

def _executed_notebook(path, cells) -> None:
    """An executed notebook built directly (no kernel): markdown strings and code cells' outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for number, cell in enumerate(cells, start=1):
        if isinstance(cell, str):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell))
        else:
            source, outputs = cell
            nb.cells.append(nbformat.v4.new_code_cell(source, execution_count=number, outputs=outputs))
    nbformat.write(nb, path)


def _html_output(markup: str):
    return nbformat.v4.new_output("display_data", data={"text/html": markup, "text/plain": "<table>"})


def test_rendered_report_has_contents_after_the_title_and_readable_tables(tmp_path):
    frame = pd.DataFrame({"Campaign id": [11, 16], "Message": ["Welcome", "Trial"],
                          "Sent": [21636, 1617603], "Rate (%)": ["98.16", "–"]})
    _executed_notebook(tmp_path / "nb.ipynb", [
        "# Fixture report\nWhat it answers.",
        "## Summary", ("x = 1", [_html_output(rp.summary_block([rp.KeyNumber("Sent", "1,617,603")]))]),
        "## Funnel", ("show(frame)", [_html_output(frame.to_html(index=False))]),
        "### Per channel", "## What to do next\n- rerun",
    ])
    page = render_html(tmp_path / "nb.ipynb", tmp_path / "report.html").read_text()
    title, contents, summary = (page.index("<h1"), page.index("class=\"cio-toc\""),
                                page.index("id=\"Summary\""))
    assert title < contents < summary
    toc = page[contents:page.index("</nav>", contents)]
    assert re.findall(r'href="#([^"]+)"', toc) == ["Summary", "Funnel", "Per-channel", "What-to-do-next"]
    # The plain DataFrame: wrapped with a CSV link, numbers right with separators, ids plain.
    assert _cells(page) == [("cio-num", "11"), ("", "Welcome"), ("cio-num", "21,636"), ("cio-num", "98.16"),
                            ("cio-num", "16"), ("", "Trial"), ("cio-num", "1,617,603"), ("cio-num", "–")]
    assert _csv(page).splitlines() == ["Campaign id,Message,Sent,Rate (%)", "11,Welcome,21636,98.16",
                                       "16,Trial,1617603,–"]
    assert external_loads(page) == []
    assert "<script" not in page and "jp-DirListing" not in page  # no JupyterLab CSS or scripts


def test_a_failed_cell_becomes_a_plain_box_without_the_traceback(tmp_path):
    error = nbformat.v4.new_output("error", ename="KeyError", evalue="'human_click_rate'\nmore",
                                   traceback=["\x1b[0;31mTraceback (most recent call last)\x1b[0m",
                                              "  File secret_internal.py line 3"])
    _executed_notebook(tmp_path / "nb.ipynb", [
        "# Fixture report", "## Data", ("load()", [_html_output("<p>loaded 5 rows</p>")]),
        "## Underperforming messages", ("# Test every message\nfind()", [error]),
        "## Trend", ("trend()", []),
    ])
    page = render_html(tmp_path / "nb.ipynb", tmp_path / "report.html").read_text()
    assert "This run did not finish" in page
    assert "the step “Test every message (cell 5)” stopped with <code>KeyError: 'human_click_rate'</code>" in page
    assert "Traceback" not in page and "secret_internal" not in page and "\x1b" not in page
    assert "loaded 5 rows" in page  # what ran before is kept
    assert "Trend" not in page  # what never ran is not shown as if it had
    assert "<title>FAILED: Fixture report</title>" in page
    assert "Traceback" in (tmp_path / "nb.ipynb").read_text()  # the notebook keeps it


@pytest.mark.notebook
def test_failed_run_report_says_what_failed_and_how_to_rerun(fixture_jobs):
    with pytest.raises(RunFailed) as info:
        run_job("boom", {"days": 9, "label": "a b"}, out_dir=fixture_jobs)
    page = (info.value.run_dir / "report.html").read_text()
    assert "RuntimeError: planned failure in cell" in page and "Traceback" not in page
    assert f"<code>cio-mavera run boom -p days 9 -p label 'a b' --out {fixture_jobs}</code>" in page
    assert str(info.value.run_dir / "notebook.ipynb") in page


def test_rerun_command_quotes_values_the_cli_reads_back():
    command = reports.rerun_command("campaign-messaging", {"channel": "email", "days": 30, "label": "30",
                                                           "campaign_ids": [1, 2], "x": "it's"})
    assert command == ("cio-mavera run campaign-messaging -p channel email -p days 30 -p label '\"30\"' "
                       "-p campaign_ids '[1, 2]' -p x 'it'\"'\"'s'")


def test_index_is_a_timeline_per_job_newest_first_with_headlines_and_everything_escaped(tmp_path):
    def run(job, run_id, status, started, **extra):
        run_dir = tmp_path / job / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({
            "job": job, "run_id": run_id, "status": status, "started_at": started,
            "parameters": extra.pop("parameters", {}), "error": extra.pop("error", None)}))
        (run_dir / "report.html").write_text("<html></html>")
        if extra:
            (run_dir / "results.json").write_text(json.dumps(extra))

    run("campaign-messaging", "20260101T000000Z-aaaa", "succeeded", "2026-01-01T00:00:00+00:00",
        flagged_underperformers=[{"action_id": 1}], messages_tested=30, credits_spent=10,
        mode="sandbox", workspace="seed7", parameters={"channel": "<script>x</script>"},
        changes={"first_run": True})
    run("campaign-messaging", "20260102T000000Z-bbbb", "failed", "2026-01-02T00:00:00+00:00",
        error="cell 3 raised KeyError: '<img src=x>'")
    run("attribute-personas", "20260103T000000Z-cccc", "succeeded", "2026-01-03T00:00:00+00:00",
        clusters=[{"persona_status": "created"}], credits_spent=5,
        changes={"previous_run_id": "20260101T000000Z-zzzz", "first_run": False,
                 "k": {"before": 4, "now": 5}, "new_clusters": ["x"], "gone_clusters": [],
                 "credits": {"before": 1000, "now": 5}})
    page = build_index(tmp_path).read_text()
    assert page.index("id='job-campaign-messaging'") < page.index("id='job-attribute-personas'")
    assert page.index("20260102T000000Z-bbbb") < page.index("20260101T000000Z-aaaa")  # newest first
    assert "1 of 30 messages underperform their channel; 10 Mavera credits spent" in page
    assert "first run with these parameters" in page
    assert "clusters 4 → 5 (1 new, 0 gone); credits 1,000 → 5" in page
    assert "<script>x" not in page and "<img src=x>" not in page and "&lt;img src=x&gt;" in page
    assert "href='campaign-messaging/20260101T000000Z-aaaa/report.html'" in page
    assert "sandbox · seed7" in page and "failed" in page
    assert external_loads(page) == []


def test_index_page_without_runs_says_how_to_make_one():
    assert "cio-mavera run JOB" in index_page([])
    assert "job-a" in index_page([IndexedRun("a", "r1", "running")])
