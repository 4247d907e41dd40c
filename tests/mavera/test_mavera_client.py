"""MaveraClient against the sandbox over loopback, plus MockTransport cases a server cannot produce."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import settings_for

from cio_mavera import http as http_module
from cio_mavera.connect import Connection
from cio_mavera.errors import (
    ApiError,
    AuthError,
    BudgetExceeded,
    ConfigError,
    CreditsExhausted,
    InvalidParameter,
    NotFound,
    ServerError,
)
from cio_mavera.mavera import core as core_module
from cio_mavera.mavera import ratelimit as ratelimit_module
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.mavera.errors import (
    DuplicateName,
    FocusGroupTimeout,
    Forbidden,
    InvalidRequest,
    PiiBlocked,
    StructuredOutputError,
)
from cio_mavera.mavera.ledger import read_ledger
from cio_mavera.mavera.ratelimit import HeaderGate
from cio_mavera.mavera.response_cache import ResponseCache, request_key
from cio_mavera.sandbox.server import SandboxServer
from cio_mavera.settings import Secret, Settings

SCORE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                   "reason": {"type": "string"}},
    "required": ["score", "reason"],
}


def stats(server: SandboxServer) -> dict[str, Any]:
    return httpx.get(f"{server.url}/__sandbox__/stats").json()


def fault(server: SandboxServer, path: str, status: int, count: int, retry_after: int | None = None) -> None:
    spec = {"prefix": f"/mavera/api/v1{path}", "status": status, "count": count,
            "retry_after": retry_after}
    httpx.post(f"{server.url}/__sandbox__/faults", json=spec).raise_for_status()


@pytest.fixture
def make_client(connection: Connection) -> Callable[..., MaveraClient]:
    made: list[MaveraClient] = []

    def make(**kwargs: Any) -> MaveraClient:
        kwargs.setdefault("run_id", "run-test")
        kwargs.setdefault("job", "test")
        client = MaveraClient(kwargs.pop("connection", connection), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def personas(make_client: Callable[..., MaveraClient]) -> list[dict[str, Any]]:
    return make_client(run_id="setup").personas.list()


# -- each endpoint against the sandbox --------------------------------------------------------


def test_list_personas_follows_cursor_pages(make_client, sandbox, monkeypatch) -> None:
    client = make_client()
    everyone = client.personas.list()
    monkeypatch.setattr(core_module, "PAGE_LIMIT", 5)
    paged = client.personas.list()
    assert [p["id"] for p in paged] == [p["id"] for p in everyone]
    assert len(everyone) >= 10
    listing = stats(sandbox)["requests"]["GET /mavera/api/v1/personas"]
    assert listing == 1 + -(-len(everyone) // 5)


def test_chat_as_a_persona_records_its_credits(make_client, personas, sandbox) -> None:
    client = make_client()
    result = client.chat.create("Rate this subject line: Spring sale, 20% off", persona_id=personas[0]["id"])
    assert "[sandbox]" in result.content
    assert result.credits == result.usage["credits_used"] >= 1
    assert client.credits_spent() == result.credits == stats(sandbox)["credits_charged"]
    last = httpx.get(f"{sandbox.url}/__sandbox__/requests").json()["requests"][-1]
    assert last["json"]["persona_id"] == personas[0]["id"] and last["json"]["model"] == "mavera-1"


def test_chat_stream_yields_chunks_that_join_to_the_reply(make_client, personas) -> None:
    client = make_client(use_cache=False)
    prompt = "What would make you open this email?"
    chunks = list(client.chat.stream(prompt, persona_id=personas[1]["id"]))
    whole = client.chat.create(prompt, persona_id=personas[1]["id"])
    assert len(chunks) > 1
    assert "".join(chunks) == whole.content
    assert client.chat.create(prompt, persona_id=personas[1]["id"], stream=True).content == whole.content


def test_a_stream_abandoned_half_way_books_the_worst_case(make_client, personas) -> None:
    client = make_client(use_cache=False)
    stream = client.chat.stream("Tell me more about onboarding", persona_id=personas[0]["id"])
    assert next(stream)
    stream.close()  # the caller stops reading; the server has already charged
    assert client.credits_spent() == 5  # DEFAULT_WORST_CASE["chat"], never zero


def test_respond_with_a_schema_returns_the_parsed_object(make_client, personas) -> None:
    result = make_client().responses.create("Score this headline: Last chance to save",
                                            persona_id=personas[0]["id"], schema=SCORE_SCHEMA,
                                            schema_name="score")
    assert set(result.parsed) >= {"score", "reason"}
    assert 1 <= result.parsed["score"] <= 10
    assert json.loads(result.text) == result.parsed


def test_mave_continues_its_thread(make_client) -> None:
    client = make_client()
    first = client.mave.chat("Why do discount emails underperform with loyal customers?")
    follow = client.mave.chat("What should we test next?", thread_id=first.thread_id)
    assert follow.thread_id == first.thread_id
    assert first.sources and first.personas_used and first.validation["confidence_score"] > 0
    thread = client.mave.thread(first.thread_id)
    assert len(thread["messages"]) == 4
    assert [t["id"] for t in client.mave.threads()] == [first.thread_id]


def test_generate_returns_the_one_documented_output(make_client, sandbox) -> None:
    client = make_client()
    apps = {a["id"] for a in client.generations.apps()}
    assert "email-subject-lines" in apps
    result = client.generations.create("email-subject-lines", {"topic": "spring sale"})
    assert result.content.strip() and result.content_type == "markdown"
    assert result.content == result.raw["output"]
    assert 10 <= result.credits <= 30 and result.credits == client.credits_spent()
    sent = httpx.get(f"{sandbox.url}/__sandbox__/requests").json()["requests"][-1]["json"]
    assert set(sent) == {"app_id", "input_data"}  # no variation count: the request has none


def test_focus_group_polls_until_completed_and_scores_every_persona(make_client, personas, sandbox) -> None:
    client = make_client()
    ids = [personas[0]["id"], personas[1]["id"]]
    result = client.focus_groups.run(ids, ["How likely are you to open this?"],
                                     stimuli=["Spring sale: 20% off", "Your cart misses you"],
                                     poll_s=0)
    assert result.status == "completed"
    assert len(result.responses) == 2 * 2
    assert {r["persona_id"] for r in result.responses} == set(ids)
    assert all(r["reasoning"] for r in result.responses)
    assert sorted(s["rank"] for s in result.stimuli) == [1, 2]
    assert result.credits == client.credits_spent() == stats(sandbox)["credits_charged"]


def test_a_focus_group_without_a_workspace_fails_before_sending(make_client, personas, sandbox,
                                                                connection) -> None:
    unset = Connection(connection.settings.with_overrides(mavera_workspace_id=None), "live", "w")
    client = make_client(connection=unset)
    with pytest.raises(ConfigError, match="MAVERA_WORKSPACE_ID") as caught:
        client.focus_groups.run([personas[0]["id"]], ["Would you click?"], poll_s=0)
    assert "ws_sandbox_client" in str(caught.value)  # the key's workspaces, to pick from
    routes = stats(sandbox)["requests"]
    assert routes.get("POST /mavera/api/v1/focus-groups", 0) == 0
    assert routes["GET /mavera/api/v1/workspaces"] == 1


def test_the_only_workspace_of_the_key_is_found_and_sent(make_client, personas, sandbox,
                                                         connection) -> None:
    only = sandbox.state.mavera.workspaces[:1]
    sandbox.state.mavera.workspaces = only
    unset = Connection(connection.settings.with_overrides(mavera_workspace_id=None), "live", "w")
    result = make_client(connection=unset).focus_groups.run([personas[0]["id"]], ["Would you click?"],
                                                            poll_s=0)
    assert result.status == "completed" and result.raw["workspace_id"] == only[0]["id"]
    sent = [r["json"] for r in sandbox.state.request_log if r["path"].endswith("/focus-groups")]
    assert [body["workspace_id"] for body in sent] == [only[0]["id"]]


def test_the_configured_workspace_is_sent_without_asking(make_client, personas, sandbox) -> None:
    make_client().focus_groups.run([personas[0]["id"]], ["Would you click?"], poll_s=0)
    sent = [r["json"] for r in sandbox.state.request_log if r["path"].endswith("/focus-groups")]
    assert [body["workspace_id"] for body in sent] == [sandbox.env()["MAVERA_WORKSPACE_ID"]]
    assert "GET /mavera/api/v1/workspaces" not in stats(sandbox)["requests"]


def test_usage_reports_credits_and_the_keys_rate_limit(make_client) -> None:
    usage = make_client().usage.get()
    assert usage["object"] == "usage"
    assert usage["rate_limit"]["requests_per_minute"] > 0
    assert "remaining" in usage["credits"]


# -- resilience, credits, budget, cache ---------------------------------------------------------


def test_429_storm_is_retried_honouring_retry_after(make_client, personas, sandbox, monkeypatch) -> None:
    pauses: list[float] = []

    class RecordingTime:
        monotonic = staticmethod(__import__("time").monotonic)
        time = staticmethod(__import__("time").time)

        @staticmethod
        def sleep(seconds: float) -> None:
            pauses.append(seconds)

    monkeypatch.setattr(http_module, "time", RecordingTime)
    client = make_client()
    fault(sandbox, "/chat/completions", 429, count=4, retry_after=2)
    result = client.chat.create("Score this: Free shipping today", persona_id=personas[0]["id"])
    assert result.content
    assert pauses == [2.0, 2.0, 2.0, 2.0]
    assert client.http.stats.rate_limited == 4
    assert stats(sandbox)["requests"]["POST /mavera/api/v1/chat/completions"] == 5


def test_402_mid_run_stops_cleanly_and_keeps_what_was_done(make_sandbox, tmp_path) -> None:
    server = make_sandbox(mavera_credits=12, customers=200)
    connection = Connection(settings_for(server, tmp_path / "data"), "live", "w", server.url)
    client = MaveraClient(connection, run_id="run-402", job="test")
    done: list[str] = []
    with pytest.raises(CreditsExhausted) as caught:
        for i in range(40):
            done.append(client.chat.create(f"Score variation number {i}: Save big on item {i}").content)
    assert "top up" in str(caught.value) and caught.value.code == "credits_exhausted"
    assert done, "calls before the 402 returned their results"
    on_disk = read_ledger(tmp_path / "data", "live", run_id="run-402")  # flushed, not buffered
    assert len(on_disk) == len(done)
    assert on_disk["credits"].sum() == stats(server)["credits_charged"] <= 12
    client.close()


def test_budget_refuses_before_sending(make_client, personas, sandbox) -> None:
    budget = CreditBudget(4)  # a chat could cost 5
    client = make_client(budget=budget)
    before = stats(sandbox)["requests_total"]
    with pytest.raises(BudgetExceeded, match="refused before sending"):
        client.chat.create("Score this: Last chance", persona_id=personas[0]["id"])
    assert stats(sandbox)["requests_total"] == before
    assert [s.kind for s in budget.skipped] == ["chat"]
    assert client.credits_spent() == 0


def test_budget_settles_actual_costs_so_cheap_calls_keep_going(make_client, personas) -> None:
    budget = CreditBudget(12)
    client = make_client(budget=budget)
    for i in range(4):
        client.chat.create(f"Short {i}", persona_id=personas[0]["id"])
    assert budget.spent == client.credits_spent() <= 12
    assert budget.reserved == 0


def test_rerun_hits_the_cache_with_zero_requests_and_zero_credits(make_client, personas, sandbox) -> None:
    def run(client: MaveraClient) -> list[Any]:
        return [
            client.chat.create("Score: Spring sale", persona_id=personas[0]["id"]).content,
            client.responses.create("Score: Spring sale", persona_id=personas[1]["id"],
                                    schema=SCORE_SCHEMA).parsed,
            client.mave.chat("What drives unsubscribes after a sale?").content,
            client.generations.create("ad-headlines", {"topic": "spring sale"}).content,
            client.focus_groups.run([personas[0]["id"]], ["Would you click?"],
                                    stimuli=["Spring sale"], poll_s=0).stimuli,
        ]

    first = run(make_client(run_id="first"))
    before = stats(sandbox)
    second_client = make_client(run_id="second")
    second = run(second_client)
    after = stats(sandbox)
    assert second == first
    assert after["requests_total"] == before["requests_total"]
    assert after["credits_charged"] == before["credits_charged"] > 0
    assert second_client.credits_spent() == 0
    rows = second_client.ledger.frame("second")
    assert len(rows) == 5 and rows["cached"].all()


def test_refresh_bypasses_the_cache_and_rewrites_it(make_client, personas, sandbox) -> None:
    make_client(run_id="a").chat.create("Score: Free gift", persona_id=personas[0]["id"])
    before = stats(sandbox)["requests_total"]
    fresh = make_client(run_id="b", refresh=True).chat.create("Score: Free gift", persona_id=personas[0]["id"])
    assert not fresh.cached
    assert stats(sandbox)["requests_total"] == before + 1


def test_ensure_persona_is_idempotent_across_reruns(make_client, sandbox) -> None:
    fields = {"description": "Price-sensitive shoppers who wait for discounts."}
    first, created = make_client(run_id="one").personas.ensure("Bargain Hunters", **fields)
    again, created_again = make_client(run_id="two").personas.ensure("bargain  hunters", **fields)
    assert (created, created_again) == (True, False)
    assert again["id"] == first["id"]
    counts = stats(sandbox)
    assert counts["requests"]["POST /mavera/api/v1/personas"] == 1
    assert counts["credits_charged"] == 300


def test_ensure_persona_updates_a_changed_description(make_client) -> None:
    client = make_client()
    persona, _ = client.personas.ensure("Loyalists", description="Buy every month.")
    updated, created = client.personas.ensure("Loyalists", description="Buy every week.")
    assert not created and updated["id"] == persona["id"]
    assert client.personas.get(persona["id"])["description"] == "Buy every week."


class FlakyCreate(httpx.BaseTransport):
    """Breaks the first POST /personas: before the server acts, or after it acted (answer lost)."""

    def __init__(self, mode: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.mode = mode
        self.broken = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/personas") and not self.broken:
            self.broken = True
            if self.mode == "before":
                return httpx.Response(503, json={"error": {"message": "unavailable", "type": "api_error",
                                                           "code": "service_unavailable", "param": None}})
            self.inner.handle_request(request).read()  # the server creates and charges...
            if self.mode == "timeout":
                raise httpx.ReadTimeout("timed out waiting for the answer", request=request)
            return httpx.Response(503, json={"error": {"message": "upstream reset",
                                                       "code": "service_unavailable"}})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("mode", ["before", "after", "timeout"])
def test_ensure_persona_never_duplicates_when_the_create_call_fails(mode, make_client, sandbox) -> None:
    budget = CreditBudget(1000)
    client = make_client(transport=FlakyCreate(mode), budget=budget)
    persona, created = client.personas.ensure("Weekend Browsers", description="Shop on Sundays.")
    assert created
    named = httpx.get(f"{client.base_url}/personas", params={"name": "Weekend Browsers"},
                      headers={"Authorization": f"Bearer {sandbox.env()['MAVERA_API_KEY']}"}).json()
    assert [p["id"] for p in named["data"]] == [persona["id"]]
    assert stats(sandbox)["credits_charged"] == 300
    assert client.credits_spent() == 300 == budget.spent
    _, again = make_client(run_id="rerun").personas.ensure("Weekend Browsers",
                                                           description="Shop on Sundays.")
    assert not again and stats(sandbox)["credits_charged"] == 300


def test_mave_concurrency_stays_under_the_cap_of_ten(make_client, sandbox, monkeypatch) -> None:
    monkeypatch.setattr(sandbox.state.mavera, "mave_latency_s", 0.3)
    client = make_client(use_cache=False)
    with ThreadPoolExecutor(max_workers=14) as pool:
        answers = list(pool.map(lambda i: client.mave.chat(f"Question {i} about churn"), range(14)))
    assert len({a.thread_id for a in answers}) == 14
    assert stats(sandbox)["rate_limited_total"] == 0


def test_pii_guard_refuses_to_send_emails_or_phones(make_client, personas, sandbox) -> None:
    client = make_client()
    before = stats(sandbox)["requests_total"]
    with pytest.raises(PiiBlocked) as caught:
        client.chat.create([{"role": "user",
                             "content": "Write to jane.doe@example.com or +1 415 555 0100"}],
                           persona_id=personas[0]["id"])
    assert "jane.doe" not in str(caught.value) and "555" not in str(caught.value)
    assert "messages" in str(caught.value)
    with pytest.raises(PiiBlocked):
        client.personas.ensure("Callers", description="Reach them at (415) 555-0100")
    assert stats(sandbox)["requests_total"] == before + 1  # the persona lookup, never the create


def test_no_key_in_any_log_error_or_file(make_client, personas, sandbox, caplog, tmp_path) -> None:
    key = sandbox.env()["MAVERA_API_KEY"]
    wrong = "mvra_live_" + "k" * 32
    caplog.set_level(logging.DEBUG)
    client = make_client()
    fault(sandbox, "/chat/completions", 429, count=1, retry_after=0)
    client.chat.create("Score: Hello", persona_id=personas[0]["id"])
    fault(sandbox, "/mave/chat", 503, count=1)
    errors: list[ApiError] = []
    with pytest.raises(ServerError) as server_error:
        client.mave.chat("Research churn")
    errors.append(server_error.value)
    # The sandbox quotes the key it got in these error pages, as real services sometimes do.
    base = next(p for p in personas if not p.get("is_custom"))
    with pytest.raises(Forbidden) as forbidden:
        client.personas.update(base["id"], name="Renamed")
    errors.append(forbidden.value)
    sandbox.state.mavera.balance = 0
    with pytest.raises(CreditsExhausted) as broke:
        client.chat.create("Score: nothing left", persona_id=personas[0]["id"])
    errors.append(broke.value)
    bad = Connection(client.connection.settings.with_overrides(mavera_key=Secret(wrong)), "live", "w")
    with pytest.raises(AuthError) as auth_error:
        make_client(connection=bad).usage.get()
    errors.append(auth_error.value)
    assert "MAVERA_API_KEY" in str(auth_error.value)
    client.close()
    # The echoes happened, and were redacted: in the messages quoting the server, and the bodies.
    assert "****" in str(forbidden.value) and "****" in str(broke.value)
    assert all("****" in json.dumps(e.body) for e in (forbidden.value, broke.value, auth_error.value))
    for secret in (key, wrong):
        assert secret not in caplog.text
        for error in errors:
            assert secret not in str(error) and secret not in repr(error.args)
            assert secret not in json.dumps(error.body)
        for path in client.connection.settings.data_dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# -- cases only a mock transport can produce ------------------------------------------------------


@pytest.fixture
def offline(tmp_path: Path) -> Connection:
    settings = Settings(mavera_key=Secret("mvra_live_" + "x" * 32), mode="live",
                        mavera_url_override="https://mavera.test/api/v1", data_dir=tmp_path / "data",
                        mavera_workspace_id="ws_offline")
    return Connection(settings, "live", "offline")


def mock_client(connection: Connection, handler: Callable[[httpx.Request], httpx.Response],
                **kwargs: Any) -> MaveraClient:
    return MaveraClient(connection, transport=httpx.MockTransport(handler), **kwargs)


def envelope(status: int, code: str, message: str = "sandbox says no", param: str | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x", "code": code,
                                                  "param": param}})


@pytest.mark.parametrize(("status", "code", "cls", "says"), [
    (401, "missing_api_key", AuthError, "set MAVERA_API_KEY"),
    (401, "invalid_api_key", AuthError, "MAVERA_API_KEY was not accepted"),
    (401, "revoked_api_key", AuthError, "revoked"),
    (401, "expired_api_key", AuthError, "expired"),
    (402, "credits_exhausted", CreditsExhausted, "top up"),
    (402, "budget_exceeded", CreditsExhausted, "raise its usage_limit"),
    (400, "invalid_persona", InvalidRequest, "'clx_missing'"),
    (400, "invalid_model", InvalidRequest, "'gpt-4'"),
    (404, "resource_not_found", NotFound, "sandbox says no"),
    (422, "duplicate_name", DuplicateName, "personas.ensure"),
])
def test_errors_are_mapped_by_status_and_code(offline, status, code, cls, says) -> None:
    client = mock_client(offline, lambda request: envelope(status, code))
    with pytest.raises(cls) as caught:
        client.chat.create("hi", persona_id="clx_missing", model="gpt-4")
    assert says in str(caught.value)
    assert caught.value.code == code and caught.value.status == status


def test_a_bad_request_is_also_an_invalid_parameter(offline) -> None:
    client = mock_client(offline, lambda request: envelope(400, "missing_field", param="messages"))
    with pytest.raises(InvalidParameter, match="'messages'"):
        client.chat.create("hi")


def test_structured_output_without_a_required_key_is_an_error_and_not_cached(offline) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"object": "response", "usage": {"credits_used": 2},
                                         "output": [{"type": "message", "content": [
                                             {"type": "output_text", "text": '{"score": 7}'}]}]})

    client = mock_client(offline, handler)
    for _ in range(2):
        with pytest.raises(StructuredOutputError, match="reason"):
            client.responses.create("Score it", schema=SCORE_SCHEMA)
    assert len(sent) == 2
    assert client.credits_spent() == 4  # paid for, even though unusable


def test_focus_group_timeout_names_the_id_to_fetch_later(offline) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"id": "fg_123", "object": "focus_group", "status": "pending",
                                         "usage": {"credits_used": 80}})

    client = mock_client(offline, handler)
    with pytest.raises(FocusGroupTimeout) as caught:
        client.focus_groups.run(["clx1"], ["Would you click?"], timeout_s=0, poll_s=0.01)
    assert caught.value.focus_group_id == "fg_123"
    assert "focus_groups.get('fg_123')" in str(caught.value)
    assert client.credits_spent() == 80


def test_a_workspace_listing_the_key_may_not_read_names_the_setting(offline) -> None:
    unset = Connection(offline.settings.with_overrides(mavera_workspace_id=None), "live", "offline")
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        return envelope(403, "forbidden", "this key may not list workspaces")

    with pytest.raises(ConfigError, match="MAVERA_WORKSPACE_ID is not set and listing"):
        mock_client(unset, handler).focus_groups.create(["clx1"], ["Would you click?"])
    assert sent == ["GET /api/v1/workspaces"]


def test_list_personas_falls_back_to_offset_pages(offline) -> None:
    people = [{"id": f"clx{i}", "name": f"P{i}"} for i in range(7)]

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", 0))
        page = people[offset:offset + 3]
        return httpx.Response(200, json={"object": "list", "data": page, "total": 7, "limit": 3,
                                         "offset": offset, "has_more": offset + 3 < 7})

    assert [p["id"] for p in mock_client(offline, handler).personas.list()] == [p["id"] for p in people]


def test_creating_a_persona_is_not_retried_blindly_on_a_5xx(offline) -> None:
    posts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request)
            return envelope(500, "internal_error")
        return httpx.Response(200, json={"object": "list", "data": [], "has_more": False})

    with pytest.raises(ServerError):
        mock_client(offline, handler).personas.create(name="Solo", description="x")
    assert len(posts) == 1


def test_header_gate_holds_sends_until_the_servers_reset(monkeypatch) -> None:
    clock = {"now": 1000.0}
    slept: list[float] = []

    class FakeTime:
        @staticmethod
        def time() -> float:
            return clock["now"]

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)
            clock["now"] += seconds

    monkeypatch.setattr(ratelimit_module, "time", FakeTime)
    gate = HeaderGate()
    gate.before_send()
    gate.after_response(httpx.Response(200, headers={"X-RateLimit-Remaining": "1",
                                                     "X-RateLimit-Reset": "1010"}))
    gate.before_send()  # the one request the server still allows
    assert slept == []
    gate.before_send()  # the window is spent: wait for the reset
    assert slept and abs(sum(slept) - 10.25) < 1e-6


def test_response_cache_key_ignores_the_api_key_and_the_sandbox_port(tmp_path) -> None:
    body = {"model": "mavera-1", "messages": [{"role": "user", "content": "hi"}]}
    one = request_key("POST", "/chat/completions", body, "http://127.0.0.1:5001/mavera/api/v1")
    two = request_key("POST", "/chat/completions", dict(reversed(body.items())),
                      "http://127.0.0.1:6002/mavera/api/v1")
    live = request_key("POST", "/chat/completions", body, "https://app.mavera.io/api/v1")
    assert one == two != live


def test_corrupt_cache_entry_is_ignored_and_rewritten(offline) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "fine"}}],
                                         "usage": {"credits_used": 1}})

    client = mock_client(offline, handler)
    client.chat.create("hi")
    cache = ResponseCache(offline.cache_dir / "mavera")
    (entry,) = list(cache.root.rglob("*.json"))
    entry.write_text("{ torn")
    assert client.chat.create("hi").content == "fine"
    assert client.chat.create("hi").cached
    assert len(sent) == 2
    assert json.loads(entry.read_text())["response"]["choices"][0]["message"]["content"] == "fine"


def test_clients_of_one_key_share_the_tier_window(offline) -> None:
    one = mock_client(offline, lambda r: httpx.Response(200, json={}))
    two = mock_client(offline, lambda r: httpx.Response(200, json={}))
    assert one.limits is two.limits
    assert one.limits.rpm == 60


def test_a_missing_key_fails_before_any_request(tmp_path) -> None:
    settings = Settings(mode="live", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="MAVERA_API_KEY"):
        MaveraClient(Connection(settings, "live", "none"))
