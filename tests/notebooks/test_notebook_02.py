"""Notebook 02 end to end: planted clusters recovered, nothing personal sent to Mavera, nbval run."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from conftest import END, PINNED_END
from notebook_checks import run_nbval
from sklearn.metrics import adjusted_rand_score

from cio_mavera.reports import NOTEBOOKS_DIR, run_job
from cio_mavera.sandbox.server import start_sandbox
from cio_mavera.sandbox.workspace import generate_workspace

pytestmark = pytest.mark.notebook

SEED, CUSTOMERS = 7, 5000


def test_papermill_run_recovers_the_planted_clusters(tmp_path):
    env = {"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(tmp_path / "data"),
           "CIO_MAVERA_SANDBOX_SEED": str(SEED), "CIO_MAVERA_SANDBOX_CUSTOMERS": str(CUSTOMERS),
           **PINNED_END}
    run = run_job("attribute-personas", {}, out_dir=tmp_path / "reports", environment=env)
    results = json.loads(run.results.read_text())
    truth = generate_workspace(SEED, CUSTOMERS, end=END).truth["clusters"]

    # The default (realistic) world: overlapping clusters, missing attribute groups, messy strings.
    # bench/truth_job2.py: k within 1 on every seed, mean ARI about 0.9; bounds here keep a margin.
    assert abs(results["k"] - truth["k"]) <= 1
    assert results["structure"] in ("clear", "moderate")
    selection = results["model_selection"]
    assert selection["method"] == "mixture" and selection["clarity"] == results["structure"]
    assert [row["k"] for row in selection["table"] if row["chosen"]] == [results["k"]]
    assert results["attributes_left_out"]  # near-duplicates and noise, each with its reason
    mapping = pd.read_parquet(results["assignments_path"])
    assert len(mapping) == CUSTOMERS and mapping["cio_id"].is_unique  # nobody dropped for gaps
    planted = mapping["cio_id"].map(truth["assignments"])
    assert adjusted_rand_score(planted, mapping["cluster"]) >= 0.8

    clusters = results["clusters"]
    assert [c["size"] for c in clusters] == mapping["cluster"].value_counts().sort_index().tolist()
    assert all(c["persona_id"] and c["persona_status"] == "created" for c in clusters)
    assert all(c["what_would_make_me_engage"] for c in clusters)
    assert results["credits_spent"] >= 300 * results["k"]
    assert results["parameters"]["write_back"] is False
    page = run.report.read_text()
    assert "SANDBOX DATA" in page and "max_credits = 2000" not in page  # parameters cell hidden


def _whole_words(values) -> re.Pattern:
    alternatives = "|".join(sorted({re.escape(str(v)) for v in values}, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b")


def test_nothing_personal_reaches_mavera_during_a_run(tmp_path):
    server = start_sandbox(seed=SEED, customers=2000, request_log_size=100_000, end=END)
    try:
        env = {**server.env(), "CIO_MAVERA_MODE": "live",
               "CIO_MAVERA_DATA_DIR": str(tmp_path / "data")}
        run_job("attribute-personas", {"write_back": True}, out_dir=tmp_path / "reports",
                environment=env)
        log = list(server.state.request_log)
        people = server.state.workspace.customers
    finally:
        server.stop()

    to_mavera = [r for r in log if r["path"].startswith("/mavera")]
    bodies = [json.dumps(r["json"]) for r in to_mavera if r["json"] is not None]
    # The run did talk to Mavera about these customers, so an empty scan cannot pass by accident.
    assert sum(r["method"] == "POST" and r["path"].endswith("/personas") for r in to_mavera) >= 2
    assert any(r["path"].endswith("/chat/completions") for r in to_mavera)
    names = _whole_words(set(people["first_name"]) | set(people["last_name"]))
    emails = set(people["email"].dropna())
    phones = {re.sub(r"\D", "", p) for p in people["phone"].dropna()}
    for body in bodies:
        assert not names.search(body), names.search(body).group()
        assert not [e for e in emails if e in body]
        numbers = {re.sub(r"\D", "", m) for m in re.findall(r"\+?\d[\d\s().-]{6,}\d", body)}
        assert not numbers & phones
    assert not [r for r in to_mavera if r["method"] == "GET" and "@" in r["path"]]


def test_notebook_executes_under_nbval(tmp_path):
    run_nbval(NOTEBOOKS_DIR / "02_attribute_personas.ipynb", tmp_path / "data")
