"""The runner: papermill execution, code-free self-contained HTML, results.json, index, failures."""

import json
import re

import nbformat
import pytest

from cio_mavera import reports
from cio_mavera.errors import ConfigError, InvalidParameter
from cio_mavera.headlines import headline
from cio_mavera.parameters import parse_cli_value
from cio_mavera.reports import Job, RunFailed, run_job


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
