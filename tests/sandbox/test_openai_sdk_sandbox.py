"""The official `openai` Python SDK talks to the Mavera sandbox unchanged (base_url + extra_body)."""

from __future__ import annotations

import openai
import pydantic
import pytest

from cio_mavera.sandbox.mavera.base_personas import BASE_PERSONAS
from cio_mavera.sandbox.mavera.text import SANDBOX_MARK
from cio_mavera.sandbox.server import SandboxServer

MODEL = "mavera-1"


def sdk(server: SandboxServer, key: str | None = None) -> openai.OpenAI:
    env = server.env()
    return openai.OpenAI(base_url=env["MAVERA_BASE_URL"], api_key=key or env["MAVERA_API_KEY"],
                         max_retries=0, timeout=10)


@pytest.fixture
def client(sandbox: SandboxServer) -> openai.OpenAI:
    return sdk(sandbox)


@pytest.fixture
def persona_id() -> str:
    return BASE_PERSONAS[0].id  # Gen Z Consumer


def test_sdk_chat_completion_with_persona(client: openai.OpenAI, persona_id: str) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Would you open 'Your weekly digest'?"}],
        extra_body={"persona_id": persona_id})
    content = completion.choices[0].message.content
    assert content is not None and content.startswith(SANDBOX_MARK)
    assert "Gen Z Consumer" in content
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert 1 <= completion.usage.credits_used <= 5  # extra field kept by the SDK model
    assert completion.persona_id == persona_id


def test_sdk_chat_stream_matches_the_plain_answer(client: openai.OpenAI, persona_id: str) -> None:
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Describe your week"}],
                  extra_body={"persona_id": persona_id})
    plain = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain
    assert len(chunks) > 3 and chunks[-1].choices[0].finish_reason == "stop"


def test_sdk_responses_create_and_stream(client: openai.OpenAI, persona_id: str) -> None:
    response = client.responses.create(model=MODEL, input="What makes you trust a brand?",
                                       extra_body={"persona_id": persona_id})
    assert response.status == "completed" and response.output_text.startswith(SANDBOX_MARK)
    assert response.usage is not None and response.usage.credits_used >= 1
    events = list(client.responses.create(model=MODEL, input="What makes you trust a brand?",
                                          extra_body={"persona_id": persona_id}, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text == response.output_text


class Theme(pydantic.BaseModel):
    name: str
    weight: int = pydantic.Field(ge=0, le=100)


class Review(pydantic.BaseModel):
    score: int = pydantic.Field(ge=1, le=10)
    sentiment: str
    explanation: str
    themes: list[Theme]


def test_sdk_responses_parse_returns_a_valid_model(client: openai.OpenAI, persona_id: str) -> None:
    parsed = client.responses.parse(
        model=MODEL, text_format=Review, extra_body={"persona_id": persona_id},
        input=[{"role": "system", "content": "Rate the subject line."},
               {"role": "user", "content": "Last chance: 30% off everything today!"}])
    review = parsed.output_parsed
    assert isinstance(review, Review)
    assert 1 <= review.score <= 10 and review.themes
    Review.model_validate_json(parsed.output_text)  # the raw text validates too


def test_sdk_maps_mavera_errors(sandbox: SandboxServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad_model:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert bad_model.value.code == "invalid_model"
    with pytest.raises(openai.BadRequestError) as bad_persona:
        client.responses.create(model=MODEL, input="hi", extra_body={"persona_id": "clx_missing"})
    assert bad_persona.value.code == "invalid_persona"
    with pytest.raises(openai.AuthenticationError) as bad_key:
        sdk(sandbox, key="mvra_live_wrongwrongwrongwrongwrong").responses.create(model=MODEL, input="hi")
    assert bad_key.value.code == "invalid_api_key"


def test_sdk_sees_402_and_429(make_sandbox) -> None:
    server = make_sandbox(customers=50, mavera_credits=1, mavera_rpm=2)
    server.state.mavera.rate.clock = lambda: 1_000.0  # all in one instant of the minute window
    client = sdk(server)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError) as broke:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert broke.value.status_code == 402 and broke.value.code == "credits_exhausted"
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["Retry-After"]
