"""Notebook 01 end to end: papermill runs against the in-kernel sandbox find the planted truth (exactly in
the clean world, the far-out plants and little else in the realistic one), the HTML is a code-free
self-contained report, fake keys never leak, and nbval (lax) executes the template."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import END, PINNED_END
from notebook_checks import assert_code_free_offline_report, run_nbval

from cio_mavera.reports import NOTEBOOKS_DIR, RunResult, notebook_parameters, run_job
from cio_mavera.sandbox.server import start_sandbox
from cio_mavera.sandbox.workspace import World, generate_workspace

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

NOTEBOOK = NOTEBOOKS_DIR / "01_campaign_messaging.ipynb"
DEFAULTS = {"days": 30, "start": None, "end": None, "channel": "all", "campaign_ids": [],
            "max_underperformers": 3, "variations_per_message": 3, "personas": [],
            "validation": "responses", "max_credits": 1500, "refresh": False}
# Metrics do not depend on the number of customers; a small sandbox starts faster.
SANDBOX = {"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_SANDBOX_CUSTOMERS": "500", **PINNED_END}
FAKE_KEYS = {"CIO_SITE_ID": "FAKE-site-Q7W9E2R4T6", "CIO_API_KEY": "FAKE-track-Z8X6C4V2B0N1",
             "CIO_APP_KEY": "FAKE-app-P0O9I8U7Y6T5", "MAVERA_API_KEY": "FAKE-mavera-XYZ123ABC456",
             "CIO_WEBHOOK_SECRET": "FAKE-webhook-L1K2J3H4G5"}


def planted(seed: int, world: World) -> set[tuple[int, str]]:
    """The (action, rate) pairs the sandbox planted for `seed` in `world`, co-findings included."""
    truth = generate_workspace(seed=seed, customers=500, end=END, world=world).truth
    return {(p["action_id"], p["metric"]) for p in truth["underperformers"] + truth["also_low"]}


def flagged(run: RunResult) -> set[tuple[int, str]]:
    results = json.loads(run.results.read_text())
    return {(f["action_id"], f["metric"]) for f in results["flagged_underperformers"]}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> RunResult:
    out = tmp_path_factory.mktemp("nb01-default")
    # The clean world, where the planted messages are the only true findings.
    return run_job("campaign-messaging", {}, out_dir=out,
                   environment={**SANDBOX, "CIO_MAVERA_SANDBOX_WORLD": "clean",
                                "CIO_MAVERA_DATA_DIR": str(out / "data")})


def test_template_has_no_outputs_one_parameters_cell_and_the_python3_kernel():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1]
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert notebook_parameters(NOTEBOOK) == DEFAULTS


def test_default_run_in_the_clean_world_flags_exactly_the_planted_underperformers(default_run):
    assert default_run.status == "succeeded"
    assert flagged(default_run) == planted(7, World.clean())
    results = json.loads(default_run.results.read_text())
    assert all(f["shrunk_low"] <= f["shrunk_rate"] <= f["shrunk_high"] and f["channel_spread_sd"] is not None
               for f in results["flagged_underperformers"])


def test_default_run_ranks_new_copy_scored_by_three_personas(default_run):
    results = json.loads(default_run.results.read_text())
    assert results["mode"] == "sandbox" and results["parameters"] == DEFAULTS
    assert len(results["messages_rewritten"]) == 3
    assert len(results["ranked_variations"]) == 3 * 3
    assert all(len(v["persona_scores"]) >= 3 for v in results["ranked_variations"])
    assert 0 < results["credits_spent"] <= 1500 and results["skipped"] == []
    assert results["strategy"]["content"] and all(results["data_freshness"].values())


def test_report_html_is_code_free_and_self_contained(default_run):
    assert_code_free_offline_report(default_run.report.read_text(),
                                    ("campaign_messaging.", "cm.", "max_credits = 1500"), min_images=2)


def test_another_seed_with_fake_keys_finds_its_truth_and_leaks_no_key(tmp_path):
    # Live mode against a sandbox that accepts the fake keys, so they are the ones on the wire (in
    # sandbox mode connect() would swap them for the sandbox's). No CIO_SITE_ID: the cache is then
    # named by a digest of the App key, the one place a key could become a path.
    server = start_sandbox(seed=11, customers=500, end=END)
    try:
        server.state.keys.update({"CIO_APP_KEY": FAKE_KEYS["CIO_APP_KEY"],
                                  "MAVERA_API_KEY": FAKE_KEYS["MAVERA_API_KEY"]})
        urls = {name: server.env()[name]
                for name in ("CIO_APP_URL", "CIO_TRACK_URL", "MAVERA_BASE_URL", "MAVERA_WORKSPACE_ID")}
        env = {**{k: v for k, v in FAKE_KEYS.items() if k != "CIO_SITE_ID"}, **urls,
               "CIO_MAVERA_MODE": "live", "CIO_MAVERA_DATA_DIR": str(tmp_path / "data")}
        # Live mode ends the window today; the sandbox's data ends at END: ask for its last 30 days.
        window = {"start": "2026-03-02", "end": "2026-04-01"}
        run = run_job("campaign-messaging", {"max_underperformers": 1, "variations_per_message": 2,
                                             **window}, out_dir=tmp_path / "out", environment=env)
        routes = server.state.stats.as_json()["requests"]
    finally:
        server.stop()
    results = json.loads(run.results.read_text())
    assert results["mode"] == "live"
    # The realistic world (the default): all of seed 11's plants are far enough out to be found
    # (bench/truth_job1.py: 89% of plants, 0.23 other messages per workspace over 80 seeds).
    messages = {a for a, _ in flagged(run)}
    plants = {a for a, _ in planted(11, World())}
    assert plants <= messages and len(messages - plants) <= 1
    # The fake keys were the ones used: the sandbox accepted nothing else, and answered both APIs.
    assert any(r.startswith("GET /cio/app/") for r in routes)
    assert any(r.startswith("POST /mavera/api/v1/") for r in routes)
    secrets = {name: key for name, key in FAKE_KEYS.items() if name != "CIO_SITE_ID"}
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {run.notebook, run.report, run.results} <= set(files)
    for path in files:
        text = str(path) + "\n" + path.read_bytes().decode("utf-8", "replace")
        leaked = [name for name, key in secrets.items() if key in text]
        assert leaked == [], f"{path} contains {leaked}"


def test_nbval_lax_executes_the_template_in_sandbox_mode(tmp_path):
    run_nbval(NOTEBOOK, tmp_path / "data", env=SANDBOX)
