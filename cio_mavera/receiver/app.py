"""The webhook receiver: a Starlette app that verifies, validates and durably enqueues, then answers.

Customer.io waits 4 s and retries for days (reference §5.1), so this path does nothing slow: the
worker does enrichment and research later. The POST endpoint is a plain ASGI callable so it can count
the body while it streams in (the 413 cap holds without a Content-Length) and stay cheap per request.

A correctly signed body is never refused: Customer.io holds back every later webhook behind one it
has to retry. What the parser cannot use (or the queue cannot store) is committed as a dead letter
and answered 200; only unsigned, stale, oversized or badly signed requests get 4xx, and 503 only
when nothing can be committed at all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..customerio.webhooks import MalformedWebhook, parse_event, parse_timestamp, verify_signature
from ..errors import ConfigError
from ..settings import Secret
from .metrics import CONTENT_TYPE, ReceiverMetrics
from .queues import DeadLetter, EventRejected, QueueUnavailable, WebhookQueue

log = logging.getLogger("cio_mavera.receiver")

WEBHOOK_PATH = "/webhooks/customerio"
DEFAULT_TOLERANCE_S = 300
# Bodies with `with_content` on carry whole rendered emails; 1 MiB leaves room for large HTML.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_JSON = (b"content-type", b"application/json")


async def _respond(send: Callable, status: int, payload: dict, extra: list | None = None) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WebhookEndpoint:
    """ASGI endpoint for `POST /webhooks/customerio`."""

    def __init__(self, queue: WebhookQueue, secret: bytes | None, *, tolerance_s: float,
                 max_body_bytes: int, metrics: ReceiverMetrics, clock: Callable[[], float]) -> None:
        self.queue = queue
        self._secret = secret
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.clock = clock

    async def _reject(self, send: Callable, status: int, reason: str, message: str) -> None:
        self.metrics.reject(reason)
        log.debug("rejected webhook: %s", reason)  # never the signature, timestamp header or body
        await _respond(send, status, {"error": reason, "message": message})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        self.metrics.received += 1
        content_length = timestamp_header = signature = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == b"x-cio-timestamp":
                timestamp_header = value
            elif name == b"x-cio-signature":
                signature = value
        limit = self.max_body_bytes
        if content_length is not None and (not content_length.isdigit() or int(content_length) > limit):
            return await self._reject(send, 413, "too_large", f"body over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing was stored
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self._reject(send, 413, "too_large", f"body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        if self._secret is not None:
            if timestamp_header is None or signature is None:
                return await self._reject(send, 401, "missing_signature",
                                          "X-CIO-Timestamp and X-CIO-Signature are required")
            ts_text = timestamp_header.decode("latin-1")
            timestamp = parse_timestamp(ts_text)
            if timestamp is None:
                return await self._reject(send, 401, "bad_timestamp", "X-CIO-Timestamp is not unix seconds")
            if not verify_signature(self._secret, ts_text.strip(), body, signature.decode("latin-1")):
                return await self._reject(send, 401, "bad_signature", "signature does not match")
            if abs(self.clock() - timestamp) > self.tolerance_s:
                return await self._reject(send, 401, "stale_timestamp",
                                          f"timestamp outside the {self.tolerance_s:g} s tolerance")
        received_at = self.clock()
        try:
            event = parse_event(body)
        except MalformedWebhook as exc:
            return await self._dead_letter(send, body, exc.code, str(exc), received_at, exc.event_id)
        except Exception as exc:  # a parser bug must not turn a signed body into a retry loop
            log.exception("the webhook parser failed on a signed body")
            return await self._dead_letter(send, body, "parser_error", f"{type(exc).__name__}: {exc}",
                                           received_at)
        try:
            is_new = await self.queue.enqueue(event.event_id, body, received_at)
        except EventRejected as exc:
            return await self._dead_letter(send, body, "queue_refused", str(exc), received_at, event.event_id)
        except QueueUnavailable as exc:
            return await self._unavailable(send, exc)
        if is_new:
            self.metrics.accepted += 1
            return await _respond(send, 200, {"status": "accepted", "event_id": event.event_id})
        self.metrics.duplicates += 1
        await _respond(send, 200, {"status": "duplicate", "event_id": event.event_id})

    async def _dead_letter(self, send: Callable, body: bytes, reason: str, detail: str, received_at: float,
                           event_id: str | None = None) -> None:
        """Commit a signed body the parser or the queue could not use, then acknowledge it."""
        letter = DeadLetter.of(body, reason, detail, stage="receiver", received_at=received_at,
                               event_id=event_id)
        try:
            await self.queue.enqueue_dead(letter)
        except QueueUnavailable as exc:
            return await self._unavailable(send, exc)
        self.metrics.dead_letter(reason)
        log.warning("dead-lettered a signed webhook (%s): %s", reason, letter.detail)
        await _respond(send, 200, {"status": "dead_lettered", "reason": reason})

    async def _unavailable(self, send: Callable, exc: QueueUnavailable) -> None:
        self.metrics.reject("queue_unavailable")
        log.error("webhook not stored, answering 503 so Customer.io retries: %s", exc)
        await _respond(send, 503, {"error": "queue_unavailable", "message": "retry later"},
                       [(b"retry-after", b"5")])


class ReceiverApp(Starlette):
    """Starlette app whose webhook POST skips routing and middleware (the hot path, ~20% cheaper)."""

    webhook: WebhookEndpoint

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == WEBHOOK_PATH:
            return await self.webhook(scope, receive, send)  # an unexpected error: uvicorn answers 500
        await super().__call__(scope, receive, send)


def _secret_bytes(secret: str | bytes | Secret | None) -> bytes | None:
    if isinstance(secret, Secret):
        secret = secret.reveal()
    if isinstance(secret, str):
        secret = secret.encode()
    return secret or None


def create_app(queue: WebhookQueue, secret: str | bytes | Secret | None, *,
               tolerance_s: float = DEFAULT_TOLERANCE_S, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               verify: bool = True, clock: Callable[[], float] = time.time) -> Starlette:
    """The receiver ASGI app; `verify=False` skips signature checks (only for local experiments)."""
    key = _secret_bytes(secret)
    if verify and key is None:
        raise ConfigError(
            "the webhook receiver needs CIO_WEBHOOK_SECRET (the reporting webhook's signing key) "
            "to verify X-CIO-Signature; pass verify=False / --insecure-skip-verify only for local tests"
        )
    if tolerance_s <= 0 or max_body_bytes <= 0:
        raise ConfigError("tolerance_s and max_body_bytes must be positive")
    if not verify:
        log.warning("WEBHOOK SIGNATURE VERIFICATION IS OFF: anyone who can reach this port can inject events")
    metrics = ReceiverMetrics()
    endpoint = WebhookEndpoint(queue, key if verify else None, tolerance_s=tolerance_s,
                               max_body_bytes=max_body_bytes, metrics=metrics, clock=clock)

    async def healthz(request: Request) -> Response:
        """200 only when the queue just committed (a probe through the SQLite writer, PING on Redis)."""
        try:
            await queue.ping()
            depth = await run_in_threadpool(queue.depth)
            dead = await run_in_threadpool(queue.dead_count)
        except QueueUnavailable as exc:
            return JSONResponse({"status": "queue_unavailable", "queue": queue.backend, "reason": str(exc)},
                                status_code=503)
        return JSONResponse({"status": "ok", "queue": queue.backend, "depth": depth, "dead_letters": dead,
                             "verify": verify})

    async def metrics_page(request: Request) -> Response:
        depth: int | None = None
        dead: int | None = None
        try:
            await queue.ping()
            depth = await run_in_threadpool(queue.depth)
            dead = await run_in_threadpool(queue.dead_count)
        except QueueUnavailable:
            pass
        return Response(metrics.render(depth, queue.backend, dead), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await queue.aclose()  # the SQLite writer finishes its last group commit first

    app = ReceiverApp(
        routes=[
            Route(WEBHOOK_PATH, endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.webhook = endpoint
    app.state.metrics = metrics
    app.state.queue = queue
    return app
