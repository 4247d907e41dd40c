"""The sandbox's exports resource and file host, over real loopback HTTP with raw httpx."""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import END

from cio_mavera.sandbox.customerio.export_store import URL_TTL_S, ExportStore
from cio_mavera.sandbox.server import SandboxServer, start_sandbox

MATCH_ALL = {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}


class FakeClock:
    """A clock tests move by hand: delays and URL lifetimes without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def fast() -> Iterator[SandboxServer]:
    """A 600-customer sandbox without the 10 req/s limit."""
    server = start_sandbox(seed=11, customers=600, app_rps=100_000, end=END)
    yield server
    server.stop()


class Exports:
    """Raw access to one sandbox's exports, with its store on a fake clock."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.env = server.env()
        self.app = httpx.Client(base_url=self.env["CIO_APP_URL"], timeout=30,
                                headers={"Authorization": f"Bearer {self.env['CIO_APP_KEY']}"})
        self.store: ExportStore = server.state.cio.exports
        self.clock = FakeClock()
        self.store.use_clock(self.clock)

    def create(self, body: dict | None = None, kind: str = "customers") -> dict:
        response = self.app.post(f"/v1/exports/{kind}", json=body or {"filters": MATCH_ALL})
        assert response.status_code == 200, response.text
        return response.json()["export"]

    def finish(self, export: dict) -> dict:
        """Let the file be written and the delay pass; the export as the API then shows it."""
        assert self.store.get(export["id"]).rendered.wait(60)
        self.clock.advance(self.store.delay_s)
        return self.app.get(f"/v1/exports/{export['id']}").json()["export"]

    def url(self, export_id: int) -> str:
        response = self.app.get(f"/v1/exports/{export_id}/download")
        assert response.status_code == 200, response.text
        return response.json()["url"]


@pytest.fixture
def ex(fast: SandboxServer) -> Iterator[Exports]:
    fast.state.reset()
    client = Exports(fast)
    yield client
    client.app.close()
    fast.state.reset()


def _rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(content).decode())))


# --- the App API side ------------------------------------------------------------------------

def test_export_routes_need_the_app_key(ex: Exports) -> None:
    for method, path in [("GET", "/v1/exports"), ("POST", "/v1/exports/customers"),
                         ("POST", "/v1/exports/deliveries"), ("GET", "/v1/exports/101"),
                         ("GET", "/v1/exports/101/download")]:
        response = httpx.request(method, ex.env["CIO_APP_URL"] + path, json={})
        assert response.status_code == 401, path
        assert response.json()["errors"][0]["status"] == "401"


def test_no_exports_is_a_null_list(ex: Exports) -> None:
    assert ex.app.get("/v1/exports").json() == {"exports": None}
    ex.create()
    assert [e["type"] for e in ex.app.get("/v1/exports").json()["exports"]] == ["customers"]


def test_customers_export_wants_the_plural_filters_key(ex: Exports) -> None:
    response = ex.app.post("/v1/exports/customers", json={"filter": MATCH_ALL})
    assert response.status_code == 400 and "filters" in response.json()["errors"][0]["detail"]
    bad = ex.app.post("/v1/exports/customers", json={"filters": {"attribute": {"field": "x"}}})
    assert bad.status_code == 400
    assert ex.app.post("/v1/exports/customers", json={"filters": MATCH_ALL,
                                                      "attributes": "plan"}).status_code == 400


def test_unknown_or_malformed_export_ids(ex: Exports) -> None:
    for path in ("/v1/exports/9999", "/v1/exports/9999/download"):
        response = ex.app.get(path)
        assert response.status_code == 404
        assert response.json()["errors"][0] == {"detail": "export 9999 not found", "status": "404"}
    assert ex.app.get("/v1/exports/abc").status_code == 400


def test_export_is_pending_until_written_and_its_delay_passes(ex: Exports) -> None:
    export = ex.create()
    assert export["status"] == "pending" and export["total"] == 0 and not export["failed"]
    assert ex.store.get(export["id"]).rendered.wait(60)
    again = ex.app.get(f"/v1/exports/{export['id']}").json()["export"]
    assert again["status"] == "pending" and again["total"] == 0  # written, but the delay runs
    refused = ex.app.get(f"/v1/exports/{export['id']}/download")
    assert refused.status_code == 400 and "pending" in refused.json()["errors"][0]["detail"]
    ex.clock.advance(ex.store.delay_s)
    done = ex.app.get(f"/v1/exports/{export['id']}").json()["export"]
    assert done["status"] == "done" and done["total"] == 600
    assert done["deduplicate_id"] == f"{done['id']}:{done['created_at']}"
    assert set(done) == {"id", "user_id", "user_email", "total", "deduplicate_id", "type", "failed",
                         "status", "description", "downloads", "created_at", "updated_at"}


def test_export_marked_to_fail_turns_failed(ex: Exports) -> None:
    ex.store.fail_next = 1
    export = ex.create()
    ex.clock.advance(ex.store.delay_s)
    failed = ex.app.get(f"/v1/exports/{export['id']}").json()["export"]
    assert failed["status"] == "failed" and failed["failed"] is True and failed["total"] == 0
    assert ex.app.get(f"/v1/exports/{export['id']}/download").status_code == 400
    assert ex.finish(ex.create())["status"] == "done"  # only the next one failed


def test_export_calls_share_the_app_rate_limit(ex: Exports, monkeypatch) -> None:
    monkeypatch.setattr(ex.server.state.cio.rate, "limit", 10)
    monkeypatch.setattr(ex.server.state.cio.rate, "clock", lambda: 500.0)  # one instant
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: ex.app.get("/v1/exports").status_code, range(20)))
    assert statuses.count(429) == 10 and statuses.count(200) == 10


def test_workspaces_list_the_sandbox_workspace_with_its_people(ex: Exports) -> None:
    (workspace,) = ex.app.get("/v1/workspaces").json()["workspaces"]
    assert workspace["people"] == 600
    assert set(workspace) == {"id", "name", "messages_sent", "billable_messages_sent", "people",
                              "object_types", "objects"}


# --- the file -------------------------------------------------------------------------------

def test_file_is_gzip_csv_of_everyone_with_the_strings_the_api_reports(ex: Exports) -> None:
    export = ex.finish(ex.create())
    url = ex.url(export["id"])
    assert urlsplit(url).path.startswith("/cio-files/exports/")  # not under the App API
    response = httpx.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "application/gzip"
    rows = _rows(response.content)
    assert len(rows) == export["total"] == 600
    assert list(rows[0])[:3] == ["cio_id", "id", "email"]
    sample = [r["cio_id"] for r in rows[:100:7]]
    items = ex.app.post("/v1/customers/attributes", json={"ids": sample},
                        params={"id_type": "cio_id"}).json()["customers"]
    by_id = {r["cio_id"]: r for r in rows}
    for item in items:
        row = by_id[item["identifiers"]["cio_id"]]
        assert {k: v for k, v in row.items() if v != ""} == item["attributes"]
    assert ex.app.get(f"/v1/exports/{export['id']}").json()["export"]["downloads"] == 1


def test_segment_export_holds_its_members_and_asked_attributes_only(ex: Exports) -> None:
    members = ex.server.state.workspace.segment_members
    segment_id = next(s for s, m in members.items() if 0 < len(m) < 600)
    export = ex.finish(ex.create({"filters": {"segment": {"id": segment_id}},
                                  "attributes": ["plan", "nonexistent"]}))
    rows = _rows(httpx.get(ex.url(export["id"])).content)
    assert len(rows) == len(members[segment_id]) == export["total"]
    assert list(rows[0]) == ["cio_id", "id", "email", "plan", "nonexistent"]
    assert all(r["nonexistent"] == "" for r in rows)


def test_track_writes_before_the_export_are_in_its_file(ex: Exports) -> None:
    track = httpx.Client(base_url=ex.env["CIO_TRACK_URL"],
                         auth=(ex.env["CIO_SITE_ID"], ex.env["CIO_API_KEY"]))
    assert track.put("/api/v1/customers/exported-new",
                     json={"email": "new@example.com", "loyalty": "gold"}).status_code == 200
    export = ex.finish(ex.create())
    rows = _rows(httpx.get(ex.url(export["id"])).content)
    assert len(rows) == 601
    assert [r["loyalty"] for r in rows if r["id"] == "exported-new"] == ["gold"]


def test_download_url_needs_no_key_and_refuses_one(ex: Exports) -> None:
    url = ex.url(ex.finish(ex.create())["id"])
    with_key = httpx.get(url, headers={"Authorization": f"Bearer {ex.env['CIO_APP_KEY']}"})
    assert with_key.status_code == 400 and "auth mechanism" in with_key.text
    assert httpx.get(url).status_code == 200


def test_download_url_expires_after_15_minutes(ex: Exports) -> None:
    url = ex.url(ex.finish(ex.create())["id"])
    assert URL_TTL_S == 900
    ex.clock.advance(URL_TTL_S - 1)
    assert httpx.get(url).status_code == 200
    ex.clock.advance(2)
    expired = httpx.get(url)
    assert expired.status_code == 403 and "expired" in expired.text
    assert expired.headers["content-type"].startswith("application/xml")


def test_tampered_or_unknown_download_urls_are_refused(ex: Exports) -> None:
    export = ex.finish(ex.create())
    url = ex.url(export["id"])
    query = parse_qs(urlsplit(url).query)
    signature = query["signature"][0]
    forged = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert httpx.get(forged).status_code == 403
    later = url.replace(f"expires={query['expires'][0]}", f"expires={int(query['expires'][0]) + 3600}")
    assert httpx.get(later).status_code == 403  # the expiry is signed
    other = re.sub(r"/exports/\d+/", "/exports/999/", url)
    assert httpx.get(other).status_code == 403  # so is the path
    ex.server.state.reset()  # the file is gone (and the signing key kept): 404 for a signed URL
    assert httpx.get(url).status_code in (403, 404)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_damaged_downloads_are_served_when_asked_for(ex: Exports, damage: str) -> None:
    url = ex.url(ex.finish(ex.create())["id"])
    ex.store.damage_next = [damage]
    broken = httpx.get(url)
    assert broken.status_code == 200
    with pytest.raises((OSError, EOFError, gzip.BadGzipFile)):
        _rows(broken.content)
    assert len(_rows(httpx.get(url).content)) == 600  # only the next download was damaged


def test_cut_download_drops_the_connection_mid_body(ex: Exports) -> None:
    url = ex.url(ex.finish(ex.create())["id"])
    ex.store.damage_next = ["cut"]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert len(_rows(httpx.get(url).content)) == 600


# --- deliveries -----------------------------------------------------------------------------

def _messages(ex: Exports, **query: object) -> list[dict]:
    out, start = [], ""
    while True:
        page = ex.app.get("/v1/messages", params={"limit": 1000, "start": start, **query}).json()
        out += page["messages"]
        start = page["next"]
        if not start:
            return out


def test_deliveries_export_holds_the_campaigns_deliveries_with_metric_times(ex: Exports) -> None:
    campaign_id = _messages(ex)[0]["campaign_id"]
    expected = {m["id"]: m for m in _messages(ex, campaign_id=campaign_id)}
    export = ex.finish(ex.create({"campaign_id": campaign_id}, kind="deliveries"))
    assert export["type"] == "deliveries" and export["total"] == len(expected) > 0
    rows = _rows(httpx.get(ex.url(export["id"])).content)
    assert {r["delivery_id"] for r in rows} == set(expected)
    for row in rows[:20]:
        message = expected[row["delivery_id"]]
        assert row["campaign_id"] == str(campaign_id) and row["cio_id"] == message["customer_identifiers"]["cio_id"]
        assert row["delivered"] == str(message["metrics"].get("delivered", ""))
        assert row["created"] == str(message["created"])


def test_deliveries_export_filters_metric_window_and_adds_attributes(ex: Exports) -> None:
    first = _messages(ex)[0]
    campaign_id = first["campaign_id"]
    clicked = {m["id"] for m in _messages(ex, campaign_id=campaign_id, metric="clicked")}
    export = ex.finish(ex.create({"campaign_id": campaign_id, "metric": "clicked",
                                  "attributes": ["plan"]}, kind="deliveries"))
    rows = _rows(httpx.get(ex.url(export["id"])).content)
    assert {r["delivery_id"] for r in rows} == clicked and all(r["clicked"] for r in rows)
    assert "plan" in rows[0] if rows else True
    window = ex.finish(ex.create({"campaign_id": campaign_id, "start": first["created"],
                                  "end": first["created"]}, kind="deliveries"))
    assert window["total"] == sum(m["created"] == first["created"]
                                  for m in _messages(ex, campaign_id=campaign_id))


def test_deliveries_export_validates_its_body(ex: Exports) -> None:
    campaign_id = int(ex.server.state.workspace.campaigns["campaign_id"].iloc[0])
    bad = [{}, {"campaign_id": campaign_id, "newsletter_id": 1}, {"campaign_id": "7"},
           {"campaign_id": campaign_id, "metric": "liked"},
           {"campaign_id": campaign_id, "start": 200, "end": 100},
           {"campaign_id": campaign_id, "drafts": "yes"}]
    for body in bad:
        assert ex.app.post("/v1/exports/deliveries", json=body).status_code == 400, body
    missing = ex.app.post("/v1/exports/deliveries", json={"campaign_id": 987654})
    assert missing.status_code == 404 and "campaign 987654" in missing.text
