"""The Mavera half of the sandbox over real loopback HTTP: shapes, errors, limits, credits, determinism."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cio_mavera.sandbox.mavera.focus_groups import FOCUS_GROUP_MAX_CONCURRENT
from cio_mavera.sandbox.mavera.mave import MAVE_COST_RANGES, MAVE_MAX_CONCURRENT
from cio_mavera.sandbox.mavera.params import DEFAULT_WORKSPACE_ID
from cio_mavera.sandbox.mavera.personas import PERSONA_CREATE_CREDITS
from cio_mavera.sandbox.mavera.text import SANDBOX_MARK
from cio_mavera.sandbox.server import SandboxServer

MODEL = "mavera-1"
WORKSPACE = DEFAULT_WORKSPACE_ID  # what /__sandbox__/env hands out as MAVERA_WORKSPACE_ID


def mavera(server: SandboxServer, key: str | None = "default") -> httpx.Client:
    """An httpx client for the sandbox's Mavera API (key "default" = the sandbox key, None = no header)."""
    env = server.env()
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Bearer {env['MAVERA_API_KEY'] if key == 'default' else key}"
    return httpx.Client(base_url=env["MAVERA_BASE_URL"], headers=headers, timeout=10)


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with mavera(sandbox) as client:
        yield client


def personas(api: httpx.Client) -> list[dict[str, Any]]:
    return api.get("/personas", params={"limit": 100}).json()["data"]


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]["code"]


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> None:
    """A tiny JSON Schema checker for the constructs the tests use (raises AssertionError)."""
    root = root or schema
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    if "enum" in schema:
        assert value in schema["enum"], (value, schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict)
        for name in schema.get("required", []):
            assert name in value, f"missing {name}"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(schema.get("properties", {}))
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                validate(value[name], sub, root)
    elif kind == "array":
        assert isinstance(value, list)
        assert len(value) >= schema.get("minItems", 0)
        assert len(value) <= schema.get("maxItems", 10**9)
        for item in value:
            validate(item, schema["items"], root)
    elif kind == "string":
        assert isinstance(value, str)
        assert schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    elif kind in ("integer", "number"):
        assert isinstance(value, int if kind == "integer" else (int, float))
        assert not isinstance(value, bool)
        assert schema.get("minimum", -1e18) <= value <= schema.get("maximum", 1e18)
    elif kind == "boolean":
        assert isinstance(value, bool)


# ------------------------------------------------------------------ auth and rate limits

def test_missing_key_is_401_missing_api_key(sandbox: SandboxServer) -> None:
    with mavera(sandbox, key=None) as client:
        response = client.get("/personas")
    assert response.status_code == 401
    assert error_code(response) == "missing_api_key"
    assert response.json()["error"]["type"] == "authentication_error"


def test_unknown_key_is_401_invalid_api_key_quoting_the_key(sandbox: SandboxServer) -> None:
    with mavera(sandbox, key="mvra_live_not_a_real_key_1234567890") as client:
        response = client.post("/chat/completions", json={"model": MODEL, "messages": []})
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"
    # Real error pages sometimes quote the key they got; the sandbox does, so redaction is tested.
    assert "mvra_live_not_a_real_key_1234567890" in response.text


def test_rate_limit_headers_on_every_response(sandbox: SandboxServer, api: httpx.Client) -> None:
    responses = [
        api.get("/personas"),
        api.get("/personas/clx_nope"),
        api.post("/chat/completions", json={"model": "gpt-4", "messages": []}),
        api.get("/no-such-endpoint"),
    ]
    with mavera(sandbox, key=None) as anonymous:
        responses.append(anonymous.get("/usage"))
    assert [r.status_code for r in responses] == [200, 404, 400, 404, 401]
    remaining = []
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == "600"
        assert int(response.headers["X-RateLimit-Reset"]) > 0
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining[:4] == [599, 598, 597, 596]


def test_requests_over_the_per_minute_limit_get_429_with_retry_after(make_sandbox) -> None:
    server = make_sandbox(customers=50, mavera_rpm=3)
    server.state.mavera.rate.clock = lambda: 1_000.0  # every request in the same instant
    with mavera(server) as client:
        statuses = [client.get("/personas") for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    limited = statuses[3]
    assert error_code(limited) == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert server.state.stats.as_json()["rate_limited"]["mavera"] == 2


def test_mave_concurrency_cap_rejects_the_eleventh_concurrent_request(sandbox: SandboxServer) -> None:
    account = sandbox.state.mavera
    extra = 2
    statuses: list[int] = []
    answered = threading.Condition()

    def ask(i: int) -> None:
        with mavera(sandbox) as client:
            status = client.post("/mave/chat", json={"message": f"question {i}"}).status_code
        with answered:
            statuses.append(status)
            answered.notify_all()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(MAVE_MAX_CONCURRENT + extra)]
    account.mave_open.clear()  # admitted requests stay in flight until released
    try:
        for thread in threads:
            thread.start()
        # Only requests over the cap can answer while the admitted ones are held.
        with answered:
            assert answered.wait_for(lambda: len(statuses) == extra, timeout=60)
        assert statuses == [429] * extra and account.mave_in_flight == MAVE_MAX_CONCURRENT
    finally:
        account.mave_open.set()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(statuses) == [200] * MAVE_MAX_CONCURRENT + [429] * extra


# ------------------------------------------------------------------ credits

def test_every_billable_call_charges_what_it_reports(sandbox: SandboxServer, api: httpx.Client) -> None:
    persona_id = personas(api)[0]["id"]
    reported = {
        "chat": api.post("/chat/completions", json={
            "model": MODEL, "persona_id": persona_id,
            "messages": [{"role": "user", "content": "Is 'Save 20% today' a good subject line?"}]}),
        "responses": api.post("/responses", json={"model": MODEL, "input": "hello", "persona_id": persona_id}),
        "mave": api.post("/mave/chat", json={"message": "Research retention strategies for churned pro users"}),
        "generation": api.post("/generations", json={"app_id": "email-subject-lines",
                                                     "input_data": {"topic": "spring sale"}}),
        "persona": api.post("/personas", json={"name": "Sandbox VIP", "description": "Loyal VIP buyers."}),
        "focus": api.post("/focus-groups", json={"persona_ids": [persona_id], "stimuli": ["A", "B"],
                                                 "workspace_id": WORKSPACE}),
    }
    costs = {name: r.json()["usage"]["credits_used"] for name, r in reported.items()}
    assert 1 <= costs["chat"] <= 5 and 1 <= costs["responses"] <= 5
    assert 10 <= costs["mave"] <= 75
    assert 10 <= costs["generation"] <= 30
    assert costs["persona"] == PERSONA_CREATE_CREDITS == reported["persona"].json()["credits_charged"]
    assert 50 <= costs["focus"] <= 200
    usage = api.get("/usage").json()
    assert usage["credits"]["used"] == sum(costs.values())
    assert usage["credits"]["remaining"] == sandbox.state.config.mavera_credits - sum(costs.values())
    assert sandbox.state.stats.as_json()["credits_charged"] == sum(costs.values())
    assert sandbox.state.mavera.balance == usage["credits"]["remaining"]


def test_reads_of_charged_resources_do_not_report_usage_again(api: httpx.Client) -> None:
    generation = api.post("/generations", json={"app_id": "email-copy", "input_data": {"topic": "onboarding"}})
    fetched = api.get(f"/generations/{generation.json()['id']}").json()
    assert "usage" not in fetched
    assert fetched["credits_used"] == generation.json()["usage"]["credits_used"]


def test_credits_exhausted_is_402_and_creates_nothing(make_sandbox) -> None:
    server = make_sandbox(customers=50, mavera_credits=PERSONA_CREATE_CREDITS + 20)
    with mavera(server) as client:
        first = client.post("/personas", json={"name": "Budget Buyers", "description": "Price-driven."})
        second = client.post("/personas", json={"name": "Premium Buyers", "description": "Quality-driven."})
        mave = client.post("/mave/chat", json={
            "message": "Compare our retention strategy with competitors and plan a research roadmap "
                       "for every segment, analysing why customers churn"})
        threads = client.get("/mave/threads").json()["data"]
        custom = client.get("/personas", params={"is_custom": "true"}).json()["data"]
        usage = client.get("/usage").json()
    assert first.status_code == 201
    assert second.status_code == 402 and error_code(second) == "credits_exhausted"
    assert mave.status_code == 402
    assert [p["name"] for p in custom] == ["Budget Buyers"]
    assert threads == []
    assert usage["credits"] == {"used": 300, "included": 320, "remaining": 20, "percentage_used": 93.8}
    assert server.state.stats.as_json()["credits_charged"] == 300


# ------------------------------------------------------------------ personas

def test_base_personas_span_categories_with_documented_fields(api: httpx.Client) -> None:
    data = personas(api)
    assert len(data) >= 10
    assert len({p["category"] for p in data}) >= 4
    for persona in data:
        assert set(persona) == {"id", "object", "name", "category", "description", "is_custom",
                                "is_expert", "created_at"}
        assert persona["object"] == "persona" and persona["is_custom"] is False
        assert persona["id"].startswith("clx") and len(persona["id"]) == 25


def test_persona_list_pages_by_cursor_and_by_offset(api: httpx.Client) -> None:
    everything = [p["id"] for p in personas(api)]
    seen, cursor = [], None
    while True:
        page = api.get("/personas", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == everything
    offset_page = api.get("/personas", params={"limit": 3, "offset": 3}).json()
    assert [p["id"] for p in offset_page["data"]] == everything[3:6]
    assert offset_page["total"] == len(everything) and offset_page["has_more"] is True
    assert api.get("/personas", params={"limit": 0}).status_code == 400
    assert error_code(api.get("/personas", params={"cursor": "bogus!"})) == "invalid_field"


def test_persona_name_filter_search_and_get(api: httpx.Client) -> None:
    by_name = api.get("/personas", params={"name": "gen z consumer"}).json()["data"]
    assert [p["name"] for p in by_name] == ["Gen Z Consumer"]
    searched = api.get("/personas", params={"search": "b2b"}).json()["data"]
    assert searched and all("b2b" in (p["name"] + p["description"]).lower() for p in searched)
    assert api.get(f"/personas/{by_name[0]['id']}").json() == by_name[0]
    missing = api.get("/personas/clx0000000000000000000000")
    assert missing.status_code == 404 and error_code(missing) == "resource_not_found"


def test_create_custom_persona_then_duplicate_name_is_422(api: httpx.Client) -> None:
    body = {"name": "Shopify VIP Customer", "description": "Repeat buyer with high order value.",
            "attributes": {"revenue_tier": "high", "customer_count": 120}}
    created = api.post("/personas", json=body)
    assert created.status_code == 201
    persona = created.json()
    assert persona["object"] == "custom_persona" and persona["is_custom"] is True
    assert persona["pipeline_type"] == "north_star" and persona["credits_charged"] == 300
    duplicate = api.post("/personas", json={**body, "name": "shopify vip customer"})
    assert duplicate.status_code == 422 and duplicate.json()["error"]["param"] == "name"
    found = api.get("/personas", params={"name": "Shopify VIP Customer"}).json()["data"]
    assert [p["id"] for p in found] == [persona["id"]]
    assert api.get(f"/personas/{persona['id']}").json()["details"]["pipeline_type"] == "north_star"


def test_create_persona_validates_required_fields(api: httpx.Client) -> None:
    no_description = api.post("/personas", json={"name": "Only A Name"})
    assert no_description.status_code == 400 and error_code(no_description) == "missing_field"
    assert no_description.json()["error"]["param"] == "description"
    intermediate = api.post("/personas", json={"pipeline_type": "intermediate", "name": "Enterprise CMO"})
    assert intermediate.json()["error"]["param"] == "type"
    bad_type = api.post("/personas", json={"pipeline_type": "intermediate", "name": "Enterprise CMO",
                                           "type": "B2X"})
    assert error_code(bad_type) == "invalid_field"
    ok = api.post("/personas", json={"pipeline_type": "intermediate", "name": "Enterprise CMO", "type": "B2B",
                                     "buying_stage": "SOLUTION_AWARE", "goals": ["Drive revenue growth"]})
    assert ok.status_code == 201 and ok.json()["details"]["goals"] == ["Drive revenue growth"]
    assert api.get("/usage").json()["credits"]["used"] == 300


def test_patch_updates_custom_personas_only(api: httpx.Client) -> None:
    created = api.post("/personas", json={"name": "Trial Users", "description": "New trial users."}).json()
    patched = api.patch(f"/personas/{created['id']}", json={"description": "Trial users in week one.",
                                                            "pains": ["setup time"]})
    assert patched.status_code == 200
    assert patched.json()["description"] == "Trial users in week one."
    assert patched.json()["details"]["pains"] == ["setup time"]
    base_id = personas(api)[0]["id"]
    assert api.patch(f"/personas/{base_id}", json={"name": "Renamed"}).status_code == 403
    assert api.delete(f"/personas/{created['id']}").json()["deleted"] is True
    gone = api.patch(f"/personas/{created['id']}", json={"name": "Again"})
    assert gone.status_code == 404 and error_code(gone) == "resource_not_found"


# ------------------------------------------------------------------ chat and responses

def test_chat_completion_has_openai_shape_and_sandbox_marks(api: httpx.Client) -> None:
    persona = personas(api)[1]
    response = api.post("/chat/completions", json={
        "model": MODEL, "persona_id": persona["id"],
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "What do you think of 'Last chance: 30% off'?"}]})
    body = response.json()
    assert body["id"].startswith("chatcmpl_") and body["object"] == "chat.completion"
    assert body["model"] == MODEL and isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"].startswith(SANDBOX_MARK)
    assert persona["name"] in choice["message"]["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["sandbox"] is True


@pytest.mark.parametrize(("patch", "status", "code"), [
    ({"model": "gpt-4o"}, 400, "invalid_model"),
    ({"model": None}, 400, "missing_field"),
    ({"persona_id": "clx_unknown"}, 400, "invalid_persona"),
    ({"messages": []}, 400, "invalid_field"),
])
def test_chat_completion_rejects_bad_requests(api: httpx.Client, patch: dict, status: int, code: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **patch}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post("/chat/completions", json=body)
    assert response.status_code == status and error_code(response) == code
    assert api.get("/usage").json()["credits"]["used"] == 0


def test_same_request_gives_identical_content(api: httpx.Client) -> None:
    persona_id = personas(api)[2]["id"]
    body = {"model": MODEL, "persona_id": persona_id, "messages": [{"role": "user", "content": "Rate: Hi there"}]}
    first = api.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    second = api.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    other = api.post("/chat/completions", json={**body, "persona_id": personas(api)[3]["id"]}).json()
    assert first == second
    assert other["choices"][0]["message"]["content"] != first
    mave = [api.post("/mave/chat", json={"message": "Why do trial users churn?"}).json() for _ in range(2)]
    assert mave[0]["content"] == mave[1]["content"] and mave[0]["sources"] == mave[1]["sources"]
    assert mave[0]["thread_id"] != mave[1]["thread_id"]


def test_chat_stream_is_sse_chunks_ending_with_done(api: httpx.Client) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Describe yourself"}]}
    whole = api.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    with api.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "X-RateLimit-Remaining" in response.headers
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["credits_used"] >= 1


RATING_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "sentiment": {"type": "string", "enum": ["positive", "mixed", "negative"]},
        "explanation": {"type": "string", "maxLength": 200},
        "would_open": {"type": "boolean"},
        "themes": {"type": "array", "minItems": 2, "maxItems": 4, "items": {"$ref": "#/$defs/Theme"}},
    },
    "required": ["score", "confidence", "sentiment", "explanation", "would_open", "themes"],
    "additionalProperties": False,
    "$defs": {"Theme": {"type": "object", "additionalProperties": False, "required": ["name", "weight"],
                        "properties": {"name": {"type": "string"},
                                       "weight": {"type": "integer", "minimum": 0, "maximum": 100}}}},
}


def test_structured_output_validates_against_the_schema(api: httpx.Client) -> None:
    persona_id = personas(api)[4]["id"]
    for text in ("Save 20% on shoes today!", "Your weekly product digest", "Is your data secure?"):
        response = api.post("/responses", json={
            "model": MODEL, "persona_id": persona_id, "input": [{"role": "user", "content": text}],
            "text": {"format": {"type": "json_schema", "name": "rating", "schema": RATING_SCHEMA,
                                "strict": True}}}).json()
        parsed = json.loads(response["output"][0]["content"][0]["text"])
        validate(parsed, RATING_SCHEMA)
        assert response["output_parsed"] == parsed
        assert response["object"] == "response" and response["status"] == "completed"
        assert response["usage"]["credits_used"] >= 1


def test_unsatisfiable_schema_is_400_invalid_field(api: httpx.Client) -> None:
    response = api.post("/responses", json={
        "model": MODEL, "input": "x",
        "text": {"format": {"type": "json_schema", "name": "bad",
                            "schema": {"type": "integer", "minimum": 5, "maximum": 4}}}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "text.format.schema"


def test_scores_vary_with_text_and_persona(api: httpx.Client) -> None:
    people = [p["id"] for p in personas(api)[:6]]
    texts = ["Save 20% today only!", "3 ways teams automate reporting", "Still thinking about it?",
             "Join 10,000 customers who trust us", "Your order update", "LAST CHANCE!!! Huge deal"]

    def score(persona_id: str, text: str) -> int:
        body = api.post("/responses", json={
            "model": MODEL, "persona_id": persona_id, "input": text,
            "text": {"format": {"type": "json_schema", "name": "s", "schema": RATING_SCHEMA}}}).json()
        return body["output_parsed"]["score"]

    grid = {(p, t): score(p, t) for p in people for t in texts}
    assert all(len({grid[p, t] for t in texts}) >= 3 for p in people)  # variations differ
    rankings = {tuple(sorted(texts, key=lambda t, p=p: (-grid[p, t], t))) for p in people}
    assert len(rankings) >= 3  # personas disagree about which message is best
    assert score(people[0], texts[0]) == grid[people[0], texts[0]]


# ------------------------------------------------------------------ mave

def test_mave_chat_continues_threads(api: httpx.Client) -> None:
    first = api.post("/mave/chat", json={"message": "Why do enterprise customers unsubscribe?"})
    assert first.status_code == 200
    body = first.json()
    assert body["object"] == "mave_message" and body["content"].startswith(SANDBOX_MARK)
    assert body["thread_id"].startswith("mave_thread_")
    assert body["sources"] and all(s["url"].startswith("https://example.com/sandbox/") for s in body["sources"])
    assert {"title", "url", "snippet"} <= set(body["sources"][0])
    assert body["personas_used"] and {"id", "name"} <= set(body["personas_used"][0])
    assert 0 <= body["validation"]["confidence_score"] <= 1
    assert body["validation"]["hallucination_risk"] in ("low", "medium", "high")
    low, high = MAVE_COST_RANGES[body["complexity"]]
    assert low <= body["usage"]["credits_used"] <= high
    follow = api.post("/mave/chat", json={"message": "And for pro plans?", "thread_id": body["thread_id"]}).json()
    assert follow["thread_id"] == body["thread_id"]
    thread = api.get(f"/mave/threads/{body['thread_id']}").json()
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant", "user", "assistant"]
    assert thread["credits_used"] == body["usage"]["credits_used"] + follow["usage"]["credits_used"]
    listed = api.get("/mave/threads").json()
    assert [t["id"] for t in listed["data"]] == [body["thread_id"]] and listed["data"][0]["message_count"] == 4
    unknown = api.post("/mave/chat", json={"message": "hi", "thread_id": "mave_thread_nope"})
    assert unknown.status_code == 404 and error_code(unknown) == "resource_not_found"
    assert api.get("/mave/threads/mave_thread_nope").status_code == 404


def test_mave_stream_sends_content_sources_validation_done(api: httpx.Client) -> None:
    with api.stream("POST", "/mave/chat", json={"message": "Research churn drivers", "stream": True}) as r:
        events = [line[len("event: "):] for line in r.iter_lines() if line.startswith("event: ")]
    assert events[0] == "content" and events[-3:] == ["sources", "validation", "done"]


# ------------------------------------------------------------------ generations

def test_generations_answer_one_output_in_the_documented_shape(api: httpx.Client) -> None:
    apps = api.get("/generation-apps").json()["data"]
    assert "email-subject-lines" in {a["id"] for a in apps}
    assert all({"id", "name", "description", "input_fields"} <= set(a) for a in apps)
    created = api.post("/generations", json={
        "app_id": "email-copy", "persona_id": personas(api)[0]["id"],
        "input_data": {"topic": "Spring running shoes", "key_points": ["Angle: lead with proof"]}})
    assert created.status_code == 201
    gen = created.json()
    documented = {"id", "object", "title", "app", "brand_voice", "input_data", "output", "content",
                  "content_type", "workspace_id", "usage", "created_at", "updated_at"}
    assert documented <= set(gen) and "variations" not in gen
    assert gen["content"] == gen["output"] and gen["object"] == "generation"
    assert SANDBOX_MARK in gen["output"] and "spring running shoes" in gen["output"].lower()
    assert 10 <= gen["usage"]["credits_used"] <= 30
    other = api.post("/generations", json={
        "app_id": "email-copy", "input_data": {"topic": "Spring running shoes",
                                                "key_points": ["Angle: say what happens next"]}}).json()
    assert other["output"] != gen["output"]  # another request, another text
    history = api.get("/generations").json()["data"]
    assert [g["id"] for g in history] == [other["id"], gen["id"]]
    assert api.get(f"/generations/{gen['id']}").json()["output"] == gen["output"]
    assert api.get("/generations/gen_missing").status_code == 404


@pytest.mark.parametrize(("body", "param"), [
    ({"input_data": {"topic": "x"}, "n": 3}, "n"),
    ({"input_data": {"topic": "x"}, "variations": 3}, "variations"),
    ({"input_data": {"topic": "x", "variations": 3}}, "input_data.variations"),
    ({"input_data": {}}, "input_data.topic"),
])
def test_generations_refuse_what_the_documented_request_lacks(api: httpx.Client, body: dict,
                                                              param: str) -> None:
    refused = api.post("/generations", json={"app_id": "email-copy", **body})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == param
    assert error_code(refused) in ("invalid_field", "missing_field")


# ------------------------------------------------------------------ focus groups

def test_focus_group_moves_from_pending_to_completed_over_polls(api: httpx.Client) -> None:
    people = [p["id"] for p in personas(api)[:3]]
    stimuli = [{"id": "a", "text": "Save 20% today only!"}, {"id": "b", "text": "3 ways teams use reports"}]
    created = api.post("/focus-groups", json={
        "name": "Subject lines", "persona_ids": people, "stimuli": stimuli, "workspace_id": WORKSPACE,
        "questions": [{"type": "rating", "text": "How likely are you to open this?"},
                      {"type": "open_ended", "text": "What would make you engage?"}]})
    assert created.status_code == 201
    group = created.json()
    assert group["status"] == "pending" and "results" not in group
    charged = group["usage"]["credits_used"]
    statuses = []
    for _ in range(3):
        polled = api.get(f"/focus-groups/{group['id']}").json()
        statuses.append(polled["status"])
        assert "usage" not in polled
    assert statuses == ["processing", "processing", "completed"]
    results = polled["results"]
    rating = results["questions"][0]
    assert {(r["persona_id"], r["stimulus_id"]) for r in rating["responses"]} == {
        (p, s["id"]) for p in people for s in stimuli}
    assert all(1 <= r["score"] <= 10 and r["reasoning"].startswith(SANDBOX_MARK) for r in rating["responses"])
    assert results["questions"][1]["responses"][0]["score"] is None
    assert sorted(row["rank"] for row in results["stimuli"]) == [1, 2]
    assert api.get("/usage").json()["credits"]["used"] == charged
    assert api.get("/focus-groups/fg_missing").status_code == 404


def test_focus_group_concurrency_cap_and_validation(api: httpx.Client) -> None:
    persona_id = personas(api)[0]["id"]
    body = {"persona_ids": [persona_id], "questions": ["Would you buy this?"], "workspace_id": WORKSPACE}
    ids = [api.post("/focus-groups", json=body).json()["id"] for _ in range(FOCUS_GROUP_MAX_CONCURRENT)]
    capped = api.post("/focus-groups", json=body)
    assert capped.status_code == 429 and "Retry-After" in capped.headers
    for _ in range(3):
        api.get(f"/focus-groups/{ids[0]}")
    assert api.post("/focus-groups", json=body).status_code == 201
    unknown = api.post("/focus-groups", json={**body, "persona_ids": ["clx_nope"]})
    assert error_code(unknown) == "invalid_persona"
    assert error_code(api.post("/focus-groups", json={"persona_ids": [persona_id],
                                                      "workspace_id": WORKSPACE})) == "missing_field"


def test_a_focus_group_without_a_workspace_is_refused_and_costs_nothing(sandbox: SandboxServer,
                                                                       api: httpx.Client) -> None:
    body = {"persona_ids": [personas(api)[0]["id"]], "questions": ["Would you buy this?"]}
    missing = api.post("/focus-groups", json=body)
    assert missing.status_code == 400 and error_code(missing) == "missing_field"
    assert missing.json()["error"]["param"] == "workspace_id"
    unknown = api.post("/focus-groups", json={**body, "workspace_id": "ws_someone_else"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "workspace_id"
    assert sandbox.state.stats.as_json()["credits_charged"] == 0
    assert api.post("/focus-groups", json={**body, "workspace_id": WORKSPACE}).status_code == 201


def test_workspaces_are_listed_and_the_env_names_one_of_them(sandbox: SandboxServer,
                                                             api: httpx.Client) -> None:
    listed = api.get("/workspaces").json()
    assert listed["object"] == "list" and len(listed["data"]) == 2  # an agency key: guess nothing
    assert sandbox.env()["MAVERA_WORKSPACE_ID"] == WORKSPACE
    documented = {"id", "object", "name", "type", "role", "is_owner", "created_at", "updated_at"}
    assert all(documented <= set(w) and w["object"] == "workspace" for w in listed["data"])
    assert WORKSPACE in {w["id"] for w in listed["data"]}
    assert api.get(f"/workspaces/{WORKSPACE}").json()["id"] == WORKSPACE
    assert api.get("/workspaces/ws_nope").status_code == 404


# ------------------------------------------------------------------ usage and reset

def test_usage_has_documented_shape(api: httpx.Client) -> None:
    api.post("/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    usage = api.get("/usage").json()
    assert usage["object"] == "usage"
    assert {"start", "end"} == set(usage["billing_period"])
    assert {"used", "included", "remaining", "percentage_used"} == set(usage["credits"])
    assert usage["rate_limit"] == {"requests_per_minute": 600}
    assert usage["api_requests"]["total_requests"] == 2
    assert usage["by_endpoint"]["/chat/completions"]["requests"] == 1


def test_reset_restores_credits_and_forgets_resources(sandbox: SandboxServer, api: httpx.Client) -> None:
    api.post("/personas", json={"name": "Reset Me", "description": "Temporary."})
    api.post("/mave/chat", json={"message": "hello"})
    sandbox.state.reset()
    assert sandbox.state.mavera.balance == sandbox.state.config.mavera_credits
    assert api.get("/personas", params={"is_custom": "true"}).json()["data"] == []
    assert api.get("/mave/threads").json()["data"] == []


def test_injected_faults_still_carry_rate_limit_headers(sandbox):
    env = sandbox.env()
    httpx.post(f"{sandbox.url}/__sandbox__/faults",
               json={"prefix": "/mavera/api/v1/personas", "status": 503, "count": 1})
    response = httpx.get(f"{env['MAVERA_BASE_URL']}/personas",
                         headers={"Authorization": f"Bearer {env['MAVERA_API_KEY']}"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers)
