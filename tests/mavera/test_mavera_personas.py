"""client.personas.changes (the one persona change detector) and the free listings kept for a while."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cio_mavera.connect import Connection
from cio_mavera.jobs import audiences
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera import CreditBudget, MaveraClient
from cio_mavera.sandbox.server import SandboxServer
from cio_mavera.settings import Secret, Settings

DAY = dt.timedelta(days=1)


def requests_to(server: SandboxServer, route: str) -> int:
    return httpx.get(f"{server.url}/__sandbox__/stats").json()["requests"].get(route, 0)


@pytest.fixture
def make_client(connection: Connection) -> Iterator[Callable[..., MaveraClient]]:
    made: list[MaveraClient] = []

    def make(**kwargs: Any) -> MaveraClient:
        client = MaveraClient(connection, run_id=kwargs.pop("run_id", "run-test"), job="test", **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def offline(tmp_path: Path) -> Connection:
    settings = Settings(mavera_key=Secret("mvra_live_" + "x" * 32), mode="live",
                        mavera_url_override="https://mavera.test/api/v1", data_dir=tmp_path / "data")
    return Connection(settings, "live", "offline")


# -- change detection ---------------------------------------------------------------------------


def held(**fields: Any) -> dict[str, Any]:
    return {"id": "clx1", "name": "Loyalists", "is_custom": True, "details": {}, **fields}


def test_a_field_echoed_as_null_is_a_change(offline) -> None:
    with MaveraClient(offline, transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        assert client.personas.changes(held(type=None), {"type": "B2B"}) == {"type": "B2B"}
        assert client.personas.changes(held(details={"tone": None}), {"tone": "warm"}) == {"tone": "warm"}
        assert client.personas.changes(held(type=None), {"type": None}) == {}


def test_a_field_the_server_does_not_echo_cannot_be_compared(offline) -> None:
    with MaveraClient(offline, transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        assert client.personas.changes(held(), {"tone": "warm"}) == {}


def test_names_compare_like_find_and_base_personas_never_change(offline) -> None:
    with MaveraClient(offline, transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        assert client.personas.changes(held(), {"name": "  loyalISTS "}) == {}
        assert client.personas.changes(held(), {"name": "Lapsed"}) == {"name": "Lapsed"}
        base = held(is_custom=False, description="Buys monthly.")
        assert client.personas.changes(base, {"description": "Buys weekly."}) == {}


def test_ensure_patches_a_field_the_server_holds_as_null(offline) -> None:
    patches: list[httpx.Request] = []
    persona = held(type=None, description="Buy every month.")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            patches.append(request)
            return httpx.Response(200, json={**persona, "type": "B2B"})
        return httpx.Response(200, json={"object": "list", "data": [persona], "has_more": False})

    with MaveraClient(offline, transport=httpx.MockTransport(handler)) as client:
        updated, created = client.personas.ensure("Loyalists", type="B2B",
                                                  description="Buy every month.")
    assert not created and updated["type"] == "B2B"
    assert [p.read() for p in patches] == [b'{"type":"B2B"}']


def test_job_2_plans_an_update_for_a_persona_held_as_null(offline) -> None:
    listed = held(name="cio-mavera: Loyalists", type=None, description="Buy every month.")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": [listed], "has_more": False})

    with MaveraClient(offline, transport=httpx.MockTransport(handler)) as client:
        payload = {"name": "cio-mavera: Loyalists", "description": "Buy every month.", "type": "B2B"}
        plan = audiences.plan_personas(RunContext.around(client), [payload])
    assert list(plan["status"]) == ["changed"]  # what ensure will PATCH, the report now says


def test_a_listed_persona_is_completed_by_its_get_before_comparing(make_client, sandbox) -> None:
    client = make_client()
    client.personas.ensure("Weekend Browsers", description="Shop on Sundays.", type="B2C")
    listed = client.personas.find("weekend browsers")
    assert "type" not in listed  # the list shape carries no type: only GET /personas/{id} does
    assert client.personas.changes(listed, {"type": "B2C", "description": "Shop on Sundays."}) == {}
    assert client.personas.changes(listed, {"type": "B2B"}) == {"type": "B2B"}


# -- listings kept for max_age ------------------------------------------------------------------


def test_a_warm_rerun_lists_personas_and_apps_without_a_request(make_client, sandbox) -> None:
    personas = make_client(run_id="one").personas.list(max_age=DAY)
    apps = make_client(run_id="one").generations.apps(max_age=DAY)
    before = (requests_to(sandbox, "GET /mavera/api/v1/personas"),
              requests_to(sandbox, "GET /mavera/api/v1/generation-apps"))
    again = make_client(run_id="two")
    assert again.personas.list(max_age=DAY) == personas and again.generations.apps(max_age=DAY) == apps
    assert (requests_to(sandbox, "GET /mavera/api/v1/personas"),
            requests_to(sandbox, "GET /mavera/api/v1/generation-apps")) == before


def test_refresh_an_old_listing_or_no_max_age_lists_again(make_client, sandbox) -> None:
    make_client().personas.list(max_age=DAY)
    route = "GET /mavera/api/v1/personas"
    before = requests_to(sandbox, route)
    make_client(refresh=True).personas.list(max_age=DAY)
    make_client().personas.list(max_age=dt.timedelta(0))
    make_client().personas.list()
    assert requests_to(sandbox, route) == before + 3


def test_a_searched_listing_is_kept_apart_from_the_full_one(make_client, sandbox) -> None:
    client = make_client()
    everyone = client.personas.list(max_age=DAY)
    some = client.personas.list("Gen Z", max_age=DAY)
    assert 0 < len(some) < len(everyone)
    assert client.personas.list("Gen Z", max_age=DAY) == some


# -- focus groups without waiting ---------------------------------------------------------------


def test_focus_group_create_returns_at_once_and_is_budgeted(make_client, sandbox) -> None:
    budget = CreditBudget(1000)
    client = make_client(budget=budget)
    persona_id = client.personas.list(max_age=DAY)[0]["id"]
    created = client.focus_groups.create([persona_id], ["Would you click?"], stimuli=["Spring sale"])
    assert created["status"] != "completed"
    assert client.focus_groups.get(created["id"])["id"] == created["id"]
    charged = httpx.get(f"{sandbox.url}/__sandbox__/stats").json()["credits_charged"]
    assert budget.spent == client.credits_spent() == charged > 0 and budget.reserved == 0
