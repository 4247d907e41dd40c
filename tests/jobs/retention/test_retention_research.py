"""Job 3 against a real sandbox over loopback: the receiver/replay/worker pipeline, enrichment in bulk,
one Mave call per trigger, none again within the cooldown, no PII in any Mave request, budget skips,
and the worker's research hook."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest
from conftest import END, settings_for

from cio_mavera.connect import Connection
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention import data, enrichment, pipeline
from cio_mavera.jobs.retention import triggers as rt
from cio_mavera.jobs.retention.research import CooldownStore, research_dir, research_triggers
from cio_mavera.jobs.retention.watch import ResearchLoop
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.pii import contains_pii
from cio_mavera.sandbox.server import SandboxServer, start_sandbox

pytestmark = pytest.mark.slow
EVENTS = pipeline.DEFAULT_EVENTS  # the notebook's default replay


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    server = start_sandbox(seed=7, customers=5000, end=END)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def conn(server, tmp_path_factory) -> Connection:
    data = tmp_path_factory.mktemp("job3-data")
    settings = settings_for(server, data, mode="sandbox", sandbox_seed=7, sandbox_customers=5000)
    return Connection(settings, "sandbox", "seed7-n5000", sandbox_url=server.url)


@pytest.fixture(scope="module")
def run(conn) -> pipeline.PipelineRun:
    return pipeline.run_sandbox_pipeline(conn, events=EVENTS)


@pytest.fixture(scope="module")
def enriched(conn, run) -> enrichment.Enriched:
    return enrichment.enrich_events(conn, data.load_event_log(conn))


@pytest.fixture(scope="module")
def found(enriched) -> rt.TriggerResult:
    return rt.find_triggers(enriched.events)


def _mave_requests(server: SandboxServer) -> list[dict]:
    log = httpx.get(f"{server.url}/__sandbox__/requests").json()["requests"]
    return [r for r in log if r["method"] == "POST" and r["path"].endswith("/mave/chat")]


def test_the_replay_goes_through_the_receiver_and_the_log_holds_each_event_once(run, conn):
    replay = run.replay
    assert replay["sent"] == replay["acknowledged"] == EVENTS and replay["failed"] == 0
    assert replay["duplicates_acknowledged"] > 0
    log = data.load_event_log(conn)
    assert len(log) == run.written == EVENTS - replay["duplicates_acknowledged"]
    assert log["event_id"].is_unique


def test_enrichment_fetches_missing_people_in_bulk_once_then_from_the_store(conn, enriched):
    people = enriched.stats["people"]
    assert enriched.stats["fetched"] == people and enriched.stats["requests"] == math.ceil(people / 100)
    # Realistic workspaces miss whole attribute groups: a quarter of people have no billing data.
    with_plan = enriched.events.drop_duplicates("cio_id")["plan"].notna().mean()
    assert 0.5 < with_plan < 1 and enriched.events["cluster"].notna().all()
    assert set(enriched.events["plan"].dropna()) <= {"free", "starter", "pro", "business", "enterprise"}
    assert not {"email", "first_name", "last_name", "phone", "payload"} & set(enriched.events.columns)
    again = enrichment.enrich_events(conn, data.load_event_log(conn))
    assert again.stats["fetched"] == 0 and again.stats["requests"] == 0 and again.stats["from_store"] == people


def test_the_spike_campaign_is_triggered(found, server):
    truth = httpx.get(f"{server.url}/__sandbox__/truth").json()["spike"]
    assert truth["campaign_id"] in {t.campaign_id for t in found.triggers}


def test_one_mave_call_per_trigger_then_none_within_the_cooldown_and_no_pii(conn, server, found, enriched):
    server.state.reset()
    directory = research_dir(conn) / "first"
    client = MaveraClient(conn, job="retention-research", budget=CreditBudget(600), use_cache=False)
    briefs = research_triggers(RunContext.around(client), found.triggers, directory=directory, cooldown_hours=24)
    client.close()
    assert len(found.triggers) >= 1 and [b.status for b in briefs] == ["asked"] * len(found.triggers)
    assert all(b.content and b.sources and b.confidence is not None for b in briefs)
    sent = _mave_requests(server)
    assert len(sent) == len(found.triggers)

    rerun = MaveraClient(conn, job="retention-research", budget=CreditBudget(600), use_cache=False)
    again = research_triggers(RunContext.around(rerun), found.triggers, directory=directory, cooldown_hours=24)
    rerun.close()
    assert len(_mave_requests(server)) == len(found.triggers)
    assert [b.status for b in again] == ["cooldown"] * len(found.triggers)
    assert [b.content for b in again] == [b.content for b in briefs]

    people = set(enriched.people["cio_id"])
    for request in sent:
        body = request["json"]
        assert body["message"] and contains_pii(body) == []
        assert not any(cio_id in str(body) for cio_id in people)


def test_a_budget_too_small_skips_every_trigger_and_sends_nothing(conn, server, found):
    server.state.reset()
    directory = research_dir(conn) / "poor"
    client = MaveraClient(conn, job="retention-research", budget=CreditBudget(10), use_cache=False)
    briefs = research_triggers(RunContext.around(client), found.triggers, directory=directory)
    client.close()
    assert [b.status for b in briefs] == ["skipped"] * len(found.triggers)
    assert _mave_requests(server) == []
    assert all(CooldownStore(directory).last(t.key) is None for t in found.triggers)


def test_the_worker_hook_researches_once_per_interval_and_not_again_after_a_restart(conn, server, run):
    server.state.reset()
    clock = [0.0]
    loop = ResearchLoop(conn, run.event_log, max_credits=600, interval_s=60, clock=lambda: clock[0])
    assert loop(0) is None  # nothing new: no evaluation
    briefs = loop(run.written)
    assert briefs and {b.status for b in briefs} <= {"asked", "cooldown"}
    asked = len(_mave_requests(server))
    clock[0] = 30.0
    assert loop(10) is None  # within the interval
    loop.close()
    restarted = ResearchLoop(conn, run.event_log, max_credits=600, interval_s=60, clock=lambda: clock[0])
    again = restarted(1)
    restarted.close()
    assert [b.status for b in again] == ["cooldown"] * len(again)
    assert len(_mave_requests(server)) == asked
