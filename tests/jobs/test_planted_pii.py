"""A workspace with personal data planted where integrations leave it (issue 14 item 10): the three
jobs' Mavera payloads carry none of it, nothing they send is falsely blocked with the workspace's
people loaded, and a payload deliberately carrying any planted form is refused before it is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from conftest import END, settings_for

from cio_mavera.connect import Connection
from cio_mavera.jobs import audiences as ap
from cio_mavera.jobs import campaigns as cm
from cio_mavera.jobs.audiences.assignments import audience_clusters
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention.enrichment import pii_free
from cio_mavera.jobs.retention.research import research_prompt, research_triggers
from cio_mavera.jobs.retention.triggers import Trigger
from cio_mavera.known_people import KnownPeople
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.mavera.errors import PiiBlocked
from cio_mavera.pii import contains_pii
from cio_mavera.sandbox.server import SandboxServer, start_sandbox
from cio_mavera.sandbox.workspace.planted_pii import NOTE_FORMS

pytestmark = pytest.mark.slow
WINDOW_END = (END + pd.Timedelta(days=1)).date().isoformat()


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    """Seed 11 in the realistic world, which plants personal data in assistant_name and notes."""
    server = start_sandbox(seed=11, customers=2000, end=END)
    assert server.state.config.world.customers.planted_pii
    yield server
    server.stop()


@pytest.fixture(scope="module")
def conn(server, tmp_path_factory) -> Connection:
    data = tmp_path_factory.mktemp("planted-pii") / "data"
    return Connection(settings_for(server, data), "live", "planted-pii", sandbox_url=server.url)


@pytest.fixture(scope="module")
def customers(conn) -> pd.DataFrame:
    """Everyone, pulled into the connection's cache: from here on the guard knows these people."""
    return ap.load_audience(conn)


@pytest.fixture(scope="module")
def planted(customers) -> dict[str, list[str]]:
    prefixes = tuple(form.split("{")[0] for form in NOTE_FORMS)
    notes = customers["notes"].dropna().astype(str)
    return {"assistant names": sorted(customers["assistant_name"].dropna().unique()),
            "notes": sorted(n for n in notes.unique() if n.startswith(prefixes))}


@pytest.fixture(scope="module")
def known(customers) -> KnownPeople:
    return KnownPeople.from_frame(customers)


@pytest.fixture
def run(conn, server, request) -> Iterator[RunContext]:
    server.state.reset()
    client = MaveraClient(conn, run_id=request.node.name, job="test", budget=CreditBudget(20_000),
                          rpm=600)
    yield RunContext.around(client)
    client.close()


def _sent(server: SandboxServer) -> list[dict[str, Any]]:
    log = httpx.get(f"{server.url}/__sandbox__/requests").json()["requests"]
    return [r for r in log if r["path"].startswith("/mavera") and r.get("json") is not None]


def _assert_carries_none(payload: Any, planted: dict[str, list[str]], known: KnownPeople) -> None:
    text = json.dumps(payload)
    assert contains_pii(payload) == []
    assert known.find(payload) == []
    for kind, values in planted.items():
        assert [v for v in values if v in text] == [], kind


def test_the_workspace_plants_every_form_the_guard_once_missed(planted, customers) -> None:
    assert len(planted["assistant names"]) >= 6
    found = {form for form in NOTE_FORMS if any(n.startswith(form.split("{")[0]) for n in planted["notes"])}
    assert found == set(NOTE_FORMS)
    assert customers["assistant_name"].notna().mean() > 0.1


def test_job2_drops_the_planted_columns_and_its_payloads_carry_none_of_it(customers, planted, known) -> None:
    typed, schema, pii = ap.prepare(customers)
    assert "person names" in pii["assistant_name"] and "email" in pii["notes"]
    assert not {"assistant_name", "notes"} & set(typed.columns)
    result = ap.find_clusters(typed, schema, range(2, 7), seed=0, sample_size=2000)
    profiles = ap.profile_clusters(typed, result.labels)
    payloads = ap.persona_payloads(profiles, "b2b")
    _assert_carries_none(payloads, planted, known)


def test_job2_personas_reach_mavera_with_the_people_loaded_and_carry_none_of_it(
        run, server, customers, planted, known) -> None:
    typed, schema, _ = ap.prepare(customers)
    result = ap.find_clusters(typed, schema, range(2, 7), seed=0, sample_size=2000)
    payloads = ap.persona_payloads(ap.profile_clusters(typed, result.labels), "b2b")
    synced = ap.sync_personas(run, payloads)
    assert set(synced["status"]) == {"created"}
    ap.engagement_answers(run, synced)
    assert run.mavera.people.current().people == len(customers)  # the guard checked every call
    sent = _sent(server)
    assert len(sent) >= 2 * len(payloads)
    _assert_carries_none([r["json"] for r in sent], planted, known)


def test_job3_audiences_and_research_prompts_carry_none_of_it(run, server, customers, planted,
                                                            known, tmp_path) -> None:
    people = pii_free(customers.sample(1500, random_state=3).reset_index(drop=True))
    assert not {"assistant_name", "notes", "email", "first_name"} & set(people.columns)
    clusters, info = audience_clusters(people, now=END)
    assert info["k"] >= 2
    when = pd.Timestamp(END)
    triggers = []
    for cluster, group in clusters.groupby("cluster"):
        name = str(group["cluster_name"].iloc[0])
        plans = people[people["cio_id"].isin(group["cio_id"])]["plan"].value_counts().head(3)
        triggers.append(Trigger(
            kind="campaign", key=f"campaign:3:opt_out:{cluster}", metric="opt_out",
            window_start=when - pd.Timedelta(hours=48), window_end=when, count=41, exposure=1200,
            rate=41 / 1200, baseline=0.004, p_value=1e-9, p_adjusted=1e-7, campaign_id=3,
            cluster=int(cluster), cluster_name=name, series="cluster",
            audience={"plans": {str(k): int(v) for k, v in plans.items()},
                      "clusters": [{"cluster_name": name, "events": 41, "event_share": 0.8,
                                    "exposure_share": 0.3}]}))
    prompts = [research_prompt(t, campaign_name="Onboarding: welcome series") for t in triggers]
    _assert_carries_none(prompts, planted, known)
    briefs = research_triggers(run, triggers, directory=tmp_path / "research")
    assert {b.status for b in briefs} == {"asked"}
    _assert_carries_none([r["json"] for r in _sent(server)], planted, known)


def test_job1_steps_are_not_falsely_blocked_with_the_people_loaded(conn, run, server, customers) -> None:
    data = cm.load_campaign_data(conn, days=30, end=WINDOW_END)
    findings = cm.analyse(data, max_underperformers=2)
    summary = cm.findings_summary(findings)
    panel = cm.choose_personas(run.mavera.personas.list(max_age=cm.LISTING_MAX_AGE), summary)
    strategy = cm.ask_mave_for_strategy(run, summary)
    drafts = cm.draft_variations(run, findings, strategy, 2)
    scores = cm.score_variations(run, drafts, panel, "responses", poll_s=0.01)
    assert run.skipped == [] and len(scores) == len(drafts) * len(panel)
    assert run.mavera.people.current().people == len(customers)


def test_a_payload_carrying_any_planted_form_is_refused_before_it_is_sent(run, server, planted) -> None:
    samples = planted["assistant names"][:2] + [
        next(n for n in planted["notes"] if n.startswith(form.split("{")[0])) for form in NOTE_FORMS]
    before = len(_sent(server))
    for text in samples:
        with pytest.raises(PiiBlocked) as caught:
            run.mavera.chat.create(f"Describe the audience of this account: {text}")
        assert text not in str(caught.value)
        with pytest.raises(PiiBlocked):
            run.mavera.mave.chat(f"Why might this customer churn? Notes: {text}")
    assert len(_sent(server)) == before
    assert run.credits_spent() == 0
