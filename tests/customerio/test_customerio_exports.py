"""The exports client against the sandbox over loopback (and a mock transport for shapes it lacks)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from cio_mavera.connect import Connection
from cio_mavera.customerio.app import AppClient
from cio_mavera.customerio.exports import (
    Export,
    ExportDownloadFailed,
    ExportFailed,
    Exports,
    ExportTimeout,
    PollPolicy,
)
from cio_mavera.errors import ApiError, InvalidParameter, NotFound, ServerError
from cio_mavera.http import RetryPolicy
from cio_mavera.ratelimit import NoLimit
from cio_mavera.sandbox.customerio.export_store import ExportStore
from cio_mavera.sandbox.server import SandboxServer
from cio_mavera.settings import Secret, Settings

QUICK = PollPolicy(first_s=0.02, factor=1.5, max_s=0.2, timeout_s=60)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recording(httpx.BaseTransport):
    """The network, with every file request kept and an optional hook before each one."""

    def __init__(self, before: object = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.before = before

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.before is not None:
            self.before(len(self.requests))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class Tables:
    """A download sink: table i of the latest attempt replaces an earlier attempt's table i."""

    def __init__(self) -> None:
        self.by_index: dict[int, pa.Table] = {}

    def __call__(self, index: int, table: pa.Table) -> None:
        self.by_index[index] = table

    def kept(self, count: int) -> pa.Table:
        return pa.concat_tables([self.by_index[i] for i in range(count)])


def _quick(app: AppClient, **kw: object) -> Exports:
    """The client's exports with short backoffs (and any fake sleep or clock given)."""
    return Exports(app.http, app.exports.files, retry=RetryPolicy(backoff_base_s=0.001), **kw)


def _store(server: SandboxServer) -> ExportStore:
    store = server.state.cio.exports
    store.delay_s = 0
    return store


def _route_count(server: SandboxServer, route: str) -> int:
    return server.state.stats.as_json()["requests"].get(route, 0)


@pytest.fixture
def app(connection: Connection) -> Iterator[AppClient]:
    with AppClient(connection) as client:
        yield client


@pytest.fixture
def store(sandbox: SandboxServer) -> Iterator[ExportStore]:
    yield _store(sandbox)
    sandbox.state.reset()


# -- creating, listing, polling --------------------------------------------------------------

def test_everyone_is_exported_polled_and_downloaded(app: AppClient, sandbox, store) -> None:
    exports = _quick(app)
    export = exports.customers()
    assert export.status == "pending" and export.type == "customers"
    sink = Tables()
    done, rows, count = exports.collect(export, sink, poll=QUICK)
    assert done.done and rows == done.total == 2000
    table = sink.kept(count)
    assert table.num_rows == 2000 and table.column_names[:3] == ["cio_id", "id", "email"]
    assert set(table.column("cio_id").to_pylist()) == set(sandbox.state.workspace.customers["cio_id"])
    body = [r["json"] for r in sandbox.state.request_log if r["path"].endswith("/exports/customers")]
    assert body == [{"filters": {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}}]
    assert exports.file_stats.requests == 1


def test_segment_export_holds_the_members(app: AppClient, sandbox, store) -> None:
    members = sandbox.state.workspace.segment_members
    segment_id = next(s for s, m in members.items() if 0 < len(m) < 2000)
    sink = Tables()
    _, rows, count = app.exports.collect(app.exports.customers({"segment": {"id": segment_id}}),
                                         sink, poll=QUICK)
    assert rows == len(members[segment_id]) == sink.kept(count).num_rows


def test_list_is_empty_for_null_then_lists_exports(app: AppClient, store) -> None:
    assert app.exports.list() == []
    export = app.exports.customers()
    assert [e.id for e in app.exports.list()] == [export.id]


def test_unknown_export_404_names_it(app: AppClient) -> None:
    with pytest.raises(NotFound, match="export 9999 not found"):
        app.exports.get(9999)


def test_wait_polls_with_growing_pauses_until_done(app: AppClient, sandbox, store) -> None:
    clock = FakeClock()
    store.use_clock(clock)
    store.delay_s = 10
    pauses: list[float] = []
    export = app.exports.customers()

    def sleep(seconds: float) -> None:  # the sandbox's time moves instead of ours
        pauses.append(seconds)
        assert store.get(export.id).rendered.wait(60)
        clock.advance(seconds)

    states: list[str] = []
    done = _quick(app, sleep=sleep).wait(export.id, poll=PollPolicy(first_s=1, factor=1.5),
                                         on_state=lambda e: states.append(e.status))
    assert done.done and done.total == 2000
    assert pauses == [1, 1.5, 2.25, 3.375, 5.0625]
    assert states == ["pending"] * 5 + ["done"]


def test_wait_times_out_naming_the_export(app: AppClient, store) -> None:
    store.delay_s = 10**6
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    export = app.exports.customers()
    exports = _quick(app, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(ExportTimeout) as info:
        exports.wait(export.id, poll=PollPolicy(first_s=1, factor=2, max_s=8, timeout_s=30))
    assert f"export {export.id} was still pending" in str(info.value)
    assert now[0] == 1 + 2 + 4 + 8 + 8  # the next pause would pass 30 s


def test_failed_export_raises_naming_it(app: AppClient, store) -> None:
    store.fail_next = 1
    export = app.exports.customers()
    with pytest.raises(ExportFailed, match=f"export {export.id} failed"):
        app.exports.wait(export.id, poll=QUICK)


def test_export_calls_take_the_app_limiter_and_the_file_download_does_not(connection, store) -> None:
    class Counting(NoLimit):
        def __init__(self) -> None:
            self.count = 0

        def acquire(self) -> float:
            self.count += 1
            return 0.0

    limiter = Counting()
    with AppClient(connection, limiter=limiter) as app:
        app.exports.collect(app.exports.customers(), Tables(), poll=QUICK)
        assert limiter.count == app.stats.requests >= 3  # POST, polls, download URL
        assert app.exports.file_stats.requests == 1


def test_file_requests_carry_no_app_key(connection, store) -> None:
    files = Recording()
    with AppClient(connection, file_transport=files) as app:
        app.exports.collect(app.exports.customers(), Tables(), poll=QUICK)
    (request,) = files.requests
    assert "authorization" not in request.headers
    assert connection.settings.app_key.reveal() not in str(request.headers)


# -- refetching ------------------------------------------------------------------------------

def test_expired_url_is_refetched_not_fatal(connection, sandbox, store) -> None:
    clock = FakeClock()
    store.use_clock(clock)

    def first_waits_16_minutes(n: int) -> None:
        if n == 1:
            clock.advance(16 * 60)  # the URL was fetched, then the download started too late

    files = Recording(first_waits_16_minutes)
    with AppClient(connection, file_transport=files) as app:
        sink = Tables()
        _, rows, count = _quick(app).collect(app.exports.customers(), sink, poll=QUICK)
    assert rows == sink.kept(count).num_rows == 2000
    assert len(files.requests) == 2
    assert _route_count(sandbox, "GET /cio/app/v1/exports/{id}/download") == 2


def test_every_url_refused_ends_in_an_error_naming_the_export(app: AppClient, sandbox, store,
                                                              caplog) -> None:
    store.url_ttl_s = -1  # every URL is already expired
    export = app.exports.customers()
    with caplog.at_level(logging.DEBUG), pytest.raises(ExportDownloadFailed) as info:
        _quick(app).collect(export, Tables(), poll=QUICK)
    message = str(info.value)
    assert f"export {export.id}" in message and "refused" in message and "4 attempts" in message
    assert "http" not in message and "signature" not in message
    assert _route_count(sandbox, "GET /cio/app/v1/exports/{id}/download") == 4


@pytest.mark.parametrize("damage", [["truncate"], ["garble"], ["cut"], ["truncate", "garble", "cut"]])
def test_damaged_download_is_refetched_and_never_trusted(app: AppClient, store, damage) -> None:
    store.damage_next = list(damage)
    sink = Tables()
    _, rows, count = _quick(app).collect(app.exports.customers(), sink, poll=QUICK)
    table = sink.kept(count)
    assert rows == table.num_rows == 2000
    assert len(set(table.column("cio_id").to_pylist())) == 2000
    assert app.exports.get(app.exports.list()[0].id).downloads == len(damage) + 1


def test_damaged_every_time_is_an_error_pointing_at_the_assumed_format(app: AppClient,
                                                                       store) -> None:
    store.damage_next = ["truncate"] * 4
    with pytest.raises(ExportDownloadFailed, match="could not be downloaded intact") as info:
        _quick(app).collect(app.exports.customers(), Tables(), poll=QUICK)
    assert "ExportFormat" in str(info.value)


def test_short_file_is_refetched(tmp_path: Path) -> None:
    """A file that reads cleanly but holds fewer rows than the export's total is not trusted."""
    served: list[int] = []

    def files(request: httpx.Request) -> httpx.Response:
        served.append(1)
        rows = "c1,a\n" if len(served) == 1 else "c1,a\nc2,b\n"
        return httpx.Response(200, content=("cio_id,plan\n" + rows).encode())

    with _mock_client(_exports_api(total=2), tmp_path, file_transport=httpx.MockTransport(files)) as app:
        sink = Tables()
        rows, count = _quick(app).download(7, sink)
    assert rows == 2 and len(served) == 2 and sink.kept(count).num_rows == 2


def test_no_url_or_key_in_logs_errors_or_messages(connection, store, caplog) -> None:
    store.damage_next = ["garble", "cut"]
    files = Recording()
    with caplog.at_level(logging.DEBUG), AppClient(connection, file_transport=files) as app:
        _quick(app).collect(app.exports.customers(), Tables(), poll=QUICK)
        store.url_ttl_s = -1
        with pytest.raises(ExportDownloadFailed) as info:
            _quick(app).collect(app.exports.customers(), Tables(), poll=QUICK)
    urls = [str(r.url) for r in files.requests]
    signatures = [r.url.params["signature"] for r in files.requests]
    text = caplog.text + str(info.value) + repr(info.value.args)
    for secret in [*urls, *signatures, *connection.settings.secrets()]:
        assert secret not in text


# -- deliveries ------------------------------------------------------------------------------

def test_deliveries_export_is_one_call_away(app: AppClient, sandbox, store) -> None:
    data = sandbox.state.cio.derived
    record = next(r for r in data.messages.records if r["campaign_id"] is not None)
    campaign_id = record["campaign_id"]
    expected = {r["id"] for r in data.messages.records if r["campaign_id"] == campaign_id}
    sink = Tables()
    export, rows, count = app.exports.collect(
        app.exports.deliveries(campaign_id=campaign_id, start=data.generated_at - 90 * 86400,
                               end=data.generated_at), sink, poll=QUICK)
    assert export.type == "deliveries" and rows == len(expected)
    assert set(sink.kept(count).column("delivery_id").to_pylist()) == expected
    body = [r["json"] for r in sandbox.state.request_log if r["path"].endswith("/exports/deliveries")]
    assert body == [{"campaign_id": campaign_id, "start": data.generated_at - 90 * 86400,
                     "end": data.generated_at}]


@pytest.mark.parametrize("kwargs", [
    {},
    {"campaign_id": 1, "newsletter_id": 2},
    {"campaign_id": 1, "metric": "liked"},
    {"campaign_id": 1, "start": "2025-03-02", "end": "2025-03-01"},
    {"campaign_id": 1, "attributes": "plan"},
])
def test_deliveries_parameters_are_checked_before_any_request(app: AppClient, sandbox,
                                                              kwargs) -> None:
    with pytest.raises(InvalidParameter):
        app.exports.deliveries(**kwargs)
    assert sandbox.state.stats.as_json()["requests_total"] == 0


# -- shapes the sandbox does not send --------------------------------------------------------

def _mock_client(handler, tmp_path: Path, **kw) -> AppClient:
    settings = Settings(app_key=Secret("mock-app-key-123"), data_dir=tmp_path,
                        app_url_override="https://api.example.test")
    return AppClient(settings, transport=httpx.MockTransport(handler), limiter=NoLimit(), **kw)


def _exports_api(total: int, url_key: str = "url"):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/download"):
            return httpx.Response(200, json={url_key: "https://files.example.test/f?sig=abc"})
        return httpx.Response(200, json={"export": {"id": 7, "status": "done", "total": total}})
    return handler


def test_download_url_accepts_link_and_refuses_an_answer_without_one(tmp_path: Path) -> None:
    with _mock_client(_exports_api(1, "link"), tmp_path) as app:
        assert app.exports.download_url(7).reveal() == "https://files.example.test/f?sig=abc"
        assert "sig=abc" not in repr(app.exports.download_url(7))
    with _mock_client(_exports_api(1, "nothing"), tmp_path) as app, \
            pytest.raises(ApiError, match="without a download URL"):
        app.exports.download_url(7)


def test_export_object_is_read_wrapped_or_not() -> None:
    wrapped = Export.from_api({"export": {"id": "12", "status": "done", "total": 5}})
    bare = Export.from_api({"id": 12, "status": "done", "total": 5})
    assert wrapped == bare and wrapped.done
    assert Export.from_api({"id": 3, "status": "done", "failed": True}).is_failed
    with pytest.raises(ApiError):
        Export.from_api({"export": {}})


def test_creating_an_export_is_not_retried_after_it_may_have_reached_the_server(tmp_path: Path) -> None:
    posts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(1)
        return httpx.Response(503, json={"errors": [{"detail": "down", "status": "503"}]})

    with _mock_client(handler, tmp_path, retry=RetryPolicy(backoff_base_s=0.001)) as app, \
            pytest.raises(ServerError):
        app.exports.customers()
    assert len(posts) == 1  # a second POST could start a second export
