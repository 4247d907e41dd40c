"""Notebook 03 end to end in sandbox mode: papermill runs receiver, replay, worker, triggers and Mave research
in the kernel; results.json holds the planted spike (campaign and audience) with its brief; the HTML is a
code-free self-contained report; a re-run within the cooldown spends nothing; nbval (lax) runs the template."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import END, PINNED_END
from notebook_checks import assert_code_free_offline_report, run_nbval

from cio_mavera.reports import NOTEBOOKS_DIR, RunResult, notebook_parameters, run_job
from cio_mavera.sandbox.workspace import generate_workspace

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


def test_a_rerun_within_the_cooldown_asks_mave_nothing(default_run, data_dir):
    again = run_job("retention-research", {}, out_dir=data_dir.parent,
                    environment={"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(data_dir),
                                **PINNED_END})
    results = json.loads(again.results.read_text())
    assert results["credits_spent"] == 0
    assert Counter(b["status"] for b in results["briefs"]) == Counter({"cooldown": len(results["triggers"])})
    assert all(t["brief"]["content"] for t in results["triggers"])


def test_nbval_lax_executes_the_template_in_sandbox_mode(tmp_path):
    run_nbval(NOTEBOOK, tmp_path / "data")
