"""Connection limits of the receiver under uvicorn, on real sockets on 127.0.0.1 (issue 14, item 6).

Timeouts here are generous upper bounds for the test to give up; the assertions are on outcomes (the
status a client got, whether the server closed the connection, what was stored), never on speed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cio_mavera.customerio.webhooks import signed_headers
from cio_mavera.receiver import server as server_module
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.receiver.server import BackgroundReceiver, ConnectionLimits, default_max_connections

SECRET = "whsec-limits"
GIVE_UP_S = 60.0  # a client waits at most this long for the server to answer or close


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "q.sqlite3")
    yield q
    q.close()


def connect(receiver: BackgroundReceiver) -> socket.socket:
    sock = socket.create_connection((receiver.host, receiver.port), timeout=GIVE_UP_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it only reset it)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def signed_post(receiver: BackgroundReceiver, event_id: str) -> httpx.Response:
    body = (f'{{"event_id":"{event_id}","object_type":"email","metric":"sent",'
            f'"timestamp":1800000000,"data":{{}}}}').encode()
    return httpx.post(receiver.url + WEBHOOK_PATH, content=body, headers=signed_headers(SECRET, body),
                      timeout=GIVE_UP_S)


def rejected(receiver: BackgroundReceiver, reason: str) -> int:
    return receiver.app.state.metrics.rejected[reason]


def test_a_10_mb_header_is_refused_without_being_buffered(queue):
    limits = ConnectionLimits(max_header_bytes=16 * 1024)
    with BackgroundReceiver(create_app(queue, SECRET), limits=limits) as receiver:
        sock = connect(receiver)
        sent = 0
        reply = b""
        try:
            sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: t\r\nX-Pad: ".encode())
            chunk = b"a" * 65536
            while sent < 10 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection part way: what we want
        reply = read_until_closed(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 431") or sent < 10 * 1024 * 1024
        assert rejected(receiver, "header_too_large") == 1
        assert signed_post(receiver, "after").status_code == 200  # the receiver itself is fine
    assert queue.event_ids() == {"after"}


def test_a_connection_that_sends_no_complete_headers_is_answered_408_and_closed(queue):
    limits = ConnectionLimits(header_timeout_s=1.0)
    with BackgroundReceiver(create_app(queue, SECRET), limits=limits) as receiver:
        silent = connect(receiver)
        partial = connect(receiver)
        partial.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: t\r\nX-CIO-Timest".encode())
        assert read_until_closed(silent).startswith(b"HTTP/1.1 408")
        assert read_until_closed(partial).startswith(b"HTTP/1.1 408")
        silent.close()
        partial.close()
        assert rejected(receiver, "header_timeout") == 2


def test_a_body_that_stops_arriving_is_dropped_after_the_timeout_and_nothing_is_stored(queue):
    limits = ConnectionLimits(body_timeout_s=1.0)
    with BackgroundReceiver(create_app(queue, SECRET), limits=limits) as receiver:
        sock = connect(receiver)
        sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{{\"event_id\"".encode())
        assert read_until_closed(sock) == b""  # closed without an answer: the app saw a disconnect
        sock.close()
        assert rejected(receiver, "body_timeout") == 1
    assert queue.total() == 0 and queue.dead_letters() == []


def test_many_half_open_connections_do_not_starve_a_real_request(queue):
    # A long header deadline, so what frees room here is the connection cap, not the timeout.
    limits = ConnectionLimits(max_connections=20, header_timeout_s=GIVE_UP_S * 2)
    with BackgroundReceiver(create_app(queue, SECRET), limits=limits) as receiver:
        idle = [connect(receiver) for _ in range(60)]
        for sock in idle[::2]:
            sock.sendall(b"POST /webhooks/customerio HTTP/1.1\r\nHost: t\r\n")  # slowloris: never finishes
        for i in range(3):
            assert signed_post(receiver, f"real{i}").status_code == 200
        assert len(receiver.server.server_state.connections) <= 20
        for sock in idle:
            sock.close()
        assert rejected(receiver, "over_capacity") >= 40
    assert queue.event_ids() == {"real0", "real1", "real2"}


def test_a_keep_alive_connection_serves_several_requests_within_the_limits(queue):
    limits = ConnectionLimits(max_header_bytes=4096, header_timeout_s=5.0, body_timeout_s=5.0)
    with BackgroundReceiver(create_app(queue, SECRET), limits=limits) as receiver, \
            httpx.Client(base_url=receiver.url, timeout=GIVE_UP_S) as client:
        for i in range(5):
            body = f'{{"event_id":"k{i}","object_type":"email","metric":"sent","timestamp":1800000000}}'.encode()
            assert client.post(WEBHOOK_PATH, content=body, headers=signed_headers(SECRET, body)).status_code == 200
        assert client.get("/healthz").status_code == 200
    assert len(queue.event_ids()) == 5


def test_default_connection_cap_leaves_descriptors_for_everything_else(monkeypatch):
    monkeypatch.setattr(server_module.resource, "getrlimit", lambda which: (256, 4096))
    assert default_max_connections() == 192
    monkeypatch.setattr(server_module.resource, "getrlimit", lambda which: (1 << 20, 1 << 20))
    assert default_max_connections() == 512
    with pytest.raises(ValueError):
        ConnectionLimits(max_header_bytes=0)
