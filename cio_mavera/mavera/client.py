"""The Mavera client: chat, responses, personas, Mave, generations, focus groups, usage.

Every request goes through one path (`_call`): PII guard, response cache, credit budget, the shared
HTTP layer (tier window, header gate, retries), then the credits ledger. Endpoint methods are "build
the body, parse the answer".
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import httpx

from ..connect import Connection
from ..errors import ApiError, ConfigError, ServerError
from ..http import HttpClient, RetryPolicy
from ..pii import contains_pii
from .budget import DEFAULT_WORST_CASE, CreditBudget, Reservation
from .errors import (
    SERVICE,
    DuplicateName,
    FocusGroupTimeout,
    PiiBlocked,
    StructuredOutputError,
    mavera_error,
)
from .ledger import CreditsLedger
from .models import (
    ChatResult,
    FocusGroupResult,
    GenerationResult,
    MaveResult,
    ResponseResult,
    credits_of,
)
from .ratelimit import GateTransport, held, limits_for
from .response_cache import ResponseCache, request_key

log = logging.getLogger("cio_mavera.mavera")

DEFAULT_MODEL = "mavera-1"
# The reference's retry advice: 429, 500 and 503 only (plus connection errors, in HttpClient).
RETRY = RetryPolicy(retry_statuses=frozenset({429, 500, 503}))
# Mave answers take 5-30 s, first answers up to 90 s (quickstart).
DEFAULT_TIMEOUT_S = 120.0
FOCUS_GROUP_DONE = {"completed", "complete", "succeeded"}
FOCUS_GROUP_FAILED = {"failed", "error", "cancelled", "canceled"}
_PAGE_LIMIT = 100  # documented max page size
# Creating a persona is retried only after a lookup confirmed the failed attempt created nothing.
CREATE_ATTEMPTS = 3


def _new_run_id() -> str:
    return f"adhoc-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def _messages(messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class MaveraClient:
    """A Mavera API client for one run: cached, budgeted, rate-limited, and accounted in the ledger."""

    def __init__(
        self,
        connection: Connection,
        *,
        run_id: str | None = None,
        job: str | None = None,
        budget: CreditBudget | None = None,
        use_cache: bool = True,
        refresh: bool = False,
        rpm: int | None = None,
        ledger: CreditsLedger | None = None,
        pii_guard: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 32,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = connection.settings
        if not settings.mavera_key:
            raise ConfigError("MAVERA_API_KEY is not set; put it in .env (see .env.example) or use "
                              "CIO_MAVERA_MODE=sandbox to run against the local sandbox")
        key = settings.mavera_key.reveal()
        self.connection = connection
        self.run_id = run_id or _new_run_id()
        self.job = job or ""
        self.budget = budget
        self.use_cache = use_cache
        self.refresh = refresh
        self.pii_guard = pii_guard
        self.base_url = settings.mavera_url
        self.rpm = int(rpm or settings.mavera_rpm)
        self.limits = limits_for(key, self.rpm, data_dir=settings.data_dir,
                                 redis_url=settings.redis_url)
        self.cache = ResponseCache(connection.cache_dir / "mavera")
        self.ledger = ledger or CreditsLedger(settings.data_dir, connection.mode)
        pool = httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections)
        inner = transport or httpx.HTTPTransport(limits=pool)
        self.http = HttpClient(
            service=SERVICE,
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            secrets=settings.secrets(),
            limiter=self.limits.limiter,
            retry=RETRY,
            timeout_s=timeout_s,
            max_connections=max_connections,
            error_factory=mavera_error,
            transport=GateTransport(inner, self.limits.gate),
        )
        self._locks_dir = connection.cache_dir / "mavera" / "locks"

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the ledger and close the connection pool."""
        try:
            self.ledger.flush()
        finally:
            self.http.close()

    def __enter__(self) -> MaveraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def credits_spent(self) -> int:
        """Credits this run has spent so far (cached calls count 0)."""
        return self.ledger.credits_spent(self.run_id)

    @property
    def stats(self) -> dict[str, Any]:
        """Requests made, retries, 429s, seconds waited, cache hits and misses."""
        return {**self.http.stats.snapshot(), "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses,
                "gate_waited_s": round(self.limits.gate.waited_s, 3)}

    # -- the one request path ----------------------------------------------------------------

    def _guard(self, endpoint: str, body: Any) -> None:
        if not self.pii_guard or body is None:
            return
        findings = contains_pii(body)
        if findings:
            shown = ", ".join(findings[:5]) + (f" and {len(findings) - 5} more" if len(findings) > 5 else "")
            raise PiiBlocked(
                f"refused to send {endpoint} to Mavera: customer PII (email/phone) at {shown}; "
                "remove it first (cio_mavera.pii.strip_pii) -- only aggregates and persona "
                "descriptions may leave the machine", findings=findings)

    def _record(self, endpoint: str, credits: int, *, cached: bool) -> None:
        self.ledger.record(run=self.run_id, job=self.job, endpoint=endpoint, credits=credits,
                           cached=cached)

    def _safe_flush(self) -> None:
        try:
            self.ledger.flush()
        except OSError as exc:
            log.warning("could not flush the credits ledger: %s", exc)

    def _cache_key(self, method: str, path: str, body: Any) -> str | None:
        if not self.use_cache:
            return None
        return request_key(method, path, body, self.base_url)

    def _cached(self, endpoint: str, key: str | None) -> Any | None:
        if key is None or self.refresh:
            return None
        hit = self.cache.get(key)
        if hit is not None:
            self._record(endpoint, 0, cached=True)
            log.debug("mavera %s served from cache", endpoint)
        return hit

    def _reserve(self, cost: str | None, what: str, multiplier: int = 1) -> Reservation | None:
        if self.budget is None or cost is None:
            return None
        return self.budget.reserve(cost, what, multiplier=multiplier)

    def _send(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
              idempotent: bool | None = None,
              slot: threading.BoundedSemaphore | None = None) -> httpx.Response:
        if slot is None:
            return self.http.request(method, path, params=params, json=body, idempotent=idempotent)
        with held(slot):
            return self.http.request(method, path, params=params, json=body, idempotent=idempotent)

    def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        cost: str | None = None,
        multiplier: int = 1,
        what: str = "",
        cacheable: bool = False,
        idempotent: bool | None = None,
        slot: threading.BoundedSemaphore | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Send one request through guard, cache, budget and ledger; return (JSON body, was_cached)."""
        self._guard(endpoint, body)
        key = self._cache_key(method, path, body) if cacheable else None
        hit = self._cached(endpoint, key)
        if hit is not None:
            return hit, True
        reservation = self._reserve(cost, what or endpoint, multiplier)
        try:
            response = self._send(method, path, body=body, params=params, idempotent=idempotent,
                                  slot=slot)
            data = self._json(response, endpoint)
        except BaseException:
            if reservation is not None:
                self.budget.release(reservation)  # type: ignore[union-attr]
            self._safe_flush()  # a run stopped here keeps the calls it already made
            raise
        credits = credits_of(data)
        if reservation is not None:
            self.budget.settle(reservation, credits)  # type: ignore[union-attr]
        self._record(endpoint, credits, cached=False)
        if check is not None:
            check(data)  # an answer that fails its check is paid for but never cached
        if key is not None:
            self.cache.put(key, data, endpoint=endpoint)
        return data, False

    @staticmethod
    def _json(response: httpx.Response, endpoint: str) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise ApiError(f"Mavera {endpoint} answered {response.status_code} with a body that is "
                           "not JSON", service=SERVICE, status=response.status_code) from None
        return data if isinstance(data, dict) else {"data": data}

    def _paged(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> list[dict]:
        """Every item of a list endpoint: follows `next_cursor`, else `offset` while `has_more`."""
        base = {"limit": _PAGE_LIMIT, **(params or {})}
        items: list[dict] = []
        page_params = dict(base)
        seen: set[str] = set()
        while True:
            data, _ = self._call(endpoint, "GET", path, params=page_params)
            page = data.get("data") or []
            items.extend(page)
            cursor = data.get("next_cursor")
            if cursor and cursor not in seen:
                seen.add(cursor)
                page_params = {**base, "cursor": cursor}
            elif data.get("has_more") and page and not cursor:
                offset = int(data.get("offset") or page_params.get("offset") or 0) + len(page)
                page_params = {**base, "offset": offset}
            else:
                return items

    # -- chat and responses --------------------------------------------------------------------

    def _chat_body(self, messages: str | Sequence[Mapping[str, Any]], persona_id: str | None,
                   model: str, temperature: float | None, extra: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": _messages(messages)}
        if persona_id:
            body["persona_id"] = persona_id
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra)
        return body

    def chat(self, messages: str | Sequence[Mapping[str, Any]], *, persona_id: str | None = None,
             model: str = DEFAULT_MODEL, temperature: float | None = None, stream: bool = False,
             **extra: Any) -> ChatResult:
        """One chat completion (optionally as a persona); `stream=True` assembles the SSE stream."""
        if stream:
            body = self._chat_body(messages, persona_id, model, temperature, {**extra, "stream": True})
            chunks = self._stream_chat(body)
            while True:
                try:
                    next(chunks)
                except StopIteration as done:
                    return done.value
        body = self._chat_body(messages, persona_id, model, temperature, extra)
        data, cached = self._call("chat.completions", "POST", "/chat/completions", body=body,
                                  cost="chat", cacheable=True, idempotent=True)
        return _chat_result(data, cached)

    def chat_stream(self, messages: str | Sequence[Mapping[str, Any]], *,
                    persona_id: str | None = None, model: str = DEFAULT_MODEL,
                    temperature: float | None = None, **extra: Any) -> Iterator[str]:
        """Yield the text chunks of a streamed chat completion (SSE ending in `[DONE]`).

        Chunks are yielded as the server sends them; the assembled answer is cached like `chat`,
        so a re-run replays it as one chunk without a request.
        """
        body = self._chat_body(messages, persona_id, model, temperature, {**extra, "stream": True})
        yield from self._stream_chat(body)

    def _stream_chat(self, body: dict[str, Any]) -> Generator[str, None, ChatResult]:
        endpoint = "chat.completions"
        self._guard(endpoint, body)
        key = self._cache_key("POST", "/chat/completions", body)
        hit = self._cached(endpoint, key)
        if hit is not None:
            result = _chat_result(hit, True)
            yield result.content
            return result
        reservation = self._reserve("chat", endpoint)
        parts: list[str] = []
        usage: dict[str, Any] = {}
        try:
            with self.http.stream("POST", "/chat/completions", json=body, idempotent=True) as response:
                for event in _sse_events(response.iter_lines()):
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            parts.append(piece)
                            yield piece
        except GeneratorExit:
            # The caller stopped reading: the server has already charged, so book the worst case.
            worst = (self.budget.worst_case if self.budget else DEFAULT_WORST_CASE)["chat"]
            if reservation is not None:
                self.budget.settle(reservation, worst)  # type: ignore[union-attr]
            self._record(endpoint, worst, cached=False)
            raise
        except BaseException:
            if reservation is not None:
                self.budget.release(reservation)  # type: ignore[union-attr]
            self._safe_flush()
            raise
        if usage.get("credits_used") is None:
            # The docs do not say whether a stream reports usage; assume the worst case, not zero.
            worst = (self.budget.worst_case if self.budget else DEFAULT_WORST_CASE)["chat"]
            usage = {**usage, "credits_used": worst}
            log.info("streamed chat reported no usage; the ledger records the worst case")
        data = {"object": "chat.completion", "model": body.get("model"), "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                             "finish_reason": "stop"}]}
        credits = credits_of(data)
        if reservation is not None:
            self.budget.settle(reservation, credits)  # type: ignore[union-attr]
        self._record(endpoint, credits, cached=False)
        if key is not None:
            self.cache.put(key, data, endpoint=endpoint)
        return _chat_result(data, False)

    def respond(self, input: str | Sequence[Mapping[str, Any]], *, persona_id: str | None = None,
                schema: Mapping[str, Any] | None = None, schema_name: str = "result",
                model: str = DEFAULT_MODEL, instructions: str | None = None,
                temperature: float | None = None) -> ResponseResult:
        """One Responses-API answer; with `schema`, `.parsed` is the validated JSON object."""
        body: dict[str, Any] = {"model": model,
                                "input": input if isinstance(input, str) else _messages(input)}
        if persona_id:
            body["persona_id"] = persona_id
        if instructions:
            body["instructions"] = instructions
        if temperature is not None:
            body["temperature"] = temperature
        if schema is not None:
            body["text"] = {"format": {"type": "json_schema", "name": schema_name,
                                       "schema": dict(schema), "strict": True}}

        def check(data: dict[str, Any]) -> None:
            if schema is not None:
                _parse_structured(data, schema, schema_name)

        data, cached = self._call("responses", "POST", "/responses", body=body, cost="responses",
                                  cacheable=True, idempotent=True, check=check)
        parsed = _parse_structured(data, schema, schema_name) if schema is not None else None
        usage = data.get("usage") or {}
        return ResponseResult(_output_text(data), parsed, usage, credits_of(data), data, cached)

    # -- personas ------------------------------------------------------------------------------

    def list_personas(self, search: str | None = None) -> list[dict[str, Any]]:
        """Every persona (base and custom) visible to the key, optionally filtered by `search`."""
        return self._paged("personas.list", "/personas", {"search": search} if search else None)

    def get_persona(self, persona_id: str) -> dict[str, Any]:
        """One persona by id (raises NotFound)."""
        data, _ = self._call("personas.get", "GET", f"/personas/{persona_id}")
        return data

    def find_persona(self, name: str) -> dict[str, Any] | None:
        """The persona named `name` (case- and space-insensitive), preferring custom ones, or None."""
        listed = self.list_personas(search=" ".join(name.split()))
        matches = [p for p in listed if _same_name(str(p.get("name", "")), name)]
        if not matches:
            return None
        matches.sort(key=lambda p: (not p.get("is_custom", False), p.get("created_at") or 0,
                                    str(p.get("id"))))
        return matches[0]

    def create_persona(self, **fields: Any) -> dict[str, Any]:
        """Create a custom persona (300 credits). Prefer `ensure_persona`, which never duplicates."""
        # The reference's create example always names a pipeline; north_star needs only name and
        # description. Callers may pass another pipeline_type.
        body = {"pipeline_type": "north_star", **fields}
        data, _ = self._call("personas.create", "POST", "/personas", body=body, cost="persona",
                             what=f"persona {fields.get('name')!r}", idempotent=False)
        return data

    def update_persona(self, persona_id: str, **fields: Any) -> dict[str, Any]:
        """Update a custom persona's fields (base personas are read-only: Forbidden)."""
        data, _ = self._call("personas.update", "PATCH", f"/personas/{persona_id}", body=fields,
                             cost="persona_update", what=f"persona {persona_id}", idempotent=True)
        return data

    def ensure_persona(self, name: str, **fields: Any) -> tuple[dict[str, Any], bool]:
        """The persona named `name`, created only if absent and updated if its fields changed.

        Returns (persona, created). Looks up by name first and holds a per-name lock across
        processes; when the creating POST fails in a way that may have reached the server, it looks
        up again and retries only if nothing was created, so a retry or re-run never makes a
        duplicate or pays 300 credits twice.
        """
        with self._name_lock(name):
            existing = self.find_persona(name)
            if existing is not None:
                return self._update_if_changed(existing, fields), False
            for attempt in range(1, CREATE_ATTEMPTS + 1):
                try:
                    return self.create_persona(name=name, **fields), True
                except DuplicateName:
                    found = self.find_persona(name)
                    if found is None:
                        raise
                    return self._update_if_changed(found, fields), False
                except ServerError as exc:
                    # The POST may or may not have reached the server: only a lookup can tell.
                    found = self.find_persona(name)
                    if found is not None:
                        self._charge_lost_creation(name, exc)
                        return found, True
                    if attempt == CREATE_ATTEMPTS:
                        raise
                    log.warning("creating persona %r failed (%s) and it does not exist; retrying",
                                name, type(exc).__name__)
                    time.sleep(RETRY.backoff(attempt))
            raise AssertionError("unreachable")  # pragma: no cover

    def _charge_lost_creation(self, name: str, exc: Exception) -> None:
        """Account a creation whose response was lost: the server charged it all the same."""
        charged = (self.budget.worst_case if self.budget else DEFAULT_WORST_CASE)["persona"]
        if self.budget is not None:
            self.budget.charge(charged)
        self._record("personas.create", charged, cached=False)
        log.warning("persona %r was created although the response was lost (%s); reusing it",
                    name, type(exc).__name__)

    def _update_if_changed(self, persona: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        changes = self._persona_changes(persona, fields)
        if not changes or not persona.get("is_custom", True):
            return persona
        log.info("updating persona %s: %s changed", persona.get("id"), ", ".join(sorted(changes)))
        return self.update_persona(str(persona["id"]), **changes)

    def _persona_changes(self, persona: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        """The fields whose value differs from what the server holds.

        Fields the server does not echo back (neither top-level nor in `details`) cannot be compared
        and are left alone, so a re-run does not PATCH on every call.
        """
        if any(k not in persona for k in fields) and "details" not in persona and persona.get("id"):
            # GET /personas/{id} is NOT FOUND in the docs; without it only listed fields compare.
            with suppress(ApiError):
                persona = {**persona, **self.get_persona(str(persona["id"]))}
        details = persona.get("details") if isinstance(persona.get("details"), dict) else {}
        changes = {}
        for name, wanted in fields.items():
            if name in persona:
                held_value = persona[name]
            elif name in details:
                held_value = details[name]
            else:
                continue
            if _normalise(held_value) != _normalise(wanted):
                changes[name] = wanted
        return changes

    @contextmanager
    def _name_lock(self, name: str) -> Iterator[None]:
        """Serialise ensure_persona for one name across threads and processes on this machine."""
        digest = hashlib.sha256(" ".join(name.split()).casefold().encode()).hexdigest()[:16]
        self._locks_dir.mkdir(parents=True, exist_ok=True)
        with _thread_lock(digest):
            fd = os.open(self._locks_dir / f"persona-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    # -- Mave ----------------------------------------------------------------------------------

    def mave(self, message: str, *, thread_id: str | None = None,
             workspace_id: str | None = None) -> MaveResult:
        """Ask the Mave research agent; pass `thread_id` to continue a thread."""
        body: dict[str, Any] = {"message": message}
        if thread_id:
            body["thread_id"] = thread_id
        if workspace_id:
            body["workspace_id"] = workspace_id
        # Not retried once it may have reached the server: a repeat is another charge and message.
        data, cached = self._call("mave.chat", "POST", "/mave/chat", body=body, cost="mave",
                                  what=message[:60], cacheable=True, idempotent=False,
                                  slot=self.limits.mave)
        return MaveResult(
            content=str(data.get("content") or ""),
            sources=list(data.get("sources") or []),
            personas_used=list(data.get("personas_used") or []),
            validation=data.get("validation"),
            thread_id=data.get("thread_id"),
            credits=credits_of(data),
            raw=data,
            cached=cached,
        )

    def list_threads(self) -> list[dict[str, Any]]:
        """Every Mave thread of the key's default workspace."""
        return self._paged("mave.threads", "/mave/threads")

    def get_thread(self, thread_id: str) -> dict[str, Any]:
        """One Mave thread with its messages, sources and personas used."""
        data, _ = self._call("mave.thread", "GET", f"/mave/threads/{thread_id}")
        return data

    # -- generations ---------------------------------------------------------------------------

    def generation_apps(self) -> list[dict[str, Any]]:
        """The generation templates ("apps") and their input fields."""
        data, _ = self._call("generation_apps", "GET", "/generation-apps")
        return list(data.get("data") or [])

    def generate(self, app_id: str, inputs: Mapping[str, Any], *, n: int = 1,
                 persona_id: str | None = None, brand_voice_id: str | None = None,
                 title: str | None = None) -> GenerationResult:
        """Run a generation app on `inputs`, asking for `n` variations."""
        body: dict[str, Any] = {"app_id": app_id, "input_data": dict(inputs)}
        if n != 1:
            # UNVERIFIED: the reference has no variation-count field; `n` follows the OpenAI name.
            body["n"] = n
        for name, value in (("persona_id", persona_id), ("brand_voice_id", brand_voice_id),
                            ("title", title)):
            if value:
                body[name] = value
        data, cached = self._call("generations", "POST", "/generations", body=body,
                                  cost="generation", what=app_id, cacheable=True, idempotent=False)
        return GenerationResult(data.get("id"), _variations(data), credits_of(data), data, cached)

    # -- focus groups --------------------------------------------------------------------------

    def focus_group(self, persona_ids: Sequence[str],
                    questions: Sequence[str | Mapping[str, Any]] = (), *,
                    stimuli: Sequence[str | Mapping[str, Any]] = (), name: str | None = None,
                    workspace_id: str | None = None, sample_size: int | None = None,
                    timeout_s: float = 120.0, poll_s: float = 2.0) -> FocusGroupResult:
        """Run a focus group on `stimuli` (texts to judge) with `questions`; poll until completed.

        Bare-string questions become 1-10 rating questions. Raises FocusGroupTimeout (naming the
        id, for `get_focus_group`) if it is not completed within `timeout_s`. The wire schema is an
        assumption (the reference found no focus-group API page): see `_focus_group_body`.
        """
        body = _focus_group_body(persona_ids, questions, stimuli, name, workspace_id, sample_size)
        endpoint = "focus_groups"
        self._guard(endpoint, body)
        key = self._cache_key("POST", "/focus-groups", body)
        hit = self._cached(endpoint, key)
        if hit is not None:
            return _focus_group_result(hit, cached=True)
        reservation = self._reserve("focus_group", name or "focus group")
        charged = 0
        try:
            with held(self.limits.focus_groups):
                created, _ = self._call("focus_groups.create", "POST", "/focus-groups", body=body,
                                        idempotent=False)
                charged = credits_of(created)
                data = self._poll_focus_group(str(created.get("id")), created, timeout_s, poll_s)
                charged = max(charged, credits_of(data))
        except FocusGroupTimeout:
            raise  # the reservation stays held: the group may still finish and be charged
        except BaseException:
            if reservation is not None:
                self.budget.settle(reservation, charged)  # type: ignore[union-attr]
            raise
        if reservation is not None:
            self.budget.settle(reservation, charged)  # type: ignore[union-attr]
        if key is not None:
            self.cache.put(key, data, endpoint=endpoint)
        return _focus_group_result(data, cached=False, credits=charged)

    def get_focus_group(self, focus_group_id: str) -> dict[str, Any]:
        """A focus group's current state and, once completed, its results."""
        data, _ = self._call("focus_groups.get", "GET", f"/focus-groups/{focus_group_id}")
        return data

    def _poll_focus_group(self, group_id: str, created: dict[str, Any], timeout_s: float,
                          poll_s: float) -> dict[str, Any]:
        charged = credits_of(created)
        deadline = time.monotonic() + timeout_s
        data = created
        while str(data.get("status", "")).lower() not in FOCUS_GROUP_DONE:
            status = str(data.get("status", "")).lower()
            if status in FOCUS_GROUP_FAILED:
                raise ApiError(f"Mavera focus group {group_id} {status}: {data.get('error')}",
                               service=SERVICE, body=data)
            if time.monotonic() + poll_s > deadline:
                raise FocusGroupTimeout(
                    f"focus group {group_id} still {status or 'pending'} after {timeout_s:.0f}s; "
                    f"fetch it later with client.get_focus_group({group_id!r}) or pass a longer "
                    "timeout_s", focus_group_id=group_id, status=status)
            time.sleep(poll_s)
            data = self.get_focus_group(group_id)
        # Credits may be reported at creation, on the result, or both (same figure): count once.
        extra = max(0, credits_of(data) - charged)
        if extra:
            self._record("focus_groups.result", extra, cached=False)
        return data

    # -- usage ---------------------------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        """The billing period's usage: credits used/remaining, requests, the key's rate limit."""
        data, _ = self._call("usage", "GET", "/usage")
        return data


# -- parsing helpers -------------------------------------------------------------------------

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def _thread_lock(name: str) -> Iterator[None]:
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(name, threading.Lock())
    with lock:
        yield


def _normalise(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream's `data:` lines, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _chat_result(data: dict[str, Any], cached: bool) -> ChatResult:
    choices = data.get("choices") or [{}]
    content = ((choices[0] or {}).get("message") or {}).get("content") or ""
    return ChatResult(str(content), dict(data.get("usage") or {}), credits_of(data), data, cached)


def _output_text(data: dict[str, Any]) -> str:
    if isinstance(data.get("output_text"), str):
        return data["output_text"]
    texts = []
    for item in data.get("output") or []:
        for part in (item or {}).get("content") or []:
            if (part or {}).get("type") in ("output_text", "text") and part.get("text") is not None:
                texts.append(str(part["text"]))
    return "".join(texts)


def _parse_structured(data: dict[str, Any], schema: Mapping[str, Any] | None,
                      schema_name: str) -> dict[str, Any]:
    """The structured output as a dict, with the schema's required keys present."""
    parsed = data.get("output_parsed")
    if not isinstance(parsed, dict):
        text = _output_text(data)
        try:
            parsed = json.loads(text)
        except ValueError:
            raise StructuredOutputError(
                f"Mavera's answer for schema {schema_name!r} is not JSON: {text[:120]!r}") from None
    if not isinstance(parsed, dict):
        raise StructuredOutputError(f"Mavera's answer for schema {schema_name!r} is a "
                                    f"{type(parsed).__name__}, not an object")
    required = list((schema or {}).get("required") or [])
    missing = [k for k in required if k not in parsed]
    if missing:
        raise StructuredOutputError(f"Mavera's answer for schema {schema_name!r} lacks required "
                                    f"key(s) {missing}")
    return parsed


def _variations(data: dict[str, Any]) -> list[str]:
    found = data.get("variations")
    if isinstance(found, list) and found:
        return [str(v.get("content") or v.get("output") or "") if isinstance(v, dict) else str(v)
                for v in found]
    # Old generation shape used `markdown`; the new one `output` and `content`.
    for name in ("content", "output", "markdown"):
        if data.get(name):
            return [str(data[name])]
    return []


def _focus_group_body(persona_ids: Sequence[str], questions: Sequence[str | Mapping[str, Any]],
                      stimuli: Sequence[str | Mapping[str, Any]], name: str | None,
                      workspace_id: str | None, sample_size: int | None) -> dict[str, Any]:
    """The create body. ASSUMPTION (reference §7 emulator suggestion): {name, workspace_id,
    persona_ids, questions: [{type, text, options?}], stimuli: [{id?, text}], sample_size}."""
    body: dict[str, Any] = {
        "name": name or "cio-mavera focus group",
        "persona_ids": list(persona_ids),
        "questions": [{"type": "rating", "text": q} if isinstance(q, str) else dict(q)
                      for q in questions],
    }
    if stimuli:
        body["stimuli"] = [s if isinstance(s, str) else dict(s) for s in stimuli]
    for field_name, value in (("workspace_id", workspace_id), ("sample_size", sample_size)):
        if value is not None:
            body[field_name] = value
    return body


def _focus_group_result(data: dict[str, Any], *, cached: bool,
                        credits: int | None = None) -> FocusGroupResult:
    results = data.get("results") or {}
    questions = list(results.get("questions") or []) if isinstance(results, dict) else []
    stimuli = list(results.get("stimuli") or []) if isinstance(results, dict) else []
    responses = []
    for question in questions:
        for answer in question.get("responses") or []:
            responses.append({"question": question.get("question") or question.get("text"),
                              "type": question.get("type"), **answer})
    if credits is None:
        credits = credits_of(data) or int(data.get("credits_used") or 0)
    return FocusGroupResult(str(data.get("id")), str(data.get("status")), questions, responses,
                            stimuli, credits, data, cached)
