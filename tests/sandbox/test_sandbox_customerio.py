"""The Customer.io half of the sandbox, over real loopback HTTP with raw httpx."""

from __future__ import annotations

import base64
import datetime as dt
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import END

from cio_mavera.sandbox.customerio import campaigns
from cio_mavera.sandbox.customerio.data import cio_data
from cio_mavera.sandbox.customerio.metrics import bucket_starts
from cio_mavera.sandbox.customerio.state import AppRateWindow
from cio_mavera.sandbox.server import SandboxServer, start_sandbox
from cio_mavera.sandbox.workspace import customer_attribute_strings, metric_series

MATCH_ALL = {"filter": {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}}


@pytest.fixture(scope="module")
def fast() -> Iterator[SandboxServer]:
    """A sandbox without the 10 req/s limit, for shape tests that send many requests."""
    server = start_sandbox(seed=7, customers=2000, app_rps=100_000, end=END)
    yield server
    server.stop()


class Api:
    """Raw httpx clients for the App and Track halves of one sandbox."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.env = server.env()
        self.app = httpx.Client(base_url=self.env["CIO_APP_URL"], timeout=30,
                                headers={"Authorization": f"Bearer {self.env['CIO_APP_KEY']}"})
        self.track = httpx.Client(base_url=self.env["CIO_TRACK_URL"], timeout=30,
                                  auth=(self.env["CIO_SITE_ID"], self.env["CIO_API_KEY"]))

    def get(self, path: str, **params: object) -> dict:
        response = self.app.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: object, **params: object) -> dict:
        response = self.app.post(path, json=body, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api(fast: SandboxServer) -> Iterator[Api]:
    fast.state.reset()
    client = Api(fast)
    yield client
    client.app.close()
    client.track.close()


def _campaign_with_actions(api: Api, minimum: int) -> dict:
    campaigns = api.get("/v1/campaigns")["campaigns"]
    return next(c for c in campaigns if len(c["actions"]) >= minimum)


# --- auth and rate limit ---------------------------------------------------------------------


def test_app_api_rejects_missing_and_wrong_keys_with_the_documented_401(api: Api) -> None:
    url = api.env["CIO_APP_URL"] + "/v1/campaigns"
    for headers in ({}, {"Authorization": "Bearer not-the-key"},
                    {"Authorization": f"Basic {api.env['CIO_APP_KEY']}"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        (error,) = response.json()["errors"]
        assert error["status"] == "401" and error["detail"].startswith("unauthorized")
        # It quotes the header it got (real error pages sometimes do): clients must redact it.
        assert headers.get("Authorization", "none") in error["detail"]


def test_app_key_is_refused_on_the_other_regions_host(make_sandbox) -> None:
    eu = make_sandbox(customers=50, region="eu")
    env = eu.env()
    assert "/cio-eu/app" in env["CIO_APP_URL"]
    headers = {"Authorization": f"Bearer {env['CIO_APP_KEY']}"}
    assert httpx.get(env["CIO_APP_URL"] + "/v1/segments", headers=headers).status_code == 200
    us_url = env["CIO_APP_URL"].replace("/cio-eu/app", "/cio/app")
    wrong = httpx.get(us_url + "/v1/segments", headers=headers)
    assert wrong.status_code == 401
    assert wrong.json()["errors"][0]["status"] == "401"


def test_burst_over_the_app_limit_gets_429_with_retry_after(sandbox: SandboxServer,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(sandbox.state.cio.rate, "clock", lambda: 500.0)  # one instant: no timing
    env = sandbox.env()
    headers = {"Authorization": f"Bearer {env['CIO_APP_KEY']}"}
    with (httpx.Client(base_url=env["CIO_APP_URL"], headers=headers,
                       limits=httpx.Limits(max_connections=40)) as client,
          ThreadPoolExecutor(max_workers=30) as pool):
        responses = list(pool.map(lambda _: client.get("/v1/segments"), range(30)))
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 20 and sum(r.status_code == 200 for r in responses) == 10
    for response in limited:
        assert response.headers["Retry-After"] == "1"
        (error,) = response.json()["errors"]
        assert error["status"] == "429"
        assert re.fullmatch(r"rate limited to 10 requests per 1s \(reference [0-9a-f]+\)", error["detail"])
    stats = httpx.get(sandbox.url + "/__sandbox__/stats").json()
    assert stats["rate_limited"]["app"] == len(limited)


def test_rate_window_admits_exactly_the_limit_per_sliding_second() -> None:
    window = AppRateWindow(limit=10, window_s=1.0)
    assert all(window.admit(now=100.0 + i * 0.01) for i in range(10))
    assert not window.admit(now=100.5)
    assert not window.admit(now=100.99)  # the first request is still inside the window
    assert window.admit(now=101.0)  # ... and leaves it exactly one second later
    assert not window.admit(now=101.005)
    assert window.admit(now=101.011)


def test_forced_429_rate_refuses_requests_even_under_the_limit(make_sandbox) -> None:
    server = make_sandbox(customers=50, force_429_rate=1.0)
    env = server.env()
    response = httpx.get(env["CIO_APP_URL"] + "/v1/segments",
                         headers={"Authorization": f"Bearer {env['CIO_APP_KEY']}"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


# --- campaigns, actions, metrics -------------------------------------------------------------


def test_campaigns_list_and_get_and_unknown_campaign_404(api: Api) -> None:
    campaigns = api.get("/v1/campaigns")["campaigns"]
    assert len(campaigns) >= 12
    first = campaigns[0]
    assert isinstance(first["id"], int) and isinstance(first["actions"][0]["id"], int)
    assert first["deduplicate_id"] == f"{first['id']}:{first['updated']}"
    assert api.get(f"/v1/campaigns/{first['id']}")["campaign"] == first
    missing = api.app.get("/v1/campaigns/987654")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["status"] == "404"
    assert "987654" in missing.json()["errors"][0]["detail"]


def test_campaign_actions_are_one_page_with_string_ids_and_empty_next(api: Api) -> None:
    campaign = _campaign_with_actions(api, 3)
    page = api.get(f"/v1/campaigns/{campaign['id']}/actions")
    assert page["next"] == ""
    assert [a["id"] for a in page["actions"]] == [str(a["id"]) for a in campaign["actions"]]
    assert "broadcast_id" not in page["actions"][0]
    one = api.get(f"/v1/campaigns/{campaign['id']}/actions/{page['actions'][0]['id']}")["action"]
    assert one["id"] == int(page["actions"][0]["id"]) and one["campaign_id"] == campaign["id"]


def test_campaign_actions_page_at_the_fixed_size_and_end_with_empty_next(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # The catalogue has no campaign with more than 10 actions, so shrink the fixed page to see paging.
    monkeypatch.setattr(campaigns, "ACTIONS_PAGE", 2)
    campaign = _campaign_with_actions(api, 3)
    seen, start, pages = [], "", 0
    while True:
        page = api.get(f"/v1/campaigns/{campaign['id']}/actions", start=start)
        assert 1 <= len(page["actions"]) <= 2
        seen += [a["id"] for a in page["actions"]]
        pages += 1
        start = page["next"]
        if not start:
            break
        base64.b64decode(start, validate=True)  # opaque, but base64 like the live tokens
    assert seen == [str(a["id"]) for a in campaign["actions"]]
    assert pages == -(-len(campaign["actions"]) // 2)


@pytest.mark.parametrize("res, tz, first_local, last_local, buckets", [
    ("days", "UTC", dt.datetime(2026, 10, 1), dt.datetime(2026, 10, 7, 12), 7),
    ("daily", "America/New_York", dt.datetime(2026, 10, 30), dt.datetime(2026, 11, 3), 5),
    ("hours", "Europe/Berlin", dt.datetime(2026, 10, 24), dt.datetime(2026, 10, 25, 23), 49),
    ("weeks", "Asia/Kolkata", dt.datetime(2026, 9, 6), dt.datetime(2026, 10, 10), 5),
    ("monthly", "Australia/Sydney", dt.datetime(2026, 8, 15), dt.datetime(2026, 11, 2), 4),
])
def test_metrics_v2_one_bucket_per_step_in_the_requested_zone(
        api: Api, res: str, tz: str, first_local: dt.datetime, last_local: dt.datetime,
        buckets: int) -> None:
    zone = ZoneInfo(tz)
    start = int(first_local.replace(tzinfo=zone).timestamp())
    end = int(last_local.replace(tzinfo=zone).timestamp())
    campaign = api.get("/v1/campaigns")["campaigns"][0]
    body = api.get(f"/v1/campaigns/{campaign['id']}/metrics", version=2, res=res, start=start,
                   end=end, tz=tz)
    assert body["res"] == res
    series = body["metric"]["series"]
    assert {"sent", "delivered", "human_opened", "machine_clicked", "converted"} <= set(series)
    assert {len(values) for values in series.values()} == {buckets}
    expected_abbrev = dt.datetime.fromtimestamp(start, zone).strftime("%z")
    assert body["start"].split(" ")[2] == expected_abbrev
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", body["end"])


def test_metrics_v2_daily_values_are_the_workspace_days_oldest_first(api: Api) -> None:
    ws = api.server.state.workspace
    campaign_id = int(ws.campaigns["campaign_id"].iloc[0])
    first, last = ws.end_date - dt.timedelta(days=13), ws.end_date
    start = int(dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC).timestamp())
    end = int(dt.datetime(last.year, last.month, last.day, tzinfo=dt.UTC).timestamp())
    body = api.get(f"/v1/campaigns/{campaign_id}/metrics", version=2, res="days", start=start, end=end)
    truth = metric_series(ws, campaign_id, None, first, last)
    assert body["metric"]["series"]["sent"] == truth["sent"].tolist()
    assert body["start"] == f"{first.isoformat()} 00:00:00 +0000 UTC"
    hourly = api.get(f"/v1/campaigns/{campaign_id}/metrics", version=2, res="hours", start=start,
                     end=start + 47 * 3600, tz="UTC")["metric"]["series"]["delivered"]
    assert [sum(hourly[:24]), sum(hourly[24:])] == truth["delivered"][:2].tolist()


def test_action_metrics_filter_by_channel_type(api: Api) -> None:
    ws = api.server.state.workspace
    action = ws.actions.iloc[0]
    path = f"/v1/campaigns/{int(action['campaign_id'])}/actions/{int(action['action_id'])}/metrics"
    now = int(ws.end.timestamp())
    params = dict(version=2, res="weeks", start=now - 30 * 86400, end=now)
    own = api.get(path, **params, type=action["channel"])["metric"]["series"]["sent"]
    other = "twilio" if action["channel"] != "twilio" else "email"
    assert sum(own) > 0
    assert sum(api.get(path, **params, type=other)["metric"]["series"]["sent"]) == 0


def test_metrics_v2_without_its_parameters_is_400_and_without_version_is_v1(api: Api) -> None:
    campaign = api.get("/v1/campaigns")["campaigns"][0]
    path = f"/v1/campaigns/{campaign['id']}/metrics"
    for params in ({"version": 2}, {"version": 2, "res": "days", "start": 0},
                   {"version": 2, "res": "fortnights", "start": 0, "end": 10},
                   {"version": 2, "res": "days", "start": 0, "end": 10, "tz": "Mars/Olympus"}):
        response = api.app.get(path, params=params)
        assert response.status_code == 400, params
        assert response.json()["errors"][0]["status"] == "400"
    v1 = api.get(path)["metric"]["series"]
    assert "2xx" in v1 and len(v1["sent"]) == 45
    assert len(api.get(path, period="weeks", steps=1)["metric"]["series"]["sent"]) == 2  # minimum 2


def test_metric_buckets_follow_dst_in_the_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = int(dt.datetime(2026, 10, 25, tzinfo=berlin).timestamp())
    hours = bucket_starts("hours", start, start + 25 * 3600 - 1, berlin)
    assert len(hours) == 25  # the day the clocks go back has 25 hours
    end = int(dt.datetime(2026, 10, 28, tzinfo=berlin).timestamp())
    assert end - start == 3 * 86400 + 3600
    days = bucket_starts("days", start, end, berlin)
    assert [(d.day, d.hour) for d in days] == [(25, 0), (26, 0), (27, 0), (28, 0)]


# --- broadcasts and newsletters -------------------------------------------------------------


def test_broadcasts_actions_and_metrics(api: Api) -> None:
    broadcasts = api.get("/v1/broadcasts")["broadcasts"]
    assert len(broadcasts) == 2
    broadcast = broadcasts[0]
    assert broadcast["type"] == "triggered_broadcast"
    assert api.get(f"/v1/broadcasts/{broadcast['id']}")["broadcast"] == broadcast
    actions = api.get(f"/v1/broadcasts/{broadcast['id']}/actions")["actions"]
    assert [a["id"] for a in actions] == [str(broadcast["actions"][0]["id"])]
    series = api.get(f"/v1/broadcasts/{broadcast['id']}/metrics", period="days", steps=5)["metric"]["series"]
    assert len(series["sent"]) == 5
    assert api.app.get("/v1/broadcasts/1").status_code == 404


@pytest.mark.parametrize("kind", ["broadcasts", "newsletters"])
def test_metrics_without_a_version_2_ignore_v2_parameters(api: Api, kind: str) -> None:
    item = api.get(f"/v1/{kind}")[kind][0]["id"]
    v2 = {"version": 2, "res": "hours", "start": int(END.timestamp()) - 86400 * 3,
          "end": int(END.timestamp()), "tz": "Europe/Berlin"}
    answer = api.get(f"/v1/{kind}/{item}/metrics", **v2)
    assert set(answer) == {"metric"}  # no start/end/res echo: v1's shape
    series = answer["metric"]["series"]
    assert "2xx" in series and len(series["sent"]) == 45  # v1's default: 45 days, not 72 hours
    weekly = api.get(f"/v1/{kind}/{item}/metrics", **v2, period="weeks", steps=3)["metric"]
    assert len(weekly["series"]["sent"]) == 3


def test_newsletters_page_with_limit_and_cursor_and_have_metrics(api: Api) -> None:
    everything = api.get("/v1/newsletters", limit=100)
    assert everything["next"] == ""
    ids = [n["id"] for n in everything["newsletters"]]
    paged, start = [], ""
    while True:
        page = api.get("/v1/newsletters", limit=4, start=start)
        paged += [n["id"] for n in page["newsletters"]]
        start = page["next"]
        if not start:
            break
    assert paged == ids and len(ids) == 6
    newsletter = api.get(f"/v1/newsletters/{ids[0]}")["newsletter"]
    assert newsletter["content_ids"] and newsletter["recipient_segment_ids"]
    weekly = api.get(f"/v1/newsletters/{ids[0]}/metrics", period="weeks", steps=4)["metric"]["series"]
    assert len(weekly["sent"]) == 4 and sum(weekly["sent"]) > 0


# --- segments --------------------------------------------------------------------------------


def _segments(api: Api) -> dict[str, dict]:
    return {s["name"]: s for s in api.get("/v1/segments")["segments"]}


def test_segments_list_get_count_and_404(api: Api) -> None:
    segments = _segments(api)
    everyone = segments["All customers"]
    assert api.get(f"/v1/segments/{everyone['id']}")["segment"] == everyone
    assert api.get(f"/v1/segments/{everyone['id']}/customer_count") == {"count": 2000}
    assert api.app.get("/v1/segments/99999/membership").status_code == 404


def test_empty_segment_membership_has_null_lists_and_empty_next(api: Api) -> None:
    empty = next(s for s in _segments(api).values()
                 if api.get(f"/v1/segments/{s['id']}/customer_count")["count"] == 0)
    body = api.get(f"/v1/segments/{empty['id']}/membership")
    assert body["ids"] is None and body["identifiers"] is None and body["next"] == ""


def test_membership_pages_cover_the_segment_once_and_end_with_empty_next(api: Api) -> None:
    beta = _segments(api)["Beta testers"]
    count = api.get(f"/v1/segments/{beta['id']}/customer_count")["count"]
    seen, start = [], ""
    while True:
        page = api.get(f"/v1/segments/{beta['id']}/membership", limit=64, start=start)
        assert len(page["identifiers"]) == len(page["ids"]) <= 64
        seen += [i["cio_id"] for i in page["identifiers"]]
        start = page["next"]
        if not start:
            break
        assert base64.b64decode(start).decode().startswith("0:")
    assert len(seen) == len(set(seen)) == count
    exact = api.get(f"/v1/segments/{beta['id']}/membership", limit=count)
    assert len(exact["ids"]) == count and exact["next"] == ""  # exactly one page
    assert api.app.get(f"/v1/segments/{beta['id']}/membership", params={"limit": 30001}).status_code == 400


def test_hollow_pages_knob_serves_empty_pages_that_still_carry_next(api: Api) -> None:
    api.server.state.cio.hollow_pages = 2
    beta = _segments(api)["Beta testers"]
    count = api.get(f"/v1/segments/{beta['id']}/customer_count")["count"]
    sizes, start = [], ""
    while True:
        page = api.get(f"/v1/segments/{beta['id']}/membership", limit=count // 2 + 1, start=start)
        sizes.append(len(page["ids"]))
        start = page["next"]
        if not start:
            break
    assert sizes == [0, 0, count // 2 + 1, 0, 0, count - count // 2 - 1]


# --- customers -------------------------------------------------------------------------------


def test_match_all_search_pages_through_everyone_in_pages_of_1000(api: Api) -> None:
    seen, start, sizes = [], "", []
    while True:
        page = api.post("/v1/customers", MATCH_ALL, limit=1000, start=start)
        sizes.append(len(page["identifiers"]))
        seen += [i["cio_id"] for i in page["identifiers"]]
        assert page["ids"] == [i["id"] or "" for i in page["identifiers"]]
        start = page["next"]
        if not start:
            break
    assert sizes == [1000, 1000] and len(set(seen)) == 2000
    assert "" in api.post("/v1/customers", MATCH_ALL, limit=1000)["ids"]  # email-only people
    default = api.post("/v1/customers", MATCH_ALL)
    assert len(default["identifiers"]) == 50
    assert api.app.post("/v1/customers", json=MATCH_ALL, params={"limit": 1001}).status_code == 400


def test_search_filter_grammar_matches_the_reported_attribute_strings(api: Api) -> None:
    ws = api.server.state.workspace
    # What the App API reports for each person: search compares against these strings.
    people = customer_attribute_strings(ws, list(range(len(ws.customers))))
    beta = _segments(api)["Beta testers"]["id"]
    in_beta = set(int(r) for r in ws.segment_members[beta])

    def count(filter_: dict) -> int:
        total, start = 0, ""
        while True:
            page = api.post("/v1/customers", {"filter": filter_}, limit=1000, start=start)
            total += len(page["identifiers"])
            start = page["next"]
            if not start:
                return total

    def expected(test) -> int:
        return sum(1 for row, attrs in enumerate(people) if test(row, attrs))

    enterprise = {"attribute": {"field": "plan", "operator": "eq", "value": "enterprise"}}
    trial = {"attribute": {"field": "trial_user", "operator": "eq", "value": "true"}}
    is_enterprise = lambda row, a: a.get("plan") == "enterprise"  # noqa: E731
    is_trial = lambda row, a: a.get("trial_user") == "true"  # noqa: E731
    assert count(enterprise) == expected(is_enterprise) > 0
    assert count({"not": enterprise}) == 2000 - count(enterprise)
    assert count({"or": [enterprise, trial]}) == expected(
        lambda row, a: is_enterprise(row, a) or is_trial(row, a))
    assert count({"and": [{"segment": {"id": beta}}, {"not": trial}]}) == expected(
        lambda row, a: row in in_beta and not is_trial(row, a))
    assert count({"attribute": {"field": "id", "operator": "exists"}}) == expected(
        lambda row, a: a.get("id") not in (None, ""))
    person = people[7]
    for field in ("email", "seats"):
        assert count({"attribute": {"field": field, "operator": "eq", "value": person[field]}}) == (
            expected(lambda row, a, field=field: a.get(field) == person[field]))
    assert api.app.post("/v1/customers", json={"filter": {"bogus": 1}}).status_code == 400


def test_bulk_attributes_are_unwrapped_strings_and_omit_unknown_ids(api: Api) -> None:
    cio_ids = [i["cio_id"] for i in api.post("/v1/customers", MATCH_ALL, limit=99)["identifiers"]]
    body = api.post("/v1/customers/attributes", {"ids": [*cio_ids, "not-a-person"]}, id_type="cio_id")
    customers = body["customers"]
    assert [c["identifiers"]["cio_id"] for c in customers] == cio_ids
    for item in customers:
        assert set(item) == {"id", "identifiers", "attributes", "timestamps", "unsubscribed", "devices"}
        assert all(isinstance(v, str) for v in item["attributes"].values())
        assert isinstance(item["unsubscribed"], bool)
    assert any("mrr" in c["attributes"] for c in customers)
    only_unknown = api.post("/v1/customers/attributes", {"ids": ["nobody"]}, id_type="cio_id")
    assert only_unknown == {"customers": []}
    prefixed = api.post("/v1/customers/attributes", {"ids": [f"cio_{cio_ids[0]}"]}, id_type="cio_id")
    assert prefixed == {"customers": []}  # live: prefixed cio_ids find no one


def test_bulk_attributes_refuse_more_than_100_or_no_ids(api: Api) -> None:
    for ids in ([f"x{i}" for i in range(101)], []):
        response = api.app.post("/v1/customers/attributes", json={"ids": ids}, params={"id_type": "cio_id"})
        assert response.status_code == 400
        assert response.json()["errors"][0]["status"] == "400"
    assert api.app.post("/v1/customers/attributes", json={"ids": ["a"]},
                        params={"id_type": "nickname"}).status_code == 400


def test_single_customer_attributes_and_email_lookup(api: Api) -> None:
    person = api.server.state.workspace.customers.iloc[3]
    body = api.get(f"/v1/customers/{person['cio_id']}/attributes", id_type="cio_id")["customer"]
    assert body["identifiers"]["email"] == person["email"]
    by_email = api.get(f"/v1/customers/{person['email'].upper()}/attributes", id_type="email")
    assert by_email["customer"]["identifiers"]["cio_id"] == person["cio_id"]
    assert api.app.get("/v1/customers/nobody/attributes").status_code == 404
    assert api.get("/v1/customers", email=person["email"])["results"] == [
        {"email": person["email"], "id": person["id"], "cio_id": person["cio_id"]}]
    assert api.get("/v1/customers", email="nobody@nowhere.example") == {"results": []}


# --- messages --------------------------------------------------------------------------------


def test_messages_are_newest_first_with_every_parent_key(api: Api) -> None:
    page = api.get("/v1/messages", limit=200)
    created = [m["created"] for m in page["messages"]]
    assert created == sorted(created, reverse=True) and page["next"]
    parents = {"campaign_id", "action_id", "parent_action_id", "newsletter_id", "content_id",
               "broadcast_id", "transactional_message_id", "trigger_event_id"}
    for message in page["messages"]:
        assert parents <= set(message)
        assert set(message["customer_identifiers"]) == {"id", "email", "cio_id"}
        assert all(isinstance(t, int) for t in message["metrics"].values())
    one = page["messages"][0]
    assert api.get(f"/v1/messages/{one['id']}")["message"] == one
    assert api.app.get("/v1/messages", params={"limit": 1001}).status_code == 400


def test_messages_window_bounds_are_inclusive(api: Api) -> None:
    target = api.get("/v1/messages", limit=50)["messages"][17]
    t = target["created"]
    ids = lambda **q: {m["id"] for m in api.get("/v1/messages", limit=1000, **q)["messages"]}  # noqa: E731
    assert target["id"] in ids(start_ts=t, end_ts=t)
    assert target["id"] not in ids(start_ts=t + 1, end_ts=t + 100)
    assert target["id"] not in ids(start_ts=t - 100, end_ts=t - 1)


def test_messages_filter_by_campaign_and_metric_and_page_to_the_end(api: Api) -> None:
    first = api.get("/v1/messages", limit=1)["messages"][0]
    seen, start = [], ""
    while True:
        page = api.get("/v1/messages", limit=7, start=start, campaign_id=first["campaign_id"])
        seen += page["messages"]
        start = page["next"]
        if not start:
            break
    assert seen and {m["campaign_id"] for m in seen} == {first["campaign_id"]}
    assert len({m["id"] for m in seen}) == len(seen)
    clicked = api.get("/v1/messages", limit=1000, metric="clicked")["messages"]
    assert clicked and all("clicked" in m["metrics"] for m in clicked)


# --- Track -----------------------------------------------------------------------------------


def test_track_rejects_bad_basic_auth_and_reports_region(api: Api) -> None:
    region = api.track.get("/api/v1/accounts/region")
    assert region.status_code == 200
    assert region.json() == {"url": api.env["CIO_TRACK_URL"], "region": "us",
                             "environment_id": api.server.state.workspace.workspace_id}
    bad = httpx.put(api.env["CIO_TRACK_URL"] + "/api/v1/customers/u_1", json={},
                    auth=(api.env["CIO_SITE_ID"], "wrong-track-key"))
    assert bad.status_code == 401 and "wrong-track-key" in bad.json()["meta"]["error"]
    app_key = httpx.get(api.env["CIO_TRACK_URL"] + "/api/v1/accounts/region",
                        headers={"Authorization": f"Bearer {api.env['CIO_APP_KEY']}"})
    assert app_key.status_code == 401


def test_eu_traffic_on_the_us_track_host_is_redirected_and_not_applied(make_sandbox) -> None:
    server = make_sandbox(customers=50, region="eu")
    env = server.env()
    us_host = env["CIO_TRACK_URL"].replace("/cio-eu/", "/cio/")
    auth = (env["CIO_SITE_ID"], env["CIO_API_KEY"])
    moved = httpx.put(f"{us_host}/api/v1/customers/u_1?x=1", json={"plan": "pro"}, auth=auth)
    assert moved.status_code == 307 and moved.content == b""
    assert moved.headers["location"] == f"{env['CIO_TRACK_URL']}/api/v1/customers/u_1?x=1"
    batch = httpx.post(f"{us_host}/api/v2/batch", json={"batch": []}, auth=auth)
    assert batch.status_code == 307
    assert server.state.cio.identified == {} and server.state.cio.v2_operations == []
    assert httpx.put(f"{us_host}/api/v1/customers/u_1", json={}, auth=(auth[0], "no")).status_code == 401
    region = httpx.get(f"{us_host}/api/v1/accounts/region", auth=auth)
    assert region.status_code == 200 and region.json()["region"] == "eu"
    assert httpx.put(moved.headers["location"], json={"plan": "pro"}, auth=auth).status_code == 200


def test_identify_writes_back_to_attribute_reads_and_events_are_recorded(api: Api) -> None:
    person = api.server.state.workspace.customers.iloc[11]
    response = api.track.put(f"/api/v1/customers/{person['id']}", json={"plan": "legendary", "vip": True})
    assert response.status_code == 200 and response.json() == {}
    assert api.server.state.cio.identified[person["id"]] == {"plan": "legendary", "vip": True}
    attrs = api.get(f"/v1/customers/{person['cio_id']}/attributes", id_type="cio_id")["customer"]["attributes"]
    assert attrs["plan"] == "legendary" and attrs["vip"] == "true"
    event = api.track.post(f"/api/v1/customers/{person['id']}/events", json={"name": " upgraded ", "data": {"to": "pro"}})
    assert event.status_code == 200 and event.json() == {}
    assert api.server.state.cio.events[-1] == (person["id"], {"name": "upgraded", "data": {"to": "pro"}})
    assert api.track.post("/api/v1/customers/u_1/events", json={"data": {}}).status_code == 400


def test_track_creates_people_the_app_api_then_reads_and_searches(api: Api) -> None:
    created = api.track.put("/api/v1/customers/t_new", json={"email": "T.New@example.com",
                                                              "plan": "track-plan"})
    assert created.status_code == 200
    person = api.get("/v1/customers/t_new/attributes")["customer"]
    assert person["attributes"]["plan"] == "track-plan" and len(person["attributes"]["cio_id"]) == 12
    assert api.get("/v1/customers", email="t.new@example.com")["results"][0]["id"] == "t_new"
    entity = api.track.post("/api/v2/entity", json={
        "type": "person", "action": "identify", "identifiers": {"email": "v2.new@example.com"},
        "attributes": {"plan": "track-plan"}})
    assert entity.status_code == 200
    plan = {"filter": {"attribute": {"field": "plan", "operator": "eq", "value": "track-plan"}}}
    found = api.post("/v1/customers", plan)["identifiers"]
    assert {p["email"] for p in found} == {"T.New@example.com", "v2.new@example.com"}
    by_cio = api.post("/v1/customers/attributes", {"ids": [p["cio_id"] for p in found]},
                      id_type="cio_id")["customers"]
    assert len(by_cio) == 2


def test_batch_with_bad_items_answers_207_and_applies_the_rest(api: Api) -> None:
    ok = {"type": "person", "action": "identify", "identifiers": {"id": "new-person-1"},
          "attributes": {"plan": "pro"}}
    huge = {"type": "person", "action": "identify", "identifiers": {"id": "big"},
            "attributes": {"blob": "x" * 33_000}}
    two_ids = {"type": "person", "action": "identify", "identifiers": {"id": "a", "email": "a@b.c"}}
    event = {"type": "person", "action": "event", "identifiers": {"email": "e@x.example"}, "name": "signed_up"}
    response = api.track.post("/api/v2/batch", json={"batch": [ok, huge, two_ids, event]})
    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [e["batch_index"] for e in errors] == [1, 2]
    assert all({"reason", "field", "message"} <= set(e) for e in errors)
    assert api.server.state.cio.identified == {"new-person-1": {"plan": "pro"}}
    assert api.server.state.cio.events[-1][0] == "e@x.example"
    clean = api.track.post("/api/v2/batch", json={"batch": [ok]})
    assert clean.status_code == 200 and clean.json() == {}
    entity = api.track.post("/api/v2/entity", json=event)
    assert entity.status_code == 200 and entity.json() == {}


def test_batch_over_500_kb_is_refused_whole(api: Api) -> None:
    item = {"type": "person", "action": "identify", "identifiers": {"id": "p"},
            "attributes": {"blob": "y" * 30_000}}
    response = api.track.post("/api/v2/batch", json={"batch": [item] * 18})
    assert response.status_code == 400
    assert response.json()["errors"][0]["reason"]
    assert api.server.state.cio.identified == {}


# --- admin -----------------------------------------------------------------------------------


def test_admin_truth_lists_the_planted_structure(sandbox: SandboxServer) -> None:
    truth = httpx.get(sandbox.url + "/__sandbox__/truth", timeout=30).json()
    assert truth["underperformers"] and {"campaign_id", "action_id", "metric"} <= set(truth["underperformers"][0])
    assert truth["clusters"]["k"] >= 2 and len(truth["clusters"]["assignments"]) == 2000
    assert {"campaign_id", "cluster", "metric", "start", "end"} <= set(truth["spike"])


def test_reset_clears_write_backs_and_the_rate_window(api: Api) -> None:
    api.track.put("/api/v1/customers/u_000001", json={"x": 1})
    assert api.server.state.cio.identified
    assert httpx.post(api.server.url + "/__sandbox__/reset").status_code == 200
    assert api.server.state.cio.identified == {} and not api.server.state.cio.written
    attrs = api.get("/v1/customers/u_000001/attributes")["customer"]["attributes"]
    assert "x" not in attrs


def test_fast_attribute_reader_matches_the_workspace_formatting(api: Api) -> None:
    ws = api.server.state.workspace
    rows = list(range(0, 2000, 37))
    assert cio_data(api.server.state).people.attribute_strings(rows) == customer_attribute_strings(ws, rows)


def test_sandbox_serve_prints_exports_and_serves_until_interrupted() -> None:
    # Only this command's parser: the full CLI also imports every other area's command module.
    program = ("import argparse, sys; from cio_mavera.commands import sandbox; "
               "parser = argparse.ArgumentParser(); sandbox.register(parser.add_subparsers()); "
               "args = parser.parse_args(sys.argv[1:]); sys.exit(args.handler(args))")
    process = subprocess.Popen(
        [sys.executable, "-c", program, "sandbox", "serve", "--port", "0", "--customers", "50",
         "--region", "eu", "--app-rps", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports: dict[str, str] = {}
        while not {"CIO_REGION", "CIO_APP_URL", "CIO_APP_KEY", "MAVERA_WORKSPACE_ID"} <= set(exports):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exports[name] = value
        assert exports["CIO_REGION"] == "eu" and exports["CIO_APP_URL"].endswith("/cio-eu/app")
        response = httpx.get(exports["CIO_APP_URL"] + "/v1/segments",
                             headers={"Authorization": f"Bearer {exports['CIO_APP_KEY']}"}, timeout=30)
        assert response.status_code == 200 and response.json()["segments"]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0


def test_unimplemented_app_paths_answer_404_in_the_errors_envelope(api: Api) -> None:
    response = api.app.get("/v1/snippets")
    assert response.status_code == 404
    assert response.json()["errors"][0]["status"] == "404"
    assert httpx.get(api.env["CIO_APP_URL"] + "/v1/snippets").status_code == 401
