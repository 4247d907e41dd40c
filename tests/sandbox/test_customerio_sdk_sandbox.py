"""The official `customerio` Python SDK writes through the sandbox's Track API; our AppClient reads it back.

The SDK only speaks https to Customer.io's hosts, so a requests adapter mounted on its session
sends those requests to the sandbox's Track URL over loopback; everything else (paths, Basic auth,
bodies) is the SDK's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from customerio import CustomerIO, CustomerIOException, Regions
from requests.adapters import HTTPAdapter

from cio_mavera.connect import Connection
from cio_mavera.customerio.app import MATCH_ALL, AppClient
from cio_mavera.sandbox.server import SandboxServer

US_TRACK = "https://track.customer.io"


class ToSandbox(HTTPAdapter):
    """Sends the SDK's requests for the US Track host to the sandbox's Track URL instead."""

    def __init__(self, track_url: str) -> None:
        super().__init__()
        self.track_url = track_url

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:
        request.url = self.track_url + request.url.removeprefix(US_TRACK)
        return super().send(request, **kwargs)


@pytest.fixture
def sdk(sandbox: SandboxServer) -> Iterator[CustomerIO]:
    env = sandbox.env()
    client = CustomerIO(site_id=env["CIO_SITE_ID"], api_key=env["CIO_API_KEY"], region=Regions.US,
                        retries=0)
    client.http.mount(US_TRACK, ToSandbox(env["CIO_TRACK_URL"]))
    yield client
    client.close()


@pytest.fixture
def app(connection: Connection) -> Iterator[AppClient]:
    with AppClient(connection) as client:
        yield client


def _matching(app: AppClient, field: str, value: str) -> set[str]:
    found = app.search_customers({"attribute": {"field": field, "operator": "eq", "value": value}})
    return {person["cio_id"] for page in found for person in page}


def test_a_person_the_sdk_creates_is_read_looked_up_and_found_by_the_app_api(sdk, app) -> None:
    sdk.identify(id="sdk_new_1", email="Sdk.New@example.com", plan="legendary", seats=12,
                 vip=True)
    person = app.customer_attributes("sdk_new_1", id_type="id")
    attrs = person["attributes"]
    assert (attrs["plan"], attrs["seats"], attrs["vip"]) == ("legendary", "12", "true")
    assert person["identifiers"]["email"] == "Sdk.New@example.com"
    cio_id = attrs["cio_id"]
    assert app.customer_attributes("sdk.new@example.com", id_type="email")["attributes"] == attrs
    assert app.customers_attributes([cio_id])[0]["attributes"]["plan"] == "legendary"
    assert _matching(app, "plan", "legendary") == {cio_id}
    everyone = [p["cio_id"] for page in app.search_customers(MATCH_ALL) for p in page]
    assert len(everyone) == len(set(everyone)) == 2001 and cio_id in everyone


def test_an_update_through_the_sdk_changes_what_searches_find(sdk, app, sandbox) -> None:
    person = sandbox.state.workspace.customers.iloc[5]
    plan = str(person["plan"])
    before = _matching(app, "plan", plan)
    assert person["cio_id"] in before
    sdk.identify(id=person["id"], plan="legendary", email="moved.person@example.com")
    assert _matching(app, "plan", "legendary") == {person["cio_id"]}
    assert _matching(app, "plan", plan) == before - {person["cio_id"]}
    moved = app.customer_attributes("moved.person@example.com", id_type="email")
    assert moved["attributes"]["cio_id"] == person["cio_id"]
    members = sandbox.state.workspace.segment_members
    segment = next(s for s, rows in members.items() if 5 in set(rows.tolist()))
    listed = [p for page in app.segment_members(segment) for p in page if p["cio_id"] == person["cio_id"]]
    assert listed[0]["email"] == "moved.person@example.com"


def test_a_v2_batch_through_the_sdk_creates_and_updates_people(sdk, app, sandbox) -> None:
    existing = sandbox.state.workspace.customers.iloc[9]
    sdk.batch([
        {"type": "person", "action": "identify", "identifiers": {"email": "batch.new@example.com"},
         "attributes": {"cluster": "c9", "plan": "batch-plan"}},
        {"type": "person", "action": "identify", "identifiers": {"cio_id": existing["cio_id"]},
         "attributes": {"cluster": "c9"}},
        {"type": "person", "action": "event", "identifiers": {"id": "u_x"}, "name": "opened_app"},
    ])
    created = app.customer_attributes("batch.new@example.com", id_type="email")["attributes"]
    assert created["plan"] == "batch-plan"
    assert _matching(app, "cluster", "c9") == {created["cio_id"], existing["cio_id"]}
    assert sandbox.state.cio.events[-1][1]["name"] == "opened_app"


def test_an_unknown_cio_id_is_dropped_and_update_only_never_creates(sdk, app) -> None:
    sdk.identify(id="cio_ffff00000000", plan="ghost")
    sdk.identify(id="sdk_update_only", plan="ghost", _update=True)
    assert _matching(app, "plan", "ghost") == set()


def test_the_sdk_sees_the_documented_401_for_a_wrong_key(sandbox) -> None:
    env = sandbox.env()
    with CustomerIO(site_id=env["CIO_SITE_ID"], api_key="wrong", retries=0) as client:
        client.http.mount(US_TRACK, ToSandbox(env["CIO_TRACK_URL"]))
        with pytest.raises(CustomerIOException, match="401"):
            client.identify(id="x")
