"""HTTP layer: retries, Retry-After, idempotency, accounting and redaction.

These use httpx.MockTransport because they script exact sequences (an HTTP-date Retry-After, a
refused connection) that the sandbox cannot produce on demand; the sandbox integration tests cover
the same layer over real loopback.
"""

import email.utils
import logging
import socket
import time

import httpx
import pytest

from cio_mavera.errors import ApiError, AuthError, RateLimited, ServerError, Unreachable
from cio_mavera.http import HttpClient, RetryPolicy, redact, retry_after_seconds

FAST = RetryPolicy(max_retries=3, backoff_base_s=0.001, backoff_cap_s=0.002)
SECRET = "sk_live_0123456789abcdef"


def scripted(*responses):
    """A transport that answers with `responses` in order and records the requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def client(transport, **kw):
    kw.setdefault("sleep", lambda seconds: None)  # retries pause in the test's time, not real time
    return HttpClient(service="test", base_url="http://api.test", transport=transport,
                      retry=FAST, secrets=[SECRET], **kw)


def test_get_retries_on_503_then_succeeds():
    transport, seen = scripted(httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"ok": 1}))
    with client(transport) as http:
        assert http.get_json("/x") == {"ok": 1}
        assert len(seen) == 3
        assert http.stats.snapshot()["retries"] == 2


def test_gives_up_after_max_retries_with_a_server_error():
    transport, seen = scripted(*[httpx.Response(500)] * 4)
    with client(transport) as http, pytest.raises(ServerError, match=r"after 4 attempts"):
        http.get_json("/x")
    assert len(seen) == 4


def test_other_4xx_is_never_retried():
    transport, seen = scripted(httpx.Response(400, text="bad filter"))
    with client(transport) as http, pytest.raises(ApiError, match="bad filter"):
        http.get_json("/x")
    assert len(seen) == 1


def test_401_maps_to_auth_error():
    transport, _ = scripted(httpx.Response(401, json={"errors": [{"detail": "unauthorized"}]}))
    with client(transport) as http, pytest.raises(AuthError):
        http.get_json("/x")


def test_post_is_not_retried_after_a_5xx_that_may_have_created_something():
    transport, seen = scripted(httpx.Response(503), httpx.Response(200, json={}))
    with client(transport) as http, pytest.raises(ServerError):
        http.post_json("/create", {"name": "x"})
    assert len(seen) == 1


def test_post_is_retried_after_429_because_the_server_refused_it():
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={"id": 1}))
    with client(transport) as http:
        assert http.post_json("/create", {"name": "x"}) == {"id": 1}
    assert len(seen) == 2


def test_post_marked_idempotent_is_retried_on_5xx():
    transport, seen = scripted(httpx.Response(502), httpx.Response(200, json={"customers": []}))
    with client(transport) as http:
        assert http.post_json("/search", {"filter": {}}, idempotent=True) == {"customers": []}
    assert len(seen) == 2


def test_refused_connection_is_retried_even_for_post():
    refused = httpx.ConnectError("connection refused")
    transport, seen = scripted(refused, httpx.Response(200, json={"id": 2}))
    with client(transport) as http:
        assert http.post_json("/create", {})["id"] == 2
    assert len(seen) == 2


def test_read_timeout_on_post_is_not_retried_and_says_why():
    transport, seen = scripted(httpx.ReadTimeout("slow"), httpx.Response(200, json={}))
    with client(transport) as http, pytest.raises(ServerError, match="may have reached the server"):
        http.post_json("/create", {})
    assert len(seen) == 1


def test_retry_after_is_honoured():
    pauses: list[float] = []
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={}))
    with client(transport, sleep=pauses.append) as http:
        http.get_json("/x")
    assert pauses == [2.0]


def test_retry_after_accepts_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(httpx.Response(429, headers={"Retry-After": when}))
    assert 25 <= seconds <= 31


def test_retry_after_longer_than_the_cap_raises_instead_of_sleeping():
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "86400"}))
    with client(transport) as http, pytest.raises(RateLimited):
        http.get_json("/x")
    assert len(seen) == 1


def test_secrets_are_redacted_from_errors_and_logs(caplog):
    caplog.set_level(logging.DEBUG)
    transport, _ = scripted(httpx.Response(400, text=f"bad key {SECRET} given"))
    with client(transport, headers={"Authorization": f"Bearer {SECRET}"}) as http, \
            pytest.raises(ApiError) as info:
        http.get_json("/x")
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_redact_replaces_every_occurrence():
    assert redact("a SECRETKEY b SECRETKEY", ["SECRETKEY"]) == "a **** b ****"


def test_stats_count_requests_and_429s():
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={}))
    with client(transport) as http:
        http.get_json("/x")
        snap = http.stats.snapshot()
    assert snap["requests"] == 2 and snap["rate_limited"] == 1


def test_log_lines_mask_emails_and_phones_in_paths(caplog):
    caplog.set_level(logging.INFO)
    transport, _ = scripted(httpx.Response(200, json={}), httpx.Response(200, json={}))
    with client(transport) as http:
        http.get_json("/v1/customers/jane.doe@example.com/attributes")
        http.get_json("/v1/customers/+14155550123/attributes")
    assert "jane.doe@example.com" not in caplog.text and "4155550123" not in caplog.text
    assert caplog.text.count("/v1/customers/{personal}/attributes") == 2


def test_stream_hands_out_lines_before_the_body_is_finished():
    produced: list[int] = []

    def body():
        for i in range(3):
            produced.append(i)
            yield f"data: {i}\n".encode()

    transport, _ = scripted(httpx.Response(200, content=body()))
    with client(transport) as http, http.stream("POST", "/chat", json={}) as response:
        lines = response.iter_lines()
        assert next(lines) == "data: 0" and produced == [0]
        assert list(lines) == ["data: 1", "data: 2"]


def test_stream_retries_a_429_before_the_body_starts():
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "0"}, text="slow down"),
                               httpx.Response(200, text="data: ok\n"))
    with client(transport) as http, http.stream("POST", "/chat", json={}) as response:
        assert list(response.iter_lines()) == ["data: ok"]
    assert len(seen) == 2


def test_stream_error_quotes_the_body():
    transport, _ = scripted(httpx.Response(400, text="invalid persona"))
    with client(transport) as http, pytest.raises(ApiError, match="invalid persona"), \
            http.stream("POST", "/chat", json={}):
        pass


def test_retry_after_http_date_is_read_against_the_clients_clock():
    pauses: list[float] = []
    now = 1_700_000_000.0
    when = email.utils.formatdate(now + 30, usegmt=True)
    transport, _ = scripted(httpx.Response(503, headers={"Retry-After": when}), httpx.Response(200, json={}))
    with client(transport, sleep=pauses.append, clock=lambda: now) as http:
        http.get_json("/x")
    assert pauses == [30.0]


def test_limiter_is_acquired_before_every_attempt_and_its_waits_are_counted():
    class CountingLimiter:
        acquired = 0

        def acquire(self) -> float:
            self.acquired += 1
            return 0.5

    limiter = CountingLimiter()
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json={}))
    with client(transport, limiter=limiter) as http:
        http.get_json("/x")
        assert limiter.acquired == 2
        assert http.stats.snapshot()["waited_s"] == 2.0  # two limiter waits and one Retry-After


def test_body_dropped_half_way_is_retried_like_a_dropped_connection():
    def dropped():
        yield b'{"ok":'
        raise httpx.ReadError("connection reset")

    transport, seen = scripted(httpx.Response(200, content=dropped()), httpx.Response(200, json={"ok": 1}))
    with client(transport) as http:
        assert http.get_json("/x") == {"ok": 1}
    assert len(seen) == 2


def _no_such_host() -> httpx.ConnectError:
    """A ConnectError caused, as in httpx, by getaddrinfo's "no such name" answer."""
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as dns:
            raise httpx.ConnectError(str(dns)) from dns
    except httpx.ConnectError as exc:
        return exc


def test_a_host_that_does_not_resolve_fails_at_once_naming_what_to_check():
    transport, seen = scripted(_no_such_host(), httpx.Response(200))
    http = HttpClient(service="customerio-app", base_url="https://api.eu.customer.io/v1",
                      transport=transport, retry=FAST, sleep=lambda s: None)
    with http, pytest.raises(Unreachable) as info:
        http.get_json("/campaigns")
    assert len(seen) == 1  # not retried: asking DNS again cannot create the host
    message = str(info.value)
    assert "api.eu.customer.io" in message and "does not resolve" in message
    assert "CIO_REGION" in message and "CIO_APP_URL" in message and "HTTPS_PROXY" in message


def test_a_refused_connection_is_still_retried():
    transport, seen = scripted(httpx.ConnectError("Connection refused"), httpx.Response(200, json={}))
    with client(transport) as http:
        assert http.get_json("/x") == {}
    assert len(seen) == 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_a_success_and_never_followed(status):
    moved = httpx.Response(status, headers={"location": "https://api-eu.customer.io/v1/campaigns?x=1"})
    transport, seen = scripted(moved, httpx.Response(200, json={}))
    http = HttpClient(service="customerio-app", base_url="https://api.customer.io/v1",
                      transport=transport, retry=FAST, sleep=lambda s: None)
    with http, pytest.raises(ApiError) as info:
        http.get_json("/campaigns")
    assert len(seen) == 1 and info.value.status == status
    assert "https://api-eu.customer.io/v1/campaigns" in str(info.value) and "CIO_REGION" in str(info.value)
