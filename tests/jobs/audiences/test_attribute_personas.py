"""Job 2 orchestration against the sandbox: PII-free payloads, idempotent personas, budget, write-back."""

from __future__ import annotations

import json
import re

import httpx
import pandas as pd
import pytest
from conftest import settings_for

from cio_mavera.connect import Connection
from cio_mavera.customerio.track import TrackClient
from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs import audiences as ap
from cio_mavera.jobs.audiences.clustering import NotEnoughData
from cio_mavera.jobs.audiences.profiles import profile_clusters
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.mavera.ledger import credits_spent
from cio_mavera.pii import contains_pii
from cio_mavera.settings import Settings


@pytest.fixture(scope="module")
def analysis(shared_server, tmp_path_factory):
    """One pull, typing and clustering of the shared sandbox (2,000 customers), reused by every test."""
    data_dir = tmp_path_factory.mktemp("job2") / "data"
    conn = Connection(settings_for(shared_server, data_dir), "live", "job2-test",
                      sandbox_url=shared_server.url)
    customers = ap.load_audience(conn)
    typed, schema, pii = ap.prepare(customers)
    result = ap.find_clusters(typed, schema, range(2, 7), seed=0, sample_size=2000)
    profiles = profile_clusters(typed, result.labels)
    return {"customers": customers, "typed": typed, "schema": schema, "pii": pii,
            "result": result, "profiles": profiles,
            "payloads": ap.persona_payloads(profiles, "b2b")}


@pytest.fixture
def make_client(sandbox, tmp_path):
    """Run contexts around MaveraClients on the freshly reset shared sandbox, one private data dir."""
    conn = Connection(settings_for(sandbox, tmp_path / "data"), "live", "job2-client",
                      sandbox_url=sandbox.url)
    made = []

    def make(max_credits: int | None = 5000, run_id: str | None = None) -> RunContext:
        budget = CreditBudget(max_credits) if max_credits is not None else None
        client = MaveraClient(conn, run_id=run_id, job=ap.JOB, budget=budget, rpm=600)
        made.append(client)
        return RunContext.around(client, job=ap.JOB)

    yield make
    for client in made:
        client.close()


def _persona_writes(sandbox) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in sandbox.state.request_log
            if r["path"].startswith("/mavera") and "/personas" in r["path"]
            and r["method"] in ("POST", "PATCH")]


def test_prepare_excludes_pii_and_the_job_s_own_written_back_attributes(analysis):
    customers = analysis["customers"].assign(cio_mavera_cluster="2", cio_mavera_persona="x")
    typed, schema, pii = ap.prepare(customers)
    assert {"email", "first_name", "last_name", "phone", "street_address"} <= set(pii)
    assert schema["cio_mavera_cluster"].keep is False
    assert not {"email", "phone", "cio_mavera_cluster", "cio_mavera_persona"} & set(typed.columns)
    assert typed.index.name == "cio_id" and len(typed) == len(customers)


def test_prepare_measures_ages_from_the_pull_so_reruns_give_identical_profiles(analysis):
    first, _, _ = ap.prepare(analysis["customers"])
    second, _, _ = ap.prepare(analysis["customers"])
    pd.testing.assert_frame_equal(first, second)


def test_persona_payloads_name_each_cluster_and_carry_no_personal_data(analysis):
    payloads, customers = analysis["payloads"], analysis["customers"]
    assert len(payloads) == analysis["result"].k
    names = [p["name"] for p in payloads]
    assert len(set(names)) == len(names)
    assert all(n.startswith(ap.PERSONA_PREFIX) and 2 <= len(n) <= 100 for n in names)
    assert {p["type"] for p in payloads} == {"B2B"}
    text = json.dumps(payloads)
    assert contains_pii(payloads) == []
    people = set(customers["first_name"]) | set(customers["last_name"])
    assert not [w for w in people if re.search(rf"\b{re.escape(w)}\b", text)]
    assert all(e not in text for e in customers["email"])


def test_b2c_audience_sets_the_persona_type_and_unknown_audience_is_refused(analysis):
    assert {p["type"] for p in ap.persona_payloads(analysis["profiles"], "b2c")} == {"B2C"}
    with pytest.raises(InvalidParameter, match="b2b"):
        ap.persona_payloads(analysis["profiles"], "enterprise")


def test_estimate_counts_300_per_missing_persona_and_nothing_once_they_exist(analysis, make_client):
    payloads = analysis["payloads"]
    client = make_client()
    assert ap.estimate_persona_cost(client, payloads) == 300 * len(payloads)
    ap.sync_personas(client, payloads)
    assert ap.estimate_persona_cost(client, payloads) == 0


def test_second_run_creates_nothing_and_spends_nothing(analysis, make_client, sandbox, tmp_path):
    payloads = analysis["payloads"]
    once = make_client(run_id="run-1")
    first = ap.sync_personas(once, payloads)
    once.close()  # flushes the ledger
    assert list(first["status"]) == ["created"] * len(payloads)
    charged = sandbox.state.stats.credits_charged
    writes = len(_persona_writes(sandbox))

    again = make_client(run_id="run-2")
    second = ap.sync_personas(again, payloads)
    again.close()
    assert list(second["status"]) == ["unchanged"] * len(payloads)
    assert list(second["persona_id"]) == list(first["persona_id"])
    assert len(_persona_writes(sandbox)) == writes
    assert sandbox.state.stats.credits_charged == charged
    assert credits_spent("run-2", data_dir=tmp_path / "data", mode="live") == 0
    assert credits_spent("run-1", data_dir=tmp_path / "data", mode="live") == 300 * len(payloads)


def test_changed_profile_updates_the_persona_instead_of_creating_another(analysis, make_client,
                                                                          sandbox):
    payloads = analysis["payloads"]
    created = ap.sync_personas(make_client(), payloads)
    # Fewer customers: same clusters, new sizes -> the same names with new descriptions.
    typed, labels = analysis["typed"], analysis["result"].labels
    keep = typed.index[: int(len(typed) * 0.8)]
    changed = ap.persona_payloads(profile_clusters(typed.loc[keep], labels.loc[keep]), "b2b")
    assert [p["name"] for p in changed] == [p["name"] for p in payloads]
    assert [p["description"] for p in changed] != [p["description"] for p in payloads]

    updated = ap.sync_personas(make_client(), changed)
    assert list(updated["status"]) == ["updated"] * len(payloads)
    assert list(updated["persona_id"]) == list(created["persona_id"])
    assert len(sandbox.state.mavera.custom_personas) == len(payloads)
    held = {p.name: p.description for p in sandbox.state.mavera.custom_personas.values()}
    assert held == {p["name"]: p["description"] for p in changed}


def test_budget_refuses_personas_it_cannot_afford_before_sending(analysis, make_client, sandbox):
    payloads = analysis["payloads"]
    client = make_client(max_credits=500)
    synced = ap.sync_personas(client, payloads)
    assert list(synced["status"]) == ["created"] + ["skipped"] * (len(payloads) - 1)
    assert synced["persona_id"].iloc[1:].isna().all()
    assert _persona_writes(sandbox) == [("POST", "/mavera/api/v1/personas")]
    assert client.budget.spent == 300
    assert len(client.budget.skipped) == len(payloads) - 1
    assert "max_credits=500" in synced["reason"].iloc[1]


def test_preview_sends_no_persona_writes_and_asks_nothing(analysis, make_client, sandbox):
    client = make_client()
    preview = ap.sync_personas(client, analysis["payloads"], create=False)
    answers = ap.engagement_answers(client, preview, ask=False)
    assert set(preview["status"]) == {"would create"}
    assert _persona_writes(sandbox) == []
    assert set(answers.values()) == {None}
    assert not [r for r in sandbox.state.request_log if r["path"].endswith("/chat/completions")]
    assert client.budget.spent == 0


def test_each_created_persona_answers_what_would_make_it_engage(analysis, make_client, sandbox):
    client = make_client()
    synced = ap.sync_personas(client, analysis["payloads"])
    answers = ap.engagement_answers(client, synced)
    assert all(answers[name] for name in synced["name"])
    chats = [r["json"] for r in sandbox.state.request_log if r["path"].endswith("/chat/completions")]
    assert sorted(c["persona_id"] for c in chats) == sorted(synced["persona_id"])
    assert all(c["messages"][0]["content"] == ap.ENGAGE_QUESTION for c in chats)


def test_cluster_assignments_parquet_maps_every_customer_to_a_cluster(analysis, tmp_path):
    names = ap.cluster_names(analysis["profiles"])
    personas = [p["name"] for p in analysis["payloads"]]
    path = ap.write_cluster_assignments(analysis["result"], tmp_path, names, personas)
    frame = pd.read_parquet(path)
    assert path == ap.cluster_assignments_path(tmp_path)
    assert list(frame.columns) == ["cio_id", "cluster", "number", "cluster_name", "persona"]
    assert set(frame["cio_id"]) == set(analysis["customers"]["cio_id"])
    assert (frame["number"] == frame["cluster"] + 1).all()
    assert frame.groupby("cluster")["persona"].nunique().eq(1).all()
    assert (frame["persona"] == ap.PERSONA_PREFIX + frame["cluster_name"]).all()


def test_a_cluster_has_one_name_in_job_2_s_file_its_persona_and_job_3(analysis, tmp_path):
    """The name job 3 reads (audience_clusters) is the one job 2's tables, charts and cards show,
    and its persona's name is that name with the audience scope in front."""
    names = ap.cluster_names(analysis["profiles"])
    personas = [p["name"] for p in analysis["payloads"]]
    path = ap.write_cluster_assignments(analysis["result"], tmp_path, names, personas)
    people = analysis["customers"].head(300)
    clusters, info = ap.audience_clusters(people, assignments_path=path)
    assert info["source"] == "job-2 assignments"
    assert set(clusters["cluster_name"]) <= set(names.values())
    assert (clusters["cluster_name"] == clusters["cluster"].map(names)).all()
    assert personas == [ap.persona_name(names[c]) for c in sorted(names)]
    # A file from before cluster_name: the persona's name less its scope.
    frame = pd.read_parquet(path).drop(columns="cluster_name")
    frame.to_parquet(path)
    older, _ = ap.audience_clusters(people, assignments_path=path)
    assert (older["cluster_name"] == clusters["cluster_name"]).all()


def test_a_run_on_everyone_becomes_the_workspace_s_latest_assignments_and_a_segment_s_does_not(
        analysis, tmp_path, monkeypatch):
    monkeypatch.setenv("CIO_MAVERA_RUN_DIR", str(tmp_path / "run"))
    conn = Connection(Settings(data_dir=tmp_path / "data"), "sandbox", "latest-test")
    names = ap.cluster_names(analysis["profiles"])
    personas = [p["name"] for p in analysis["payloads"]]
    ap.save_assignments(conn, analysis["result"], names, personas, segment_id=21)
    assert (tmp_path / "run" / "cluster_assignments.parquet").is_file()
    assert ap.saved_assignments(conn) is None
    ap.save_assignments(conn, analysis["result"], names, personas)
    latest = ap.saved_assignments(conn)
    assert latest is not None and set(latest["cluster_name"]) == set(names.values())
    assert ap.latest_assignments_path(conn).is_file()


# --- write-back ------------------------------------------------------------------------------


class _BreakPerson(httpx.BaseTransport):
    """Forwards to the sandbox, but blanks one person's identifier in the first `times` batches.

    The real sandbox then answers 207 for that item and applies the rest, as Customer.io does.
    """

    def __init__(self, cio_id: str, times: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.cio_id, self.times, self.batches = cio_id, times, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/v2/batch"):
            self.batches += 1
            if self.batches <= self.times:
                body = json.loads(request.read())
                for op in body["batch"]:
                    if op["identifiers"] == {"cio_id": self.cio_id}:
                        op["identifiers"] = {"cio_id": ""}
                headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
                request = httpx.Request(request.method, request.url, headers=headers,
                                        content=json.dumps(body).encode())
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def assignments(analysis):
    return analysis["result"].assignments().head(250)


def _names(analysis) -> dict[int, str]:
    return dict(enumerate(p["name"] for p in analysis["payloads"]))


def test_write_back_dry_run_counts_and_samples_without_sending(analysis, assignments, sandbox):
    report = ap.write_back(None, assignments, _names(analysis), dry_run=True)
    assert (report.dry_run, report.people, report.operations, report.requests) == (True, 250, 250, 1)
    op = report.sample[0]
    assert op["identifiers"] == {"cio_id": assignments["cio_id"].iloc[0]}
    assert op["attributes"][ap.CLUSTER_ATTRIBUTE] == int(assignments["cluster"].iloc[0]) + 1
    assert not [r for r in sandbox.state.request_log if r["path"].startswith("/cio")]
    assert sandbox.state.cio.identified == {}


def test_write_back_lands_attributes_and_retries_a_207_item_once(analysis, assignments, sandbox,
                                                                 sandbox_settings):
    names = _names(analysis)
    transport = _BreakPerson(assignments["cio_id"].iloc[3], times=1)
    with TrackClient(sandbox_settings, transport=transport) as track:
        report = ap.write_back(track, assignments, names, dry_run=False)
    assert (report.failed_first_attempt, report.retried, report.failures) == (1, 1, [])
    assert report.accepted == 250 and transport.batches == 2
    identified = sandbox.state.cio.identified
    for row in assignments.itertuples(index=False):
        assert identified[f"cio_{row.cio_id}"] == {ap.CLUSTER_ATTRIBUTE: row.cluster + 1,
                                                   ap.PERSONA_ATTRIBUTE: names[row.cluster]}


def test_write_back_reports_an_item_that_fails_its_retry_too(analysis, assignments, sandbox,
                                                             sandbox_settings):
    transport = _BreakPerson(assignments["cio_id"].iloc[3], times=2)
    with TrackClient(sandbox_settings, transport=transport) as track:
        report = ap.write_back(track, assignments, _names(analysis), dry_run=False)
    assert report.retried == 1 and report.accepted == 249
    assert transport.batches == 2  # retried once, not again
    assert [f["cio_id"] for f in report.failures] == [assignments["cio_id"].iloc[3]]
    assert report.failures[0]["field"] == "identifiers"
    assert f"cio_{assignments['cio_id'].iloc[3]}" not in sandbox.state.cio.identified


def test_written_back_attributes_show_up_in_the_next_pull_but_are_never_clustered(
        analysis, assignments, sandbox, sandbox_settings, tmp_path):
    with TrackClient(sandbox_settings) as track:
        ap.write_back(track, assignments, _names(analysis), dry_run=False)
    conn = Connection(sandbox_settings, "live", "job2-reread", sandbox_url=sandbox.url)
    customers = ap.load_audience(conn, refresh=True)
    assert ap.CLUSTER_ATTRIBUTE in customers.columns
    typed, schema, _ = ap.prepare(customers)
    assert not [c for c in typed.columns if c.startswith(ap.WRITE_BACK_PREFIX)]


def test_a_segment_s_personas_are_named_apart_from_the_whole_audience_s(analysis):
    everyone = ap.persona_payloads(analysis["profiles"], "b2b")
    segment = ap.persona_payloads(analysis["profiles"], "b2b", segment_id=21)
    assert all(p["name"].startswith("cio-mavera (segment 21): ") for p in segment)
    assert not {p["name"] for p in everyone} & {p["name"] for p in segment}


def test_an_empty_audience_is_refused_with_a_hint(analysis):
    with pytest.raises(NotEnoughData, match="segment_id"):
        ap.prepare(analysis["customers"].iloc[0:0])


def test_report_text_states_the_cost_before_creation_and_the_write_back_outcome(analysis,
                                                                                 make_client):
    from cio_mavera.jobs.audiences import narrative as nar

    k = len(analysis["payloads"])
    plan = ap.plan_personas(make_client(), analysis["payloads"])
    assert f"**{300 * k} credits** worst case, which fits" in nar.cost_markdown(plan, True, 2000)
    assert "does **not** fit" in nar.cost_markdown(plan, True, 300 * k - 1)
    report = ap.WriteBackReport(dry_run=False, people=10, operations=10, requests=2, sample=[],
                                accepted=9, failed_first_attempt=2, retried=2,
                                failures=[{"cio_id": "x", "reason": "invalid"}])
    text = nar.write_back_markdown(report)
    assert "**9 of 10 people**" in text and "2 item(s) failed" in text and "1 still failed" in text
    assert "Dry run, nothing sent" in nar.write_back_markdown(
        ap.write_back(None, analysis["result"].assignments().head(5), {0: "a"}, dry_run=True))
