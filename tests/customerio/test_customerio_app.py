"""App API client against the sandbox over loopback (and a mock transport for quirks it lacks)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import END, settings_for

from cio_mavera.connect import Connection
from cio_mavera.customerio.app import AppClient, MetricSeries
from cio_mavera.customerio.paging import MAX_EMPTY_PAGES, inclusive_windows
from cio_mavera.customerio.region import detect_region
from cio_mavera.errors import ApiError, AuthError, ConfigError, InvalidParameter, NotFound
from cio_mavera.http import RetryPolicy
from cio_mavera.ratelimit import NoLimit
from cio_mavera.sandbox.customerio.data import cio_data
from cio_mavera.sandbox.server import SandboxServer
from cio_mavera.settings import Secret, Settings


@pytest.fixture
def app(connection: Connection) -> Iterator[AppClient]:
    with AppClient(connection) as client:
        yield client


def _requests(server: SandboxServer) -> int:
    return server.state.stats.as_json()["requests_total"]


def _logged(server: SandboxServer, fragment: str) -> list[dict]:
    # The sandbox logs a request before its answer leaves, so the log is complete here.
    return [r for r in list(server.state.request_log) if fragment in r["path"]]


def _mock_client(handler, tmp_path: Path, **kw) -> AppClient:
    settings = Settings(app_key=Secret("mock-app-key-123"), data_dir=tmp_path,
                        app_url_override="https://api.example.test")
    return AppClient(settings, transport=httpx.MockTransport(handler), limiter=NoLimit(), **kw)


# -- campaigns -------------------------------------------------------------------------------

def test_campaigns_lists_every_campaign_of_the_workspace(app: AppClient, sandbox) -> None:
    campaigns = app.campaigns()
    expected = set(sandbox.state.workspace.campaigns["campaign_id"].astype(int))
    assert {c["id"] for c in campaigns} == expected
    assert _requests(sandbox) == 1


def test_campaign_actions_have_integer_ids(app: AppClient, sandbox) -> None:
    campaign_id = app.campaigns()[0]["id"]
    actions = app.campaign_actions(campaign_id)
    ws_actions = sandbox.state.workspace.actions
    expected = set(ws_actions[ws_actions["campaign_id"] == campaign_id]["action_id"].astype(int))
    assert {a["id"] for a in actions} == expected
    assert all(isinstance(a["id"], int) for a in actions)
    one = app.campaign_action(campaign_id, actions[0]["id"])
    assert one["id"] == actions[0]["id"]


def test_campaign_actions_follow_cursor_pages_of_ten(tmp_path: Path) -> None:
    seen_starts: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        start = request.url.params.get("start")
        seen_starts.append(start)
        offset = int(start or 0)
        items = [{"id": str(i), "type": "email"} for i in range(offset, min(offset + 10, 25))]
        nxt = str(offset + 10) if offset + 10 < 25 else ""
        return httpx.Response(200, json={"actions": items, "next": nxt})

    with _mock_client(handler, tmp_path) as client:
        actions = client.campaign_actions(5)
    assert [a["id"] for a in actions] == list(range(25))
    assert seen_starts == [None, "10", "20"]


def test_unknown_campaign_404_names_the_campaign(app: AppClient) -> None:
    with pytest.raises(NotFound, match="campaign 999999 not found"):
        app.campaign(999999)


def test_campaign_metrics_v2_has_one_bucket_per_day_oldest_first(app: AppClient, sandbox) -> None:
    campaign_id = app.campaigns()[0]["id"]
    series = app.campaign_metrics(campaign_id, start="2025-03-01", end="2025-03-07T23:00:00")
    assert isinstance(series, MetricSeries)
    assert len(series.series["sent"]) == 7
    starts = series.bucket_starts()
    assert str(starts[0]) == "2025-03-01 00:00:00+00:00"
    assert str(starts[-1]) == "2025-03-07 00:00:00+00:00"
    sent = _logged(sandbox, "/metrics")[-1]["path"]
    assert sent.endswith(f"/v1/campaigns/{campaign_id}/metrics")


def test_metrics_buckets_follow_the_requested_time_zone(app: AppClient) -> None:
    campaign_id = app.campaigns()[0]["id"]
    series = app.campaign_metrics(campaign_id, start="2025-03-01T12:00:00Z",
                                  end="2025-03-03T12:00:00Z", tz="America/New_York")
    starts = series.bucket_starts()
    assert [str(s) for s in starts] == ["2025-03-01 00:00:00-05:00", "2025-03-02 00:00:00-05:00",
                                       "2025-03-03 00:00:00-05:00"]
    assert len(series.series["delivered"]) == 3


def test_action_metrics_sum_to_campaign_metrics_over_a_week(app: AppClient) -> None:
    campaign_id = app.campaigns()[0]["id"]
    window = {"start": "2025-02-01", "end": "2025-02-08", "res": "weeks"}
    campaign = app.campaign_metrics(campaign_id, **window)
    per_action = [app.action_metrics(campaign_id, a["id"], **window)
                  for a in app.campaign_actions(campaign_id)]
    assert sum(campaign.series["sent"]) == sum(sum(a.series["sent"]) for a in per_action)


@pytest.mark.parametrize("kwargs, message", [
    ({"res": "fortnightly"}, "res="),
    ({"tz": "Mars/Olympus_Mons"}, "tz="),
    ({"start": "2025-03-02", "end": "2025-03-01"}, "before end"),
    ({"start": "2025-03-01", "end": "2025-03-01"}, "before end"),
    ({"start": "not a date"}, "not a time"),
    ({"start": "2000-01-01", "end": "2025-01-01"}, "10 years"),
])
def test_invalid_metrics_parameters_fail_before_any_request(app: AppClient, sandbox, kwargs,
                                                           message) -> None:
    params = {"start": "2025-03-01", "end": "2025-03-08", **kwargs}
    with pytest.raises(InvalidParameter, match=message):
        app.campaign_metrics(1, **params)
    assert _requests(sandbox) == 0


# -- broadcasts and newsletters --------------------------------------------------------------

def test_broadcasts_actions_and_metrics(app: AppClient) -> None:
    broadcasts = app.broadcasts()
    assert broadcasts
    first = broadcasts[0]
    assert app.broadcast(first["id"])["id"] == first["id"]
    actions = app.broadcast_actions(first["id"])
    assert actions and all(isinstance(a["id"], int) for a in actions)


def test_broadcast_metrics_are_asked_and_read_as_v1(app: AppClient, sandbox) -> None:
    first = app.broadcasts()[0]
    series = app.broadcast_metrics(first["id"], period="days", steps=10)
    asked = sandbox.state.request_log[-1]["path"]
    assert asked.endswith(f"/v1/broadcasts/{first['id']}/metrics")
    # v1 buckets are Eastern-time days ending with the workspace's last one, oldest first.
    data = cio_data(sandbox.state)
    last = END.astimezone(ZoneInfo("America/New_York")).date()
    daily = data.broadcasts.daily(data.ws, data.broadcasts.get(first["id"]),
                                  last - timedelta(days=9), last)
    assert series["sent"] == daily["sent"].tolist() and sum(series["sent"]) > 0
    assert series["delivered"] == daily["delivered"].tolist()
    assert {"2xx", "5xx"} <= set(series)  # v1's webhook buckets: the shape v1 answers in
    action = app.broadcast_actions(first["id"])[0]["id"]
    assert app.broadcast_action_metrics(first["id"], action, steps=10)["sent"] == series["sent"]


def test_broadcast_metrics_send_v1_parameters_only(tmp_path: Path) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(200, json={"metric": {"series": {"sent": [1, 2, 3]}}})

    with _mock_client(handler, tmp_path) as client:
        assert client.broadcast_metrics(7, period="weekly", steps=3, type="email") == {
            "sent": [1, 2, 3]}
        client.newsletter_metrics(8, period="months")
    assert seen == [{"period": "weeks", "steps": "3", "type": "email"}, {"period": "months"}]


def test_newsletters_follow_cursor_pages(app: AppClient, sandbox) -> None:
    everything = app.newsletters(limit=100)
    paged = app.newsletters(limit=2)
    assert [n["id"] for n in paged] == [n["id"] for n in everything]
    assert len(everything) > 2
    expected = 1 + (len(everything) + 1) // 2  # one unpaged call, then pages of two
    assert len(_logged(sandbox, "/v1/newsletters")) == expected
    one = everything[0]
    assert app.newsletter(one["id"])["id"] == one["id"]
    series = app.newsletter_metrics(one["id"], period="days", steps=10)
    assert len(series["sent"]) == 10


def test_newsletter_metrics_steps_are_checked_before_any_request(app: AppClient, sandbox) -> None:
    with pytest.raises(InvalidParameter, match="steps"):
        app.newsletter_metrics(1, period="hours", steps=25)
    assert _requests(sandbox) == 0


# -- segments and people ---------------------------------------------------------------------

def test_segments_and_their_counts(app: AppClient, sandbox) -> None:
    segments = app.segments()
    members = sandbox.state.workspace.segment_members
    assert {s["id"] for s in segments} == set(members)
    segment_id = segments[1]["id"]
    assert app.segment(segment_id)["id"] == segment_id
    assert app.segment_customer_count(segment_id) == len(members[segment_id])


def test_segment_membership_follows_cursor_pages(app: AppClient, sandbox) -> None:
    members = sandbox.state.workspace.segment_members
    segment_id = max(members, key=lambda s: len(members[s]) if len(members[s]) < 2000 else 0)
    pages = list(app.segment_members(segment_id, limit=250))
    assert [len(p) for p in pages[:-1]] == [250] * (len(pages) - 1)
    ids = [person["cio_id"] for page in pages for person in page]
    assert len(ids) == len(set(ids)) == len(members[segment_id])


def test_empty_segment_with_null_lists_has_no_pages(app: AppClient, sandbox) -> None:
    members = sandbox.state.workspace.segment_members
    empty = next(s for s, m in members.items() if len(m) == 0)
    assert list(app.segment_members(empty)) == []
    assert _requests(sandbox) == 1


def test_unknown_segment_404_names_the_segment(app: AppClient) -> None:
    with pytest.raises(NotFound, match="segment 424242 not found"):
        list(app.segment_members(424242))


def test_membership_limit_over_30000_is_refused_locally(app: AppClient, sandbox) -> None:
    with pytest.raises(InvalidParameter):
        list(app.segment_members(1, limit=30001))
    assert _requests(sandbox) == 0


def test_customer_search_pages_cover_everyone_once(app: AppClient, sandbox) -> None:
    pages = list(app.search_customers(limit=700))
    assert [len(p) for p in pages] == [700, 700, 600]
    ids = [p["cio_id"] for page in pages for p in page]
    assert len(set(ids)) == len(sandbox.state.workspace.customers) == 2000
    bodies = [r["json"] for r in _logged(sandbox, "/v1/customers")]
    assert bodies[0] == {"filter": {"and": [{"attribute": {"field": "cio_id",
                                                           "operator": "exists"}}]}}


def test_empty_pages_that_carry_a_next_cursor_are_followed(app: AppClient, sandbox) -> None:
    sandbox.state.cio.hollow_pages = 2  # two empty pages, each with a `next`, before every page
    members = sandbox.state.workspace.segment_members
    segment_id = max(members, key=lambda s: len(members[s]) if len(members[s]) < 2000 else 0)
    pages = list(app.segment_members(segment_id, limit=500))
    ids = [person["cio_id"] for page in pages for person in page]
    assert len(ids) == len(set(ids)) == len(members[segment_id])
    stats = sandbox.state.stats.as_json()  # a 429 (arrivals bunching) is retried: not counted
    assert stats["requests_total"] - stats["rate_limited_total"] == 3 * len(pages)
    everyone = [p["cio_id"] for page in app.search_customers(limit=700) for p in page]
    assert len(set(everyone)) == len(everyone) == 2000
    campaign_id = app.campaigns()[0]["id"]
    ws_actions = sandbox.state.workspace.actions
    assert len(app.campaign_actions(campaign_id)) == int((ws_actions["campaign_id"] == campaign_id).sum())
    assert [n["id"] for n in app.newsletters(limit=2)] == [n["id"] for n in app.newsletters()]


def _empty_pages(tokens: list[str | None], repeat: bool = False):
    def handler(request: httpx.Request) -> httpx.Response:
        start = request.url.params.get("start")
        tokens.append(start)
        token = start if repeat and start else f"t{len(tokens)}"
        return httpx.Response(200, json={"identifiers": [], "ids": [], "next": token})

    return handler


def test_endless_empty_pages_end_in_an_error_not_a_loop(tmp_path: Path) -> None:
    tokens: list[str | None] = []
    with _mock_client(_empty_pages(tokens), tmp_path) as client, \
            pytest.raises(ApiError, match="26 empty pages in a row"):
        list(client.search_customers())
    assert len(tokens) == MAX_EMPTY_PAGES + 1


def test_a_cursor_that_repeats_itself_is_an_error(tmp_path: Path) -> None:
    tokens: list[str | None] = []
    with _mock_client(_empty_pages(tokens, repeat=True), tmp_path) as client, \
            pytest.raises(ApiError, match="cursor 't1'"):
        list(client.search_customers())
    assert tokens == [None, "t1"]


def test_a_trailing_empty_page_with_an_empty_next_ends_the_list(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # The sender-identities quirk: a `next` after the last item, then an empty last page.
        if request.url.params.get("start") is None:
            return httpx.Response(200, json={"identifiers": [{"cio_id": "a1", "id": "1"}],
                                             "ids": ["1"], "next": "Mg=="})
        return httpx.Response(200, json={"identifiers": [], "ids": [], "next": ""})

    with _mock_client(handler, tmp_path) as client:
        assert [[p["cio_id"] for p in page] for page in client.search_customers()] == [["a1"]]


def test_pagination_stops_when_next_is_null(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"identifiers": [{"cio_id": "a1"}], "next": None})

    with _mock_client(handler, tmp_path) as client:
        assert len(list(client.search_customers())) == 1


def test_bulk_attributes_splits_into_batches_of_100(app: AppClient, sandbox) -> None:
    cio_ids = sandbox.state.workspace.customers["cio_id"].astype(str).tolist()[:250]
    customers = list(app.customers_attributes_many(cio_ids))
    assert sorted(c["identifiers"]["cio_id"] for c in customers) == sorted(cio_ids)
    bodies = [r["json"]["ids"] for r in _logged(sandbox, "/v1/customers/attributes")]
    assert sorted(len(b) for b in bodies) == [50, 100, 100]
    paths = [r["path"] for r in _logged(sandbox, "/v1/customers/attributes")]
    assert all(p.endswith("/v1/customers/attributes") for p in paths)


def test_bulk_attributes_omit_unknown_ids_and_keep_string_values(app: AppClient, sandbox) -> None:
    known = sandbox.state.workspace.customers["cio_id"].astype(str).tolist()[:3]
    customers = app.customers_attributes([*known, "doesnotexist1", "doesnotexist2"])
    assert sorted(c["identifiers"]["cio_id"] for c in customers) == sorted(known)
    values = [v for c in customers for v in c["attributes"].values() if v is not None]
    assert values and all(isinstance(v, str) for v in values)


def test_bulk_attributes_refuse_more_than_100_ids_locally(app: AppClient, sandbox) -> None:
    with pytest.raises(InvalidParameter, match="at most 100"):
        app.customers_attributes([str(i) for i in range(101)])
    assert _requests(sandbox) == 0


def test_bulk_attributes_accept_wrapped_items(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["id_type"] == "cio_id"
        return httpx.Response(200, json={"customers": [
            {"customer": {"identifiers": {"cio_id": "a1"}, "attributes": {"plan": "pro"}}},
            {"identifiers": {"cio_id": "a2"}, "attributes": {"plan": "free"}},
        ]})

    with _mock_client(handler, tmp_path) as client:
        customers = client.customers_attributes(["a1", "a2"])
    assert [c["attributes"]["plan"] for c in customers] == ["pro", "free"]


def test_single_customer_attributes_by_cio_id(app: AppClient, sandbox) -> None:
    cio_id = str(sandbox.state.workspace.customers["cio_id"].iloc[5])
    customer = app.customer_attributes(cio_id)
    assert customer["identifiers"]["cio_id"] == cio_id
    assert customer["attributes"]["cio_id"] == cio_id


def test_unknown_customer_404_names_the_identifier(app: AppClient) -> None:
    with pytest.raises(NotFound, match=r"customer nobody@x \(id_type=email\) not found"):
        app.customer_attributes("nobody@x", id_type="email")


# -- messages --------------------------------------------------------------------------------

def test_inclusive_windows_share_no_boundary_second() -> None:
    windows = inclusive_windows(100, 399, 100)
    assert windows == [(100, 199), (200, 299), (300, 399)]
    assert inclusive_windows(0, 0, 10) == [(0, 0)]


def test_messages_come_back_once_across_windows(app: AppClient) -> None:
    now = int(END.timestamp())  # the pinned sandbox's end, not today
    everything = list(app.messages(start=now - 360 * 86400, end=now, window=timedelta(days=180)))
    assert everything, "the sandbox workspace has deliveries"
    created = sorted(m["created"] for m in everything)
    lo, hi, middle = created[0], created[-1], created[len(created) // 2]
    # The second window starts exactly on a message's creation second.
    windowed = list(app.messages(start=lo, end=hi, window=timedelta(seconds=middle - lo)))
    ids = [m["id"] for m in windowed]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(m["id"] for m in everything)


def test_messages_windows_never_share_a_second(tmp_path: Path) -> None:
    windows: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        windows.append((int(params["start_ts"]), int(params["end_ts"])))
        return httpx.Response(200, json={"messages": [{"id": f"m{params['start_ts']}",
                                                       "created": int(params["start_ts"])}],
                                         "next": ""})

    with _mock_client(handler, tmp_path) as client:
        found = list(client.messages(start=1000, end=1000 + 3 * 86400 - 1,
                                     window=timedelta(days=1), campaign_id=7))
    assert windows == [(1000, 87399), (87400, 173799), (173800, 260199)]
    assert len(found) == 3


def test_messages_reject_a_reversed_window_before_any_request(app: AppClient, sandbox) -> None:
    with pytest.raises(InvalidParameter):
        list(app.messages(start=200, end=100))
    assert _requests(sandbox) == 0


# -- auth, region, secrets -------------------------------------------------------------------

def test_wrong_app_key_names_cio_app_key_and_the_eu_region(sandbox, tmp_path: Path) -> None:
    settings = settings_for(sandbox, tmp_path, app_key=Secret("wrong-key-abcdef"))
    with AppClient(settings) as client, pytest.raises(AuthError) as info:
        client.campaigns()
    message = str(info.value)
    assert "CIO_APP_KEY" in message and "CIO_REGION=eu" in message
    assert "wrong-key-abcdef" not in message


def test_wrong_region_gets_the_actionable_401(sandbox, tmp_path: Path) -> None:
    settings = settings_for(sandbox, tmp_path)
    eu = settings.with_overrides(app_url_override=settings.app_url.replace("/cio/", "/cio-eu/"))
    with AppClient(eu) as client, pytest.raises(AuthError, match="CIO_REGION=eu"):
        client.segments()


def test_missing_app_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CIO_APP_KEY"):
        AppClient(Settings(data_dir=tmp_path))


def test_detect_region_asks_track(sandbox_settings: Settings) -> None:
    assert detect_region(sandbox_settings) == "us"


def test_no_secret_in_debug_logs_or_errors(sandbox, tmp_path: Path, caplog) -> None:
    settings = settings_for(sandbox, tmp_path)
    bad = settings.with_overrides(app_key=Secret("s3cret-bad-key-zz"))
    with caplog.at_level(logging.DEBUG):
        with AppClient(settings) as client:
            client.campaigns()
            client.customers_attributes(["x"])
        with AppClient(bad) as client, pytest.raises(AuthError) as info:
            client.campaigns()
    # The sandbox's 401 quotes the header it got, as real error pages sometimes do.
    assert "****" in info.value.body
    text = caplog.text + str(info.value) + repr(info.value.args) + info.value.body
    for secret in [*settings.secrets(), "s3cret-bad-key-zz"]:
        assert secret not in text


def test_error_body_with_the_key_echoed_is_redacted(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"errors": [{"detail": "bad token mock-app-key-123",
                                                     "status": "400"}]})

    with _mock_client(handler, tmp_path) as client, pytest.raises(Exception) as info:
        client.campaigns()
    assert "mock-app-key-123" not in str(info.value)
    assert "****" in str(info.value)


def test_search_posts_are_retried_as_reads(tmp_path: Path) -> None:
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            return httpx.Response(503, json={"errors": [{"detail": "down", "status": "503"}]})
        return httpx.Response(200, json={"identifiers": [{"cio_id": "a"}], "next": ""})

    with _mock_client(handler, tmp_path, retry=RetryPolicy(backoff_base_s=0.001)) as client:
        assert len(list(client.search_customers())) == 1
    assert len(attempts) == 2


def test_map_keeps_input_order(tmp_path: Path) -> None:
    with _mock_client(lambda r: httpx.Response(200, json={}), tmp_path) as client:
        assert list(client.map(lambda x: x * 2, range(50))) == [x * 2 for x in range(50)]


def test_settings_repr_in_mock_requests_carries_no_key(tmp_path: Path) -> None:
    captured: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request.content)
        return httpx.Response(200, json={"customers": []})

    with _mock_client(handler, tmp_path) as client:
        client.customers_attributes(["a"])
    assert json.loads(captured[0]) == {"ids": ["a"]}
